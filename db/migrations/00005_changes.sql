-- The change feed: an append-only, ordered log of the changes that gateways sharing this
-- database keep in memory (an embedded vector index, caches), written by triggers in the
-- same transaction as the change, whoever makes it (a gateway, `ragway ingest`, psql).
-- Gateways follow it: LISTEN ragway_changes wakes them, the log is the truth (a gateway
-- that missed a notification, or was away, reads on from its last id).
--
-- Ids are handed out in commit order: ragway_note_change takes a transaction-level
-- advisory lock before it takes an id, and holds it until the transaction ends, so a
-- change with a higher id always commits after every change with a lower one, and a
-- reader that sees a change sees all those before it. (The lock serializes only the end
-- of the transactions that change shared state: an indexed document, a deletion, a
-- revocation.) Ids of rolled-back changes are skipped, never reused.
--
-- Old changes are pruned (ragway_prune_changes); change_horizon.pruned_through is the
-- highest id pruned, so that a follower whose position is below it knows it missed
-- changes and reloads instead.

-- +goose Up
CREATE TABLE changes (
    id          bigint GENERATED ALWAYS AS IDENTITY (CACHE 1) PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL
                CHECK (kind IN ('document_indexed', 'document_deleted', 'kb_deleted', 'key_revoked')),
    kb_id       uuid,
    document_id uuid,
    key_prefix  text,
    -- origin names the gateway that made the change (ragway.origin, set by the
    -- transaction), '' for anyone else: a gateway skips what it applied itself.
    origin      text NOT NULL DEFAULT ''
);
CREATE INDEX changes_at ON changes (at);

CREATE TABLE change_horizon (
    one            boolean PRIMARY KEY DEFAULT true CHECK (one),
    pruned_through bigint NOT NULL DEFAULT 0
);
INSERT INTO change_horizon DEFAULT VALUES;

-- +goose StatementBegin
CREATE FUNCTION ragway_note_change(p_kind text, p_kb uuid, p_document uuid, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- 'ragway_changes' as a 64-bit key: the one lock of the feed.
    PERFORM pg_advisory_xact_lock(7296847419113734001);
    INSERT INTO changes (kind, kb_id, document_id, key_prefix, origin)
    VALUES (p_kind, p_kb, p_document, p_key, coalesce(current_setting('ragway.origin', true), ''));
    PERFORM pg_notify('ragway_changes', '');
END;
$$;

CREATE FUNCTION ragway_document_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        -- A document deleted with its knowledge base (the foreign key's cascade: the
        -- knowledge base's row is gone already) is told by the knowledge base's change.
        IF EXISTS (SELECT 1 FROM knowledge_bases WHERE id = OLD.kb_id) THEN
            PERFORM ragway_note_change('document_deleted', OLD.kb_id, OLD.id, NULL);
        END IF;
        RETURN OLD;
    END IF;
    PERFORM ragway_note_change('document_indexed', NEW.kb_id, NEW.id, NULL);
    RETURN NEW;
END;
$$;

CREATE FUNCTION ragway_kb_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ragway_note_change('kb_deleted', OLD.id, NULL, NULL);
    RETURN OLD;
END;
$$;

CREATE FUNCTION ragway_key_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ragway_note_change('key_revoked', NULL, NULL, NEW.prefix);
    RETURN NEW;
END;
$$;

-- ragway_prune_changes deletes the changes older than p_keep and moves the horizon up
-- to the highest id deleted; it returns how many it deleted.
CREATE FUNCTION ragway_prune_changes(p_keep interval) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n    bigint;
    last bigint;
BEGIN
    WITH gone AS (DELETE FROM changes WHERE at < now() - p_keep RETURNING id)
    SELECT count(*), max(id) INTO n, last FROM gone;
    IF last IS NOT NULL THEN
        UPDATE change_horizon SET pruned_through = greatest(pruned_through, last);
    END IF;
    RETURN n;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER documents_indexed AFTER UPDATE OF status ON documents
    FOR EACH ROW WHEN (NEW.status = 'indexed') EXECUTE FUNCTION ragway_document_changed();
CREATE TRIGGER documents_deleted AFTER DELETE ON documents
    FOR EACH ROW EXECUTE FUNCTION ragway_document_changed();
CREATE TRIGGER knowledge_bases_deleted AFTER DELETE ON knowledge_bases
    FOR EACH ROW EXECUTE FUNCTION ragway_kb_deleted();
CREATE TRIGGER api_keys_revoked AFTER UPDATE OF revoked_at ON api_keys
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION ragway_key_revoked();

-- +goose Down
DROP TRIGGER api_keys_revoked ON api_keys;
DROP TRIGGER knowledge_bases_deleted ON knowledge_bases;
DROP TRIGGER documents_deleted ON documents;
DROP TRIGGER documents_indexed ON documents;
DROP FUNCTION ragway_prune_changes(interval);
DROP FUNCTION ragway_key_revoked();
DROP FUNCTION ragway_kb_deleted();
DROP FUNCTION ragway_document_changed();
DROP FUNCTION ragway_note_change(text, uuid, uuid, text);
DROP TABLE change_horizon;
DROP TABLE changes;
