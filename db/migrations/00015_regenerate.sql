-- Regenerating an answer. ragway_begin_turn takes p_regenerate, the id of the answer
-- to answer again: with no new messages, it must be the conversation's last message
-- that is not superseded, and finished (else SQLSTATE RG001: no such answer; RG002:
-- it is no longer the last, or still being written). A new in-progress answer follows,
-- with messages.replaces naming the old one, and the prompt's history leaves the old
-- one out. The old answer is replaced only if the new one completes (FinishMessage):
-- then the old one becomes 'superseded'; a new one that is cancelled or fails becomes
-- 'superseded' itself, and the old one stays. A superseded message is kept (the
-- conversation lists it) and is in no later prompt: what a caller holds up to one
-- (p_after_id) is void, and the history is read from the start.
--
-- The status check is replaced NOT VALID: every row already satisfies it (it allows
-- more than the one it replaces), and validating would scan messages under the
-- table's lock. replaces has no foreign key: deleting a conversation's messages would
-- otherwise look each one up in this column. The 11-argument function stays, for a
-- gateway of the previous version during a rolling upgrade: it is the new one without
-- a regeneration. Otherwise it is the function of 00004_begin_turn_after.sql.

-- +goose Up
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('in_progress', 'complete', 'cancelled', 'failed', 'superseded')) NOT VALID;
ALTER TABLE messages ADD COLUMN replaces uuid;

DROP FUNCTION ragway_begin_turn(uuid, uuid, text, boolean, text, text, text[], text[], integer, bigint, uuid);

-- +goose StatementBegin
CREATE FUNCTION ragway_begin_turn(
    p_user uuid, p_conversation uuid, p_model text,
    p_set_system boolean, p_system text, p_title text,
    p_roles text[], p_contents text[], p_budget integer, p_after bigint, p_after_id uuid,
    p_regenerate uuid)
RETURNS TABLE (
    c_id uuid, c_user_id uuid, c_title text, c_model text, c_system_prompt text,
    c_created_at timestamptz, c_updated_at timestamptz,
    m_id uuid, m_seq bigint, m_role text, m_content text, m_status text, m_model text,
    m_finish_reason text, m_prompt_tokens integer, m_completion_tokens integer,
    m_created_at timestamptz, m_completed_at timestamptz, m_added boolean, c_after bigint, c_pending bigint)
LANGUAGE plpgsql AS $$
DECLARE
    conv conversations;
    added_cost bigint;
    pending bigint;
    v_after bigint := coalesce(p_after, 0);
    v_budget integer := p_budget;
    n integer := coalesce(cardinality(p_roles), 0);
    last_msg messages;
