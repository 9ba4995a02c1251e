-- Tool calls and tool results in stored conversations. An assistant message may carry
-- the calls of tools it made (tool_calls: a JSON array of {"id", "name",
-- "arguments"}, arguments being JSON text), a tool message the id of the call it
-- answers (tool_call_id). They live in message_tools, beside messages, not in new
-- columns of messages: a gateway of the previous version prepared statements that
-- return messages' rows (RETURNING *), and Postgres refuses to run a prepared
-- statement whose result changed shape ("cached plan must not change result type").
--
-- ragway_begin_turn takes them for the turn's messages (p_tool_calls: each message's
-- calls as JSON text, '' for none; p_tool_call_ids: '' for none; either array at most
-- as long as p_roles) and returns them with the history; FinishMessage stores an
-- answer's calls. A tool message must answer a call of the answer before it (else
-- SQLSTATE RG003). A message's size in the history budget counts its calls' JSON
-- with its content.
--
-- The 12-argument function stays for a gateway of the previous version during a
-- rolling upgrade: the new one without tools, whose history leaves out the tool
-- results and the answers that called tools (that gateway could not give them to a
-- model faithfully). The 11-argument one calls it, as before.

-- +goose Up
CREATE TABLE message_tools (
    message_id   uuid PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    tool_calls   jsonb,
    tool_call_id text
);

-- +goose StatementBegin
CREATE FUNCTION ragway_begin_turn(
    p_user uuid, p_conversation uuid, p_model text,
    p_set_system boolean, p_system text, p_title text,
    p_roles text[], p_contents text[], p_budget integer, p_after bigint, p_after_id uuid,
    p_regenerate uuid, p_tool_calls text[], p_tool_call_ids text[])
RETURNS TABLE (
    c_id uuid, c_user_id uuid, c_title text, c_model text, c_system_prompt text,
    c_created_at timestamptz, c_updated_at timestamptz,
    m_id uuid, m_seq bigint, m_role text, m_content text, m_status text, m_model text,
    m_finish_reason text, m_prompt_tokens integer, m_completion_tokens integer,
    m_created_at timestamptz, m_completed_at timestamptz, m_added boolean, c_after bigint, c_pending bigint,
    m_tool_calls jsonb, m_tool_call_id text)
