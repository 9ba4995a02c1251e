package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// storedChat is a WS chat frame of a stored conversation (conversationID "": a new one).
func storedChat(id, model, conversationID, content string) map[string]any {
	f := map[string]any{"type": "chat", "id": id, "model": model, "content": content}
	if conversationID != "" {
		f["conversation_id"] = conversationID
	}
	return f
}

// chatInConversation is the body of an HTTP chat completion continuing conversationID.
func chatInConversation(model, conversationID, content string, stream bool) string {
	b, _ := json.Marshal(map[string]any{
		"model": model, "stream": stream, "conversation_id": conversationID,
		"stream_options": map[string]bool{"include_usage": stream},
		"messages":       []map[string]string{{"role": "user", "content": content}},
	})
	return string(b)
}

// chatResponse is the part of a chat completion the conversation tests read.
type chatResponse struct {
	Choices []struct {
		Message      struct{ Content string } `json:"message"`
		FinishReason string                   `json:"finish_reason"`
	} `json:"choices"`
	Usage          wsUsage `json:"usage"`
	ConversationID string  `json:"conversation_id"`
	MessageID      string  `json:"message_id"`
}

// postChat sends an HTTP chat completion with key and decodes a 200 answer.
func postChat(t *testing.T, g *gateway, key, body string) (chatResponse, http.Header) {
	t.Helper()
	resp, err := g.send("POST", "/v1/chat/completions", key, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out chatResponse
	if resp.StatusCode != 200 {
		b, _ := json.Marshal(resp.Header)
		t.Fatalf("chat completion: status %d (headers %s)", resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out, resp.Header
}

// streamChat sends a streamed HTTP chat completion with key and returns the text, the
// usage chunk's usage and the response headers.
func streamChat(t *testing.T, g *gateway, key, body string) (string, wsUsage, http.Header) {
	t.Helper()
	resp, err := g.send("POST", "/v1/chat/completions", key, body)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("streamed chat completion: status %d", resp.StatusCode)
	}
	events := sseEvents(t, resp.Body)
	if len(events) == 0 || events[len(events)-1] != "[DONE]" {
		t.Fatalf("events %q, want ... [DONE]", events)
	}
	var text strings.Builder
	var usage wsUsage
	for _, e := range events[:len(events)-1] {
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage *wsUsage         `json:"usage"`
			Error *json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(e), &c); err != nil || c.Error != nil {
			t.Fatalf("event %q (%v)", e, err)
		}
		for _, ch := range c.Choices {
			text.WriteString(ch.Delta.Content)
		}
		if c.Usage != nil {
			usage = *c.Usage
		}
	}
	return text.String(), usage, resp.Header
}

func TestConversationIsolation(t *testing.T) {
	g := startGateway(t, echoModels)
	alice := g.createKey("alice", "chat")
	bob := g.createKey("bob", "chat")

	// Alice starts one conversation on a socket and one over HTTP.
	sa := dialWSKey(t, g, alice, "")
	r := runWSChat(t, sa, storedChat("a1", "chat", "", "alice's secret plan"))
	if r.End.Type != "done" || r.Start.ConversationID == "" {
		t.Fatalf("alice's WS turn: start %s end %s", r.Start.raw, r.End.raw)
	}
	wsConv := r.Start.ConversationID
	res, _ := postChat(t, g, alice, chatInConversation("chat", "new", "alice's other secret", false))
	httpConv := res.ConversationID
	if httpConv == "" || httpConv == wsConv {
		t.Fatalf("alice's HTTP conversation %q (WS one %q)", httpConv, wsConv)
	}
	before := map[string]storedConversation{wsConv: g.conversation(alice, wsConv), httpConv: g.conversation(alice, httpConv)}

	// Bob has a conversation of his own.
	res, _ = postChat(t, g, bob, chatInConversation("chat", "new", "bob's turn", false))
	bobConv := res.ConversationID
	if ids := g.conversationIDs(bob); !slices.Equal(ids, []string{bobConv}) {
		t.Fatalf("bob lists %v, want only his %s", ids, bobConv)
	}
	if ids := g.conversationIDs(alice); len(ids) != 2 || !slices.Contains(ids, wsConv) || !slices.Contains(ids, httpConv) {
		t.Fatalf("alice lists %v, want %s and %s", ids, wsConv, httpConv)
	}

	sb := dialWSKey(t, g, bob, "")
	for _, id := range []string{wsConv, httpConv, "not-a-uuid", "00000000-0000-0000-0000-000000000000"} {
		// Another user's conversation is exactly as absent as one that does not exist.
		code, body := g.call("GET", "/v1/conversations/"+id, bob, "")
		wantAPIError(t, "bob GETs "+id, code, body, 404, "not_found")
		code, body = g.call("DELETE", "/v1/conversations/"+id, bob, "")
		wantAPIError(t, "bob DELETEs "+id, code, body, 404, "not_found")
		for _, stream := range []bool{false, true} {
			code, body = g.call("POST", "/v1/chat/completions", bob, chatInConversation("chat", id, "let me in", stream))
			e := wantAPIError(t, fmt.Sprintf("bob chats in %s (stream %v)", id, stream), code, body, 404, "not_found")
			if e.Param != "conversation_id" {
				t.Fatalf("404 param %q, want conversation_id", e.Param)
			}
		}
		cr := runWSChat(t, sb, storedChat("b-"+id, "chat", id, "let me in"))
		if cr.End.Type != "error" || cr.End.Error == nil || cr.End.Error.Code != "not_found" || cr.End.Error.Param != "conversation_id" || cr.Start.Type != "" || cr.Tokens != 0 {
			t.Fatalf("bob's WS chat in %s: start %s, %d tokens, end %s; want only an error frame not_found", id, cr.Start.raw, cr.Tokens, cr.End.raw)
		}
		apiErrorBody(t, cr.End.raw)
	}
	// Bob's socket still works for his own conversation.
	cr := runWSChat(t, sb, storedChat("b-own", "chat", bobConv, "my own"))
	if cr.End.Type != "done" || cr.Start.ConversationID != bobConv {
		t.Fatalf("bob's own conversation: %s %s", cr.Start.raw, cr.End.raw)
	}

	// Alice's conversations are intact.
	for id, want := range before {
		got := g.conversation(alice, id)
		if !reflect.DeepEqual(got.Messages, want.Messages) {
			t.Fatalf("alice's conversation %s changed:\n got %+v\nwant %+v", id, got.Messages, want.Messages)
		}
	}
	if ids := g.conversationIDs(alice); len(ids) != 2 {
		t.Fatalf("alice lists %v after bob's attempts", ids)
	}
	// And a DELETE by their owner does delete (the 404s above were not a broken route).
	if code, body := g.call("DELETE", "/v1/conversations/"+httpConv, alice, ""); code != 200 {
		t.Fatalf("alice deletes her conversation: %d %s", code, body)
	}
	code, body := g.call("GET", "/v1/conversations/"+httpConv, alice, "")
	wantAPIError(t, "a deleted conversation", code, body, 404, "not_found")

	// Usage: one row per served request; bob's refused attempts have none.
	rows := g.waitUsage(4, 10*time.Second)
	var got []string
	for _, r := range rows {
		got = append(got, r.User+" "+r.Route)
	}
	if want := []string{"alice /v1/ws", "alice /v1/chat/completions", "bob /v1/chat/completions", "bob /v1/ws"}; !slices.Equal(got, want) {
		t.Fatalf("usage rows %q, want %q", got, want)
	}
	noKeysInLogs(t, g, alice, bob)
}

func TestConversationPersistence(t *testing.T) {
	g := startGateway(t, echoModels)
	c := dialWSKey(t, g, g.Key, "")

	type turn struct {
		question, messageID string
		usage               wsUsage
		route               string
	}
	var turns []turn
	conv := ""
	for i, q := range []string{"first question about ships", "second one", "the third and last on the socket"} {
		r := runWSChat(t, c, storedChat(fmt.Sprint("t", i), "chat", conv, q))
		if r.Start.Type != "start" || r.Start.ConversationID == "" || r.Start.MessageID == "" {
			t.Fatalf("turn %d: start frame %s", i, r.Start.raw)
		}
		if conv != "" && r.Start.ConversationID != conv {
			t.Fatalf("turn %d went to conversation %s, not %s", i, r.Start.ConversationID, conv)
		}
		conv = r.Start.ConversationID
		if r.Text != q || r.End.Type != "done" || r.End.FinishReason != "stop" || r.End.Usage == nil {
			t.Fatalf("turn %d: text %q, end %s", i, r.Text, r.End.raw)
		}
		u := *r.End.Usage
		if u.CompletionTokens != len(strings.Fields(q)) {
			t.Fatalf("turn %d: usage %+v, want %d completion tokens", i, u, len(strings.Fields(q)))
		}
		// The echo backend counts every message of its prompt: each turn's prompt
		// holds the earlier turns (the history is the server's).
		if i > 0 && u.PromptTokens <= turns[i-1].usage.PromptTokens+turns[i-1].usage.CompletionTokens {
			t.Fatalf("turn %d: %d prompt tokens, turn %d had %+v: the history was not sent", i, u.PromptTokens, i-1, turns[i-1].usage)
		}
		turns = append(turns, turn{q, r.Start.MessageID, u, "/v1/ws"})
	}

	// HTTP chat completions continue the same conversation.
	q := "fourth over http"
	res, h := postChat(t, g, g.Key, chatInConversation("chat", conv, q, false))
	if res.ConversationID != conv || res.MessageID == "" || len(res.Choices) != 1 || res.Choices[0].Message.Content != q {
		t.Fatalf("HTTP turn: %+v", res)
	}
	if h.Get("X-Ragway-Conversation-Id") != conv || h.Get("X-Ragway-Message-Id") != res.MessageID {
		t.Fatalf("HTTP turn headers: conversation %q message %q, want %s %s", h.Get("X-Ragway-Conversation-Id"), h.Get("X-Ragway-Message-Id"), conv, res.MessageID)
	}
	if res.Usage.PromptTokens <= turns[2].usage.PromptTokens {
		t.Fatalf("HTTP turn: prompt tokens %d, the last WS turn had %d: the history was not sent", res.Usage.PromptTokens, turns[2].usage.PromptTokens)
	}
	turns = append(turns, turn{q, res.MessageID, res.Usage, "/v1/chat/completions"})

	q = "fifth streamed over http"
	text, usage, h := streamChat(t, g, g.Key, chatInConversation("chat", conv, q, true))
	if text != q || usage.CompletionTokens != 4 || h.Get("X-Ragway-Conversation-Id") != conv || h.Get("X-Ragway-Message-Id") == "" {
		t.Fatalf("streamed HTTP turn: %q, usage %+v, headers conversation %q message %q", text, usage, h.Get("X-Ragway-Conversation-Id"), h.Get("X-Ragway-Message-Id"))
	}
	turns = append(turns, turn{q, h.Get("X-Ragway-Message-Id"), usage, "/v1/chat/completions"})

	// Everything is stored, in order. The end of each turn reached the client only
	// after its answer was stored: no waiting here.
	got := g.conversation(g.Key, conv)
	if got.ID != conv || got.Title != turns[0].question || got.Model != "chat" {
		t.Fatalf("conversation %+v", got)
	}
	if len(got.Messages) != 2*len(turns) {
		t.Fatalf("%d messages, want %d: %+v", len(got.Messages), 2*len(turns), got.Messages)
	}
	for i, tr := range turns {
		u, a := got.Messages[2*i], got.Messages[2*i+1]
		if u.Role != "user" || u.Content != tr.question || u.Status != "complete" {
			t.Fatalf("message %d: %+v, want the user's %q", 2*i, u, tr.question)
		}
		if a.Role != "assistant" || a.ID != tr.messageID || a.Content != tr.question || a.Status != "complete" ||
			a.FinishReason != "stop" || a.Model != "chat" || a.Error != "" {
			t.Fatalf("message %d: %+v, want the complete answer %s %q", 2*i+1, a, tr.messageID, tr.question)
		}
		if a.PromptTokens != tr.usage.PromptTokens || a.CompletionTokens != tr.usage.CompletionTokens || a.CompletionTokens <= 0 || a.PromptTokens <= 0 {
			t.Fatalf("message %d: tokens %d/%d, the client was told %+v", 2*i+1, a.PromptTokens, a.CompletionTokens, tr.usage)
		}
	}

	// One usage row per request, with its route, model and tokens.
	rows := g.waitUsage(len(turns), 10*time.Second)
	if len(rows) != len(turns) {
		t.Fatalf("%d usage rows, want %d: %+v", len(rows), len(turns), rows)
	}
	for i, tr := range turns {
		want := usageRow{User: "e2e", Key: keyPrefix(g.Key), Model: "chat", Route: tr.route,
			PromptTokens: tr.usage.PromptTokens, CompletionTokens: tr.usage.CompletionTokens}
		if rows[i] != want {
			t.Fatalf("usage row %d: %+v, want %+v", i, rows[i], want)
		}
	}
	noKeysInLogs(t, g)
}

func TestConversationCancelledTurnIsStored(t *testing.T) {
	g := startGateway(t, `
  - {name: chat, backend: echo, max_concurrency: 4, options: {delay_ms: 50}}
`)
	c := dialWSKey(t, g, g.Key, "")
	r := runWSChat(t, c, storedChat("t0", "chat", "", "a short first turn"))
	if r.End.Type != "done" {
		t.Fatalf("first turn: %s", r.End.raw)
	}
	conv := r.Start.ConversationID

	words := make([]string, 200)
	for i := range words {
		words[i] = fmt.Sprint("w", i)
	}
	long := strings.Join(words, " ")
	writeWS(t, c, storedChat("t1", "chat", conv, long))
	start := readWS(t, c)
	if start.Type != "start" || start.ConversationID != conv || start.MessageID == "" {
		t.Fatalf("start frame %s", start.raw)
	}
	var received strings.Builder
	tokens := 0
	for tokens < 2 {
		f := readWS(t, c)
		if f.Type != "token" || f.ID != "t1" {
			t.Fatalf("frame %s, want a token", f.raw)
		}
		received.WriteString(f.Text)
		tokens++
	}
	writeWS(t, c, map[string]string{"type": "cancel", "id": "t1"})
	var end wsFrame
	for {
		f := readWS(t, c)
		if f.ID != "t1" {
			t.Fatalf("frame %s", f.raw)
		}
		if f.Type == "token" { // already on its way when the cancel arrived
			received.WriteString(f.Text)
			continue
		}
		end = f
		break
	}
	if end.Type != "done" || end.FinishReason != "cancelled" {
		t.Fatalf("after cancel: %s, want done cancelled", end.raw)
	}
	if end.Usage == nil || end.Usage.PromptTokens < 200 {
		t.Fatalf("after cancel: %s, want the real prompt count (over 200 tokens)", end.raw)
	}

	// The done frame came after the partial answer was stored.
	got := g.conversation(g.Key, conv)
	if len(got.Messages) != 4 {
		t.Fatalf("%d messages, want 4: %+v", len(got.Messages), got.Messages)
	}
	if u := got.Messages[2]; u.Role != "user" || u.Content != long {
		t.Fatalf("message 2: %+v", u)
	}
	a := got.Messages[3]
	if a.Role != "assistant" || a.ID != start.MessageID || a.Status != "cancelled" || a.FinishReason != "cancelled" {
		t.Fatalf("cancelled answer stored as %+v", a)
	}
	// The stored partial answer is what the client got, or more (tokens generated but
	// not sent yet), never other text, and not the whole answer.
	if !strings.HasPrefix(a.Content, received.String()) || !strings.HasPrefix(long, a.Content) || len(a.Content) >= len(long) {
		t.Fatalf("stored partial answer %q; the client received %q", a.Content, received.String())
	}
	if n := len(strings.Fields(a.Content)); a.CompletionTokens != n {
		t.Fatalf("stored %d completion tokens for %d words", a.CompletionTokens, n)
	}

	// The conversation goes on after a cancelled turn.
	r = runWSChat(t, c, storedChat("t2", "chat", conv, "after the cancel"))
	if r.End.Type != "done" || r.Text != "after the cancel" {
		t.Fatalf("turn after the cancel: %q %s", r.Text, r.End.raw)
	}
	if n := len(g.conversation(g.Key, conv).Messages); n != 6 {
		t.Fatalf("%d messages after the next turn, want 6", n)
	}
}

func TestConversationCrashedTurnIsStored(t *testing.T) {
	g := startGateway(t, echoModels+`
  - {name: flaky, backend: echo, options: {fail_after: 2, delay_ms: 20}}
`)
	c := dialWSKey(t, g, g.Key, "")
	r := runWSChat(t, c, storedChat("t0", "chat", "", "a healthy first turn"))
	if r.End.Type != "done" {
		t.Fatalf("first turn: %s", r.End.raw)
	}
	conv := r.Start.ConversationID

	// The plugin dies after two tokens: an error frame, and the partial answer
	// stored as failed.
	r = runWSChat(t, c, storedChat("t1", "flaky", conv, "one two three four"))
	if r.Start.Type != "start" || r.Text != "one two" || r.End.Type != "error" || r.End.Error == nil {
		t.Fatalf("crashed turn: start %s, text %q, end %s", r.Start.raw, r.Text, r.End.raw)
	}
	apiErrorBody(t, r.End.raw)
	got := g.conversation(g.Key, conv)
	if len(got.Messages) != 4 {
		t.Fatalf("%d messages, want 4: %+v", len(got.Messages), got.Messages)
	}
	a := got.Messages[3]
	if a.Role != "assistant" || a.ID != r.Start.MessageID || a.Status != "failed" || a.FinishReason != "error" ||
		a.Content != "one two" || a.CompletionTokens != 2 || a.Error == "" || a.Model != "flaky" {
		t.Fatalf("crashed answer stored as %+v", a)
	}

	// The same over HTTP (streamed), once the replica is back.
	g.waitReady(10 * time.Second)
	resp, err := g.send("POST", "/v1/chat/completions", g.Key, chatInConversation("flaky", conv, "five six seven eight", true))
	if err != nil {
		t.Fatal(err)
	}
	events := sseEvents(t, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(events) < 2 || events[len(events)-1] != "[DONE]" || !strings.Contains(events[len(events)-2], `"error"`) {
		t.Fatalf("crashed HTTP turn: %d %q", resp.StatusCode, events)
	}
	mid := resp.Header.Get("X-Ragway-Message-Id")
	got = g.conversation(g.Key, conv)
	if len(got.Messages) != 6 {
		t.Fatalf("%d messages, want 6: %+v", len(got.Messages), got.Messages)
	}
	if a := got.Messages[5]; a.ID != mid || a.Status != "failed" || a.FinishReason != "error" || a.Content != "five six" || a.Error == "" {
		t.Fatalf("crashed HTTP answer stored as %+v (message id %s)", a, mid)
	}

	// The conversation continues on a healthy model.
	g.waitReady(10 * time.Second)
	r = runWSChat(t, c, storedChat("t2", "chat", conv, "after the crash"))
	if r.End.Type != "done" || r.Text != "after the crash" {
		t.Fatalf("turn after the crash: %q %s", r.Text, r.End.raw)
	}
	// No plugin stderr or internals reach the stored error.
	for _, m := range g.conversation(g.Key, conv).Messages {
		if strings.Contains(m.Error, "fail_after") || strings.Contains(m.Error, "exit status") {
			t.Fatalf("stored error %q leaks the plugin's internals", m.Error)
		}
	}
}

func TestConversationHistoryReachesLlamaCpp(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := startGateway(t, fmt.Sprintf(`
  - {name: chat, backend: llamacpp, max_concurrency: 2, options: {model_path: %q, lib_path: %q, threads: 1, parallel: 2, context_length: 512}}
`, model, lib))
	c := dialWSKey(t, g, g.Key, "")
	params := map[string]any{"temperature": 0, "max_tokens": 8}
	first := storedChat("t1", "chat", "", "Tell me about the sea.")
	first["params"] = params
	r1 := runWSChat(t, c, first)
	if r1.End.Type != "done" || r1.End.Usage == nil || r1.End.Usage.PromptTokens <= 0 || r1.End.Usage.CompletionTokens <= 0 {
		t.Fatalf("first turn: %s", r1.End.raw)
	}
	conv := r1.Start.ConversationID
	second := storedChat("t2", "chat", conv, "And rivers?")
	second["params"] = params
	r2 := runWSChat(t, c, second)
	if r2.End.Type != "done" || r2.End.Usage == nil {
		t.Fatalf("second turn: %s", r2.End.raw)
	}
	// The second prompt holds the first question and answer (plus the new question and
	// the template's markers): more tokens than the whole first turn.
	u1, u2 := *r1.End.Usage, *r2.End.Usage
	if u2.PromptTokens <= u1.PromptTokens+u1.CompletionTokens {
		t.Fatalf("second turn's prompt has %d tokens; the first turn had %d prompt + %d completion: the history was not sent",
			u2.PromptTokens, u1.PromptTokens, u1.CompletionTokens)
	}
	got := g.conversation(g.Key, conv)
	if len(got.Messages) != 4 || got.Messages[1].Content != r1.Text || got.Messages[3].Content != r2.Text ||
		got.Messages[1].CompletionTokens != u1.CompletionTokens || got.Messages[3].PromptTokens != u2.PromptTokens {
		t.Fatalf("stored messages %+v; answers %q %q, usage %+v %+v", got.Messages, r1.Text, r2.Text, u1, u2)
	}
}

// Paged listings (conversations, documents): ?limit= rows, newest first, "has_more"
// while a page is full, ?after= an id for the next page; a limit out of 1..200 is a 400.
func TestListingsPage(t *testing.T) {
	g := startGateway(t, echoModels)
	type page struct {
		Object  string                `json:"object"`
		Data    []struct{ ID string } `json:"data"`
		HasMore *bool                 `json:"has_more"`
	}
	read := func(path string) page {
		t.Helper()
		var p page
		if code, body := g.getJSON(path, g.Key, &p); code != 200 || p.Object != "list" || p.HasMore == nil {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return p
	}
	if code, body := g.call("POST", "/v1/knowledge-bases", g.Key, `{"name":"docs"}`); code != 201 {
		t.Fatalf("create a knowledge base: %d %s", code, body)
	}
	for i := range 3 {
		if code, body := g.call("POST", "/v1/conversations", g.Key, fmt.Sprintf(`{"title":"c%d"}`, i)); code != 200 && code != 201 {
			t.Fatalf("create a conversation: %d %s", code, body)
		}
		if code, body := g.call("POST", "/v1/knowledge-bases/docs/documents?wait=true", g.Key, fmt.Sprintf(`{"text":"document %d"}`, i)); code != 201 {
			t.Fatalf("add a document: %d %s", code, body)
		}
	}
	for _, base := range []string{"/v1/conversations", "/v1/knowledge-bases/docs/documents"} {
		first := read(base + "?limit=2")
		if len(first.Data) != 2 || !*first.HasMore {
			t.Fatalf("%s?limit=2: %d rows, has_more %v; want 2, true", base, len(first.Data), *first.HasMore)
		}
		rest := read(base + "?limit=2&after=" + first.Data[1].ID)
		if len(rest.Data) != 1 || *rest.HasMore || rest.Data[0].ID == first.Data[0].ID || rest.Data[0].ID == first.Data[1].ID {
			t.Fatalf("%s: the next page: %+v, has_more %v; want the third row only, false", base, rest.Data, *rest.HasMore)
		}
		if all := read(base); len(all.Data) != 3 || *all.HasMore {
			t.Fatalf("%s: %d rows, has_more %v; want 3, false", base, len(all.Data), *all.HasMore)
		}
		for _, bad := range []string{"0", "201", "x"} {
			if code, body := g.call("GET", base+"?limit="+bad, g.Key, ""); code != 400 || !strings.Contains(string(body), "limit") {
				t.Errorf("%s?limit=%s: %d %s, want a 400 naming limit", base, bad, code, body)
			}
		}
	}
}

// TestConversationRegenerate: a regenerate frame (naming the conversation's last
// answer) answers its question again from the same history (the echo backend's prompt
// tokens count it); the answer it replaces is kept as superseded and left out of later
// prompts; a cancelled regeneration leaves the old answer in place; and a regenerate
// frame that cannot be served is refused naming the field.
func TestConversationRegenerate(t *testing.T) {
	// Each word takes 100 ms: a cancel sent on the start frame arrives mid-answer.
	g := startGateway(t, `
  - {name: chat, backend: echo, options: {delay_ms: 100}}
`)
	c := dialWSKey(t, g, g.Key, "")
	r1 := runWSChat(t, c, storedChat("t1", "chat", "", "first question here"))
	conv := r1.Start.ConversationID
	r2 := runWSChat(t, c, storedChat("t2", "chat", conv, "second question"))
	if r2.End.Type != "done" {
		t.Fatalf("second turn: %s", r2.End.raw)
	}
	regen := func(id, answer string) map[string]any {
		return map[string]any{"type": "chat", "id": id, "model": "chat", "conversation_id": conv, "regenerate": answer}
	}
	r3 := runWSChat(t, c, regen("t3", r2.Start.MessageID))
	if r3.End.Type != "done" || r3.Text != "second question" || r3.Start.ConversationID != conv || r3.Start.MessageID == r2.Start.MessageID {
		t.Fatalf("regenerated: %q start %s end %s", r3.Text, r3.Start.raw, r3.End.raw)
	}
	if r3.End.Usage.PromptTokens != r2.End.Usage.PromptTokens {
		t.Fatalf("the regenerated answer's prompt has %d tokens, the answer it replaces had %d: not the same history",
			r3.End.Usage.PromptTokens, r2.End.Usage.PromptTokens)
	}
	// Again: the superseded answer stays out, so the prompt is still the same.
	r4 := runWSChat(t, c, regen("t4", r3.Start.MessageID))
	if r4.End.Type != "done" || r4.End.Usage.PromptTokens != r2.End.Usage.PromptTokens {
		t.Fatalf("regenerated twice: %s", r4.End.raw)
	}
	// Cancelled: the regeneration is superseded, r4 stays the answer.
	writeWS(t, c, regen("t5", r4.Start.MessageID))
	if f := readWS(t, c); f.Type != "start" {
		t.Fatalf("a regeneration to cancel: %s", f.raw)
	}
	writeWS(t, c, map[string]any{"type": "cancel", "id": "t5"})
	if r5 := readWSChat(t, c, "t5"); r5.End.Type != "done" || r5.End.FinishReason != "cancelled" {
		t.Fatalf("the cancelled regeneration: %s", r5.End.raw)
	}
	got := g.conversation(g.Key, conv)
	var statuses []string
	for _, m := range got.Messages {
		statuses = append(statuses, m.Role+":"+m.Status)
	}
	if want := []string{"user:complete", "assistant:complete", "user:complete", "assistant:superseded", "assistant:superseded", "assistant:complete", "assistant:superseded"}; !slices.Equal(statuses, want) {
		t.Fatalf("messages %q, want %q", statuses, want)
	}
	if got.Messages[3].ID != r2.Start.MessageID || got.Messages[5].ID != r4.Start.MessageID {
		t.Fatalf("superseded %s, current %s; want %s, %s", got.Messages[3].ID, got.Messages[5].ID, r2.Start.MessageID, r4.Start.MessageID)
	}
	// The next turn's history has one answer to the second question: its prompt is
	// the same as on a conversation that never regenerated.
	r6 := runWSChat(t, c, storedChat("t6", "chat", conv, "third"))
	fresh := dialWSKey(t, g, g.Key, "")
	f1 := runWSChat(t, fresh, storedChat("f1", "chat", "", "first question here"))
	runWSChat(t, fresh, storedChat("f2", "chat", f1.Start.ConversationID, "second question"))
	f3 := runWSChat(t, fresh, storedChat("f3", "chat", f1.Start.ConversationID, "third"))
	if r6.End.Usage.PromptTokens != f3.End.Usage.PromptTokens {
		t.Fatalf("after regenerating, the next prompt has %d tokens; without regenerating %d", r6.End.Usage.PromptTokens, f3.End.Usage.PromptTokens)
	}

	code, body := g.call("POST", "/v1/conversations", g.Key, `{"title":"empty"}`)
	var empty struct{ ID string }
	decode(t, "an empty conversation", code, body, http.StatusCreated, &empty)
	for _, tc := range []struct {
		frame map[string]any
		code  string
		param string
	}{
		{map[string]any{"type": "chat", "id": "e1", "model": "chat", "regenerate": r6.Start.MessageID}, "missing_required_parameter", "conversation_id"},
		{map[string]any{"type": "chat", "id": "e2", "model": "chat", "regenerate": r6.Start.MessageID, "conversation_id": conv, "content": "x"}, "invalid_value", "regenerate"},
		{map[string]any{"type": "chat", "id": "e3", "model": "chat", "regenerate": "", "conversation_id": conv}, "invalid_value", "regenerate"},
		{map[string]any{"type": "chat", "id": "e4", "model": "chat", "regenerate": r6.Start.MessageID, "conversation_id": "00000000-0000-4000-8000-000000000000"}, "not_found", "conversation_id"},
		{regen("e5", r4.Start.MessageID), "conflict", "regenerate"},      // no longer the last answer
		{regen("e6", r2.Start.MessageID), "invalid_value", "regenerate"}, // superseded
		{regen("e7", "not-an-id"), "invalid_value", "regenerate"},
		{map[string]any{"type": "chat", "id": "e8", "model": "chat", "regenerate": r6.Start.MessageID, "conversation_id": empty.ID}, "invalid_value", "regenerate"},
		{map[string]any{"type": "chat", "id": "e9", "model": "chat", "regenerate": true, "conversation_id": conv}, "invalid_type", "regenerate"},
	} {
		writeWS(t, c, tc.frame)
		f := readWS(t, c)
		if f.Type != "error" || f.Error == nil || f.Error.Code != tc.code || f.Error.Param != tc.param {
			t.Fatalf("%v: %s, want error %s on %s", tc.frame, f.raw, tc.code, tc.param)
		}
	}
}