BEGIN
    -- The start of a turn does not wait for its WAL to reach the disk: the end of the
    -- turn (FinishMessage, a synchronous commit) flushes the WAL up to and including
    -- it before the client is told the answer is stored. A Postgres crash in between
    -- loses the turn, and the client learns it when the end cannot be stored.
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_conversation IS NULL THEN
        INSERT INTO conversations (user_id, model, title, system_prompt)
        VALUES (p_user, p_model, p_title, CASE WHEN p_set_system THEN NULLIF(p_system, '') END)
        RETURNING * INTO conv;
    ELSE
        UPDATE conversations SET
            model = p_model,
            updated_at = now(),
            system_prompt = CASE WHEN p_set_system THEN NULLIF(p_system, '') ELSE system_prompt END,
            title = CASE WHEN title = '' THEN p_title ELSE title END
        WHERE id = p_conversation AND user_id = p_user
        RETURNING * INTO conv;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;

    IF p_regenerate IS NOT NULL THEN
        -- The answer regenerated must be the conversation's current last message
        -- (superseded ones aside), and finished.
        SELECT * INTO last_msg FROM messages h
        WHERE h.conversation_id = conv.id AND h.status <> 'superseded' ORDER BY h.seq DESC LIMIT 1;
        IF NOT EXISTS (SELECT 1 FROM messages h WHERE h.id = p_regenerate AND h.conversation_id = conv.id
                AND h.role = 'assistant' AND h.status <> 'superseded') THEN
            RAISE EXCEPTION 'the conversation has no such answer to regenerate' USING ERRCODE = 'RG001';
        ELSIF last_msg.id <> p_regenerate THEN
            RAISE EXCEPTION 'that answer is no longer the conversation''s last message' USING ERRCODE = 'RG002';
        ELSIF last_msg.status = 'in_progress' THEN
            RAISE EXCEPTION 'that answer is still being written' USING ERRCODE = 'RG002';
        END IF;
    END IF;
    SELECT coalesce(sum(octet_length(c) / 4 + 8), 0) INTO added_cost FROM unnest(p_contents) AS c;
    IF v_after > 0 THEN
        IF EXISTS (SELECT 1 FROM messages h WHERE h.id = p_after_id AND h.conversation_id = conv.id AND h.seq = v_after
                AND h.status <> 'superseded') THEN
            v_budget := 0;
        ELSE
            v_after := 0;
        END IF;
    END IF;
    SELECT min(h.seq) INTO pending FROM messages h
    WHERE h.conversation_id = conv.id AND h.seq > v_after AND h.status = 'in_progress';

    RETURN QUERY
    WITH added AS (
        -- The turn's messages, then the in-progress assistant message: inserted in
        -- array order, so their seq follows it.
        INSERT INTO messages (conversation_id, role, content, status, model, completed_at, replaces)
        SELECT conv.id, m.role, m.content,
            CASE WHEN m.ord > n THEN 'in_progress' ELSE 'complete' END,
            CASE WHEN m.ord > n THEN p_model END,
            CASE WHEN m.ord > n THEN NULL ELSE now() END,
            CASE WHEN m.ord > n THEN p_regenerate END
        FROM unnest(p_roles || 'assistant'::text, p_contents || ''::text) WITH ORDINALITY AS m(role, content, ord)
        ORDER BY m.ord
        RETURNING *
    ), earlier AS (
        SELECT h.*, sum(octet_length(h.content) / 4 + 8) OVER (ORDER BY h.seq DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newer_cost
        FROM messages h
        WHERE h.conversation_id = conv.id AND h.seq > v_after AND h.status NOT IN ('in_progress', 'superseded')
            AND h.id IS DISTINCT FROM p_regenerate
    ), rows AS (
        SELECT e.id, e.seq, e.role, e.content, e.status, e.model, e.finish_reason,
            e.prompt_tokens, e.completion_tokens, e.created_at, e.completed_at, false AS is_added
        FROM earlier e
        WHERE v_budget <= 0 OR coalesce(e.newer_cost, 0) + added_cost <= v_budget
        UNION ALL
        SELECT a.id, a.seq, a.role, a.content, a.status, a.model, a.finish_reason,
            a.prompt_tokens, a.completion_tokens, a.created_at, a.completed_at, true FROM added a
    )
    -- The conversation's columns ride on the added rows only (NULL on the others).
    SELECT CASE WHEN r.is_added THEN conv.id END, CASE WHEN r.is_added THEN conv.user_id END,
        CASE WHEN r.is_added THEN conv.title END, CASE WHEN r.is_added THEN conv.model END,
        CASE WHEN r.is_added THEN conv.system_prompt END,
        CASE WHEN r.is_added THEN conv.created_at END, CASE WHEN r.is_added THEN conv.updated_at END,
        r.id, r.seq, r.role, r.content, r.status,
        CASE WHEN r.is_added THEN r.model END, CASE WHEN r.is_added THEN r.finish_reason END,
        CASE WHEN r.is_added THEN r.prompt_tokens END, r.completion_tokens,
        CASE WHEN r.is_added THEN r.created_at END, CASE WHEN r.is_added THEN r.completed_at END,
        r.is_added, CASE WHEN r.is_added THEN v_after END, CASE WHEN r.is_added THEN pending END
    FROM rows r
    ORDER BY r.seq;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION ragway_begin_turn(
    p_user uuid, p_conversation uuid, p_model text,
    p_set_system boolean, p_system text, p_title text,
    p_roles text[], p_contents text[], p_budget integer, p_after bigint, p_after_id uuid)
RETURNS TABLE (
    c_id uuid, c_user_id uuid, c_title text, c_model text, c_system_prompt text,
    c_created_at timestamptz, c_updated_at timestamptz,
    m_id uuid, m_seq bigint, m_role text, m_content text, m_status text, m_model text,
    m_finish_reason text, m_prompt_tokens integer, m_completion_tokens integer,
    m_created_at timestamptz, m_completed_at timestamptz, m_added boolean, c_after bigint, c_pending bigint)
LANGUAGE sql AS $$
    SELECT * FROM ragway_begin_turn(p_user, p_conversation, p_model, p_set_system, p_system, p_title,
        p_roles, p_contents, p_budget, p_after, p_after_id, NULL::uuid)
$$;
-- +goose StatementEnd


-- +goose Down
DROP FUNCTION ragway_begin_turn(uuid, uuid, text, boolean, text, text, text[], text[], integer, bigint, uuid);
DROP FUNCTION ragway_begin_turn(uuid, uuid, text, boolean, text, text, text[], text[], integer, bigint, uuid, uuid);
-- Without the status, a superseded answer would come back into prompts: it goes.
DELETE FROM messages WHERE status = 'superseded';
ALTER TABLE messages DROP COLUMN replaces;
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('in_progress', 'complete', 'cancelled', 'failed')) NOT VALID;

-- +goose StatementBegin
CREATE FUNCTION ragway_begin_turn(
    p_user uuid, p_conversation uuid, p_model text,
    p_set_system boolean, p_system text, p_title text,
    p_roles text[], p_contents text[], p_budget integer, p_after bigint, p_after_id uuid)
