-- Models managed while gateways run. model_deployments (from 00001) holds the models
-- added through the admin API: each gateway on the database serves them, at start and
-- as they change, through the change feed (kind 'model_changed', the model's name in
-- the new column model). model_changes is the record of every change to the models a
-- gateway serves (who, what, when, where, with what result), made through the admin
-- API or by reloading the config file, failed attempts included.

-- +goose Up
ALTER TABLE model_deployments
    ADD COLUMN created_by text NOT NULL DEFAULT '',
    ADD COLUMN updated_by text NOT NULL DEFAULT '';

ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check
    CHECK (kind IN ('document_indexed', 'document_deleted', 'kb_deleted', 'key_revoked', 'model_changed'));
ALTER TABLE changes ADD COLUMN model text;

-- +goose StatementBegin
CREATE FUNCTION ragway_model_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- ragway_note_change's lock and notification, with the model's name.
    PERFORM pg_advisory_xact_lock(7296847419113734001);
    INSERT INTO changes (kind, model, origin)
    VALUES ('model_changed', CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END,
            coalesce(current_setting('ragway.origin', true), ''));
    PERFORM pg_notify('ragway_changes', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER model_deployments_changed AFTER INSERT OR UPDATE OR DELETE ON model_deployments
    FOR EACH ROW EXECUTE FUNCTION ragway_model_changed();

CREATE TABLE model_changes (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    -- actor: who asked (a user and the prefix of their key, or "reload").
    actor   text NOT NULL,
    gateway text NOT NULL DEFAULT coalesce(nullif(current_setting('ragway.origin', true), ''), 'cli'),
    action  text NOT NULL CHECK (action IN ('add', 'replace', 'remove', 'scale', 'alias', 'reload', 'apply')),
    model   text NOT NULL,
    -- config: the model entry asked for (add, replace), or what changed.
    config  jsonb,
    ok      boolean NOT NULL,
    error   text NOT NULL DEFAULT ''
);
CREATE INDEX model_changes_at ON model_changes (at);

-- +goose Down
DROP TABLE model_changes;
DROP TRIGGER model_deployments_changed ON model_deployments;
DROP FUNCTION ragway_model_changed();
DELETE FROM changes WHERE kind = 'model_changed';
ALTER TABLE changes DROP COLUMN model;
ALTER TABLE changes DROP CONSTRAINT changes_kind_check;
ALTER TABLE changes ADD CONSTRAINT changes_kind_check
    CHECK (kind IN ('document_indexed', 'document_deleted', 'kb_deleted', 'key_revoked'));
ALTER TABLE model_deployments DROP COLUMN updated_by, DROP COLUMN created_by;
