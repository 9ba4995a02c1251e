-- ragway_begin_turn reads only what the gateway does not hold: p_after is a seq up to
-- which the caller already holds every message of the conversation (final messages
-- never change), and the history returned is the earlier messages after it. The added
-- rows carry c_pending, the lowest seq among the conversation's messages after p_after
-- that are still in progress (NULL: none), so that the caller knows how far what it
-- now holds is complete. p_after 0 returns the whole history, as the function of
-- 00002 did; otherwise it is the function of 00002_begin_turn.sql.

-- +goose Up
DROP FUNCTION ragway_begin_turn(uuid, uuid, text, boolean, text, text, text[], text[], integer);

-- +goose StatementBegin
CREATE FUNCTION ragway_begin_turn(
    p_user uuid, p_conversation uuid, p_model text,
    p_set_system boolean, p_system text, p_title text,
    p_roles text[], p_contents text[], p_budget integer, p_after bigint)
RETURNS TABLE (
    c_id uuid, c_user_id uuid, c_title text, c_model text, c_system_prompt text,
    c_created_at timestamptz, c_updated_at timestamptz,
    m_id uuid, m_seq bigint, m_role text, m_content text, m_status text, m_model text,
    m_finish_reason text, m_prompt_tokens integer, m_completion_tokens integer,
    m_created_at timestamptz, m_completed_at timestamptz, m_added boolean, c_pending bigint)
LANGUAGE plpgsql AS $$
DECLARE
    conv conversations;
    added_cost bigint;
    pending bigint;
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
    SELECT min(h.seq) INTO pending FROM messages h
    WHERE h.conversation_id = conv.id AND h.seq > p_after AND h.status = 'in_progress';

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
        WHERE h.conversation_id = conv.id AND h.seq > p_after AND h.status <> 'in_progress'
    ), rows AS (
        SELECT e.id, e.seq, e.role, e.content, e.status, e.model, e.finish_reason,
            e.prompt_tokens, e.completion_tokens, e.created_at, e.completed_at, false AS is_added
        FROM earlier e
        WHERE p_budget <= 0 OR coalesce(e.newer_cost, 0) + added_cost <= p_budget
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
        r.is_added, CASE WHEN r.is_added THEN pending END
    FROM rows r
    ORDER BY r.seq;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION ragway_begin_turn(uuid, uuid, text, boolean, text, text, text[], text[], integer, bigint);

-- +goose StatementBegin
CREATE FUNCTION ragway_begin_turn(
    p_user uuid, p_conversation uuid, p_model text,
    p_set_system boolean, p_system text, p_title text,
    p_roles text[], p_contents text[], p_budget integer)
RETURNS TABLE (
    c_id uuid, c_user_id uuid, c_title text, c_model text, c_system_prompt text,
    c_created_at timestamptz, c_updated_at timestamptz,
    m_id uuid, m_seq bigint, m_role text, m_content text, m_status text, m_model text,
    m_finish_reason text, m_prompt_tokens integer, m_completion_tokens integer,
    m_created_at timestamptz, m_completed_at timestamptz, m_added boolean)
LANGUAGE plpgsql AS $$
DECLARE
    conv conversations;
    added_cost bigint;
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
        WHERE h.conversation_id = conv.id AND h.status <> 'in_progress'
    ), rows AS (
        SELECT e.id, e.seq, e.role, e.content, e.status, e.model, e.finish_reason,
            e.prompt_tokens, e.completion_tokens, e.created_at, e.completed_at, false AS is_added
        FROM earlier e
        WHERE p_budget <= 0 OR coalesce(e.newer_cost, 0) + added_cost <= p_budget
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
        r.is_added
    FROM rows r
    ORDER BY r.seq;
END
$$;
-- +goose StatementEnd