RETURNS TABLE (
    c_id uuid, c_user_id uuid, c_title text, c_model text, c_system_prompt text,
    c_created_at timestamptz, c_updated_at timestamptz,
    m_id uuid, m_seq bigint, m_role text, m_content text, m_status text, m_model text,
    m_finish_reason text, m_prompt_tokens integer, m_completion_tokens integer,
    m_created_at timestamptz, m_completed_at timestamptz, m_added boolean, c_after bigint, c_pending bigint)
LANGUAGE plpgsql AS $$
DECLARE
    conv conversations;
    added_cost bigint;
    pending bigint;
    v_after bigint := coalesce(p_after, 0);
    v_budget integer := p_budget;
    n integer := coalesce(cardinality(p_roles), 0);
BEGIN
    -- The start of a turn does not wait for its WAL to reach the disk: the end of the
    -- turn (FinishMessage, a synchronous commit) flushes the WAL up to and including
    -- it before the client is told the answer is stored. A Postgres crash in between
    -- loses the turn, and the client learns it when the end cannot be stored.
    PERFORM set_config('synchronous_commit', 'off', true);
    IF p_conversation IS NULL THEN
        INSERT INTO conversations (user_id, model, title, system_prompt)
        VALUES (p_user, p_model, p_title, CASE WHEN p_set_system THEN NULLIF(p_system, '') END)
        RETURNING * INTO conv;
    ELSE
        UPDATE conversations SET
            model = p_model,
            updated_at = now(),
            system_prompt = CASE WHEN p_set_system THEN NULLIF(p_system, '') ELSE system_prompt END,
            title = CASE WHEN title = '' THEN p_title ELSE title END
        WHERE id = p_conversation AND user_id = p_user
        RETURNING * INTO conv;
        IF NOT FOUND THEN
            RETURN;
        END IF;
    END IF;

    SELECT coalesce(sum(octet_length(c) / 4 + 8), 0) INTO added_cost FROM unnest(p_contents) AS c;
    IF v_after > 0 THEN
        IF EXISTS (SELECT 1 FROM messages h WHERE h.id = p_after_id AND h.conversation_id = conv.id AND h.seq = v_after) THEN
            v_budget := 0;
        ELSE
            v_after := 0;
        END IF;
    END IF;
    SELECT min(h.seq) INTO pending FROM messages h
    WHERE h.conversation_id = conv.id AND h.seq > v_after AND h.status = 'in_progress';

    RETURN QUERY
    WITH added AS (
        -- The turn's messages, then the in-progress assistant message: inserted in
        -- array order, so their seq follows it.
        INSERT INTO messages (conversation_id, role, content, status, model, completed_at)
        SELECT conv.id, m.role, m.content,
            CASE WHEN m.ord > n THEN 'in_progress' ELSE 'complete' END,
            CASE WHEN m.ord > n THEN p_model END,
            CASE WHEN m.ord > n THEN NULL ELSE now() END
        FROM unnest(p_roles || 'assistant'::text, p_contents || ''::text) WITH ORDINALITY AS m(role, content, ord)
        ORDER BY m.ord
        RETURNING *
    ), earlier AS (
        SELECT h.*, sum(octet_length(h.content) / 4 + 8) OVER (ORDER BY h.seq DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newer_cost
        FROM messages h
        WHERE h.conversation_id = conv.id AND h.seq > v_after AND h.status <> 'in_progress'
    ), rows AS (
        SELECT e.id, e.seq, e.role, e.content, e.status, e.model, e.finish_reason,
            e.prompt_tokens, e.completion_tokens, e.created_at, e.completed_at, false AS is_added
        FROM earlier e
        WHERE v_budget <= 0 OR coalesce(e.newer_cost, 0) + added_cost <= v_budget
        UNION ALL
        SELECT a.id, a.seq, a.role, a.content, a.status, a.model, a.finish_reason,
            a.prompt_tokens, a.completion_tokens, a.created_at, a.completed_at, true FROM added a
    )
    -- The conversation's columns ride on the added rows only (NULL on the others).
    SELECT CASE WHEN r.is_added THEN conv.id END, CASE WHEN r.is_added THEN conv.user_id END,
        CASE WHEN r.is_added THEN conv.title END, CASE WHEN r.is_added THEN conv.model END,
        CASE WHEN r.is_added THEN conv.system_prompt END,
        CASE WHEN r.is_added THEN conv.created_at END, CASE WHEN r.is_added THEN conv.updated_at END,
        r.id, r.seq, r.role, r.content, r.status,
        CASE WHEN r.is_added THEN r.model END, CASE WHEN r.is_added THEN r.finish_reason END,
        CASE WHEN r.is_added THEN r.prompt_tokens END, r.completion_tokens,
        CASE WHEN r.is_added THEN r.created_at END, CASE WHEN r.is_added THEN r.completed_at END,
        r.is_added, CASE WHEN r.is_added THEN v_after END, CASE WHEN r.is_added THEN pending END
    FROM rows r
    ORDER BY r.seq;
END
$$;
-- +goose StatementEnd