LANGUAGE plpgsql AS $$
DECLARE
    conv conversations;
    added_cost bigint;
    pending bigint;
    v_after bigint := coalesce(p_after, 0);
    v_budget integer := p_budget;
    n integer := coalesce(cardinality(p_roles), 0);
    last_msg messages;
    open_calls text[];
    v_role text;
    v_calls jsonb;
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
    IF coalesce(cardinality(p_tool_calls), 0) > n OR coalesce(cardinality(p_tool_call_ids), 0) > n THEN
        RAISE EXCEPTION 'more tool calls or tool call ids than messages' USING ERRCODE = '22023';
    END IF;
    -- A tool message answers a call of the answer before it (tool messages between
    -- them aside): of this turn's, or else of the conversation's last answer.
    IF 'tool' = ANY(p_roles) THEN
        SELECT h.role, mt.tool_calls INTO v_role, v_calls
        FROM messages h LEFT JOIN message_tools mt ON mt.message_id = h.id
        WHERE h.conversation_id = conv.id AND h.status NOT IN ('superseded', 'in_progress') AND h.role <> 'tool'
        ORDER BY h.seq DESC LIMIT 1;
        open_calls := CASE WHEN v_role = 'assistant' AND v_calls IS NOT NULL
            THEN ARRAY(SELECT jsonb_array_elements(v_calls)->>'id') ELSE '{}' END;
        FOR i IN 1..n LOOP
            CASE p_roles[i]
            WHEN 'assistant' THEN
                open_calls := CASE WHEN coalesce(p_tool_calls[i], '') = '' THEN '{}'
                    ELSE ARRAY(SELECT jsonb_array_elements(p_tool_calls[i]::jsonb)->>'id') END;
            WHEN 'tool' THEN
                IF NOT coalesce(p_tool_call_ids[i], '') = ANY(open_calls) THEN
                    RAISE EXCEPTION 'a tool message answers the call ''%'', which the answer before it did not make', p_tool_call_ids[i]
                        USING ERRCODE = 'RG003';
                END IF;
            ELSE
                open_calls := '{}';
            END CASE;
        END LOOP;
    END IF;
    SELECT coalesce(sum((octet_length(m.content) + coalesce(octet_length(m.calls), 0)) / 4 + 8), 0) INTO added_cost
    FROM unnest(p_contents, p_tool_calls) AS m(content, calls);
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
    ), added_tools AS (
        -- The added messages in array order (their seq's), with their tools.
        SELECT a.*, NULLIF(t.calls, '')::jsonb AS tool_calls, NULLIF(t.call_id, '') AS tool_call_id
        FROM (SELECT a.*, row_number() OVER (ORDER BY a.seq) AS ord FROM added a) a
        LEFT JOIN unnest(p_tool_calls, p_tool_call_ids) WITH ORDINALITY AS t(calls, call_id, ord) ON t.ord = a.ord
    ), stored_tools AS (
        INSERT INTO message_tools (message_id, tool_calls, tool_call_id)
        SELECT a.id, a.tool_calls, a.tool_call_id FROM added_tools a
        WHERE a.tool_calls IS NOT NULL OR a.tool_call_id IS NOT NULL
    ), earlier AS (
        SELECT h.*, mt.tool_calls, mt.tool_call_id,
            sum((octet_length(h.content) + coalesce(octet_length(mt.tool_calls::text), 0)) / 4 + 8) OVER (ORDER BY h.seq DESC
            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newer_cost
        FROM messages h LEFT JOIN message_tools mt ON mt.message_id = h.id
        WHERE h.conversation_id = conv.id AND h.seq > v_after AND h.status NOT IN ('in_progress', 'superseded')
            AND h.id IS DISTINCT FROM p_regenerate
    ), rows AS (
        SELECT e.id, e.seq, e.role, e.content, e.status, e.model, e.finish_reason,
            e.prompt_tokens, e.completion_tokens, e.created_at, e.completed_at, false AS is_added,
            e.tool_calls, e.tool_call_id
        FROM earlier e
        WHERE v_budget <= 0 OR coalesce(e.newer_cost, 0) + added_cost <= v_budget
        UNION ALL
        SELECT a.id, a.seq, a.role, a.content, a.status, a.model, a.finish_reason,
            a.prompt_tokens, a.completion_tokens, a.created_at, a.completed_at, true,
            a.tool_calls, a.tool_call_id FROM added_tools a
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
        r.is_added, CASE WHEN r.is_added THEN v_after END, CASE WHEN r.is_added THEN pending END,
        r.tool_calls, r.tool_call_id
    FROM rows r
    ORDER BY r.seq;
END
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION ragway_begin_turn(
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
LANGUAGE sql AS $$
    SELECT t.c_id, t.c_user_id, t.c_title, t.c_model, t.c_system_prompt, t.c_created_at, t.c_updated_at,
        t.m_id, t.m_seq, t.m_role, t.m_content, t.m_status, t.m_model, t.m_finish_reason,
        t.m_prompt_tokens, t.m_completion_tokens, t.m_created_at, t.m_completed_at, t.m_added, t.c_after, t.c_pending
    FROM ragway_begin_turn(p_user, p_conversation, p_model, p_set_system, p_system, p_title,
        p_roles, p_contents, p_budget, p_after, p_after_id, p_regenerate, NULL::text[], NULL::text[]) t
    WHERE t.m_added OR (t.m_role <> 'tool' AND t.m_tool_calls IS NULL)
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION ragway_begin_turn(uuid, uuid, text, boolean, text, text, text[], text[], integer, bigint, uuid, uuid, text[], text[]);
-- The function of 00015_regenerate.sql; without message_tools the tool exchanges would
-- come back into prompts as plain messages (an answer's text without its calls, next
-- to the following answer): the messages that have tools go.
DROP FUNCTION ragway_begin_turn(uuid, uuid, text, boolean, text, text, text[], text[], integer, bigint, uuid, uuid);
DELETE FROM messages WHERE id IN (SELECT message_id FROM message_tools);
DROP TABLE message_tools;

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
