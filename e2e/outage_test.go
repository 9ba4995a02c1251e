package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/internal/pgcluster"
	"github.com/ragway/ragway/internal/pgtest"
)

// readyzDatabase returns /readyz's status and its database object.
func readyzDatabase(t *testing.T, g *gateway) (int, *struct {
	Ready bool   `json:"ready"`
	Error string `json:"error"`
}) {
	t.Helper()
	code, body := g.call("GET", "/readyz", "", "")
	var r struct {
		Status   string `json:"status"`
		Database *struct {
			Ready bool   `json:"ready"`
			Error string `json:"error"`
		} `json:"database"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.Database == nil {
		t.Fatalf("/readyz %d %s: no database object (%v)", code, body, err)
	}
	return code, r.Database
}

func TestOutageDatabase(t *testing.T) {
	c := pgtest.NewCluster(t)
	g := launchGatewayOn(t, c.Database(), echoModels)
	g.waitReady(20 * time.Second)
	unused := g.createKey("e2e-unused", "chat") // never validated by the gateway

	// Before the outage: a conversation with a turn over WS and one over HTTP.
	sock := dialWSKey(t, g, g.Key, "")
	r := runWSChat(t, sock, storedChat("t0", "chat", "", "before the outage"))
	if r.End.Type != "done" {
		t.Fatalf("turn before the outage: %s", r.End.raw)
	}
	conv := r.Start.ConversationID
	postChat(t, g, g.Key, chatInConversation("chat", conv, "also before the outage", false))
	before := g.conversation(g.Key, conv)
	if len(before.Messages) != 4 {
		t.Fatalf("%d messages before the outage, want 4", len(before.Messages))
	}
	rowsBefore := g.waitUsage(2, 10*time.Second)

	c.Stop()

	// A stored turn needs the database: an error frame, promptly.
	t0 := time.Now()
	r = runWSChat(t, sock, storedChat("t1", "chat", conv, "during the outage"))
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("the stored chat took %v to fail", d)
	}
	if r.End.Type != "error" || r.End.Error == nil || r.End.Error.Code != "database_unavailable" || r.Start.Type != "" || r.Tokens != 0 {
		t.Fatalf("stored chat during the outage: start %s, %d tokens, end %s; want an error frame database_unavailable", r.Start.raw, r.Tokens, r.End.raw)
	}
	apiErrorBody(t, r.End.raw)

	// Conversation routes: 503 database_unavailable with Retry-After.
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/v1/conversations", ""},
		{"GET", "/v1/conversations/" + conv, ""},
		{"POST", "/v1/chat/completions", chatInConversation("chat", conv, "during the outage", false)},
		{"POST", "/v1/chat/completions", chatInConversation("chat", "new", "during the outage", true)},
	} {
		t0 := time.Now()
		resp, err := g.send(req.method, req.path, g.Key, req.body)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(resp)
		wantAPIError(t, req.method+" "+req.path+" during the outage", resp.StatusCode, body, 503, "database_unavailable")
		retryAfter(t, resp.Header)
		if d := time.Since(t0); d > 5*time.Second {
			t.Fatalf("%s %s took %v to fail", req.method, req.path, d)
		}
	}
	// A key the gateway never validated cannot be checked: 503, not 401.
	code, body := g.call("POST", "/v1/chat/completions", unused, chatBody("chat", "who am I", false))
	wantAPIError(t, "an unvalidated key during the outage", code, body, 503, "database_unavailable")

	// /readyz says the database is not ready.
	if code, db := readyzDatabase(t, g); code != 503 || db.Ready || db.Error == "" {
		t.Fatalf("/readyz during the outage: %d %+v", code, db)
	}

	// Stateless chats go on, with the key validated before the outage.
	row := func(key, user, route string, u wsUsage) usageRow {
		return usageRow{User: user, Key: keyPrefix(key), Model: "chat", Route: route, PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens}
	}
	want := rowsBefore
	res, _ := postChat(t, g, g.Key, chatBody("chat", "stateless during the outage", false))
	if res.Choices[0].Message.Content != "stateless during the outage" || res.ConversationID != "" {
		t.Fatalf("stateless HTTP chat during the outage: %+v", res)
	}
	want = append(want, row(g.Key, "e2e", "/v1/chat/completions", res.Usage))
	r = runWSChat(t, sock, statelessChat("s1", "stateless on the socket"))
	if r.End.Type != "done" || r.Text != "stateless on the socket" {
		t.Fatalf("stateless WS chat during the outage: %q %s", r.Text, r.End.raw)
	}
	want = append(want, row(g.Key, "e2e", "/v1/ws", *r.End.Usage))
	// A new socket too (its key is checked before the upgrade).
	sock2 := dialWSKey(t, g, g.Key, "")
	r = runWSChat(t, sock2, statelessChat("s2", "a new socket during the outage"))
	if r.End.Type != "done" || r.Text != "a new socket during the outage" {
		t.Fatalf("WS chat on a new socket during the outage: %q %s", r.Text, r.End.raw)
	}
	want = append(want, row(g.Key, "e2e", "/v1/ws", *r.End.Usage))
	// The gateway is alive.
	if code, _ := g.call("GET", "/healthz", "", ""); code != 200 {
		t.Fatalf("/healthz during the outage: %d", code)
	}
	select {
	case err := <-g.exit:
		t.Fatalf("the gateway exited during the outage: %v", err)
	default:
	}

	c.Start()

	// Without a restart, the gateway serves conversations again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := g.call("GET", "/v1/conversations", g.Key, "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /v1/conversations after the outage: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ids := g.conversationIDs(g.Key); !slices.Equal(ids, []string{conv}) {
		t.Fatalf("conversations after the outage: %v, want only %s (the failed turns created none)", ids, conv)
	}
	after := g.conversation(g.Key, conv)
	if !reflect.DeepEqual(after.Messages, before.Messages) {
		t.Fatalf("messages after the outage:\n%+v\nbefore:\n%+v", after.Messages, before.Messages)
	}
	// The socket that lived through the outage stores turns again.
	r = runWSChat(t, sock, storedChat("t2", "chat", conv, "after the outage"))
	if r.End.Type != "done" || r.Text != "after the outage" || r.Start.ConversationID != conv {
		t.Fatalf("turn after the outage: %s %q %s", r.Start.raw, r.Text, r.End.raw)
	}
	want = append(want, row(g.Key, "e2e", "/v1/ws", *r.End.Usage))
	msgs := g.conversation(g.Key, conv).Messages
	if len(msgs) != 6 || msgs[4].Content != "after the outage" || msgs[5].Status != "complete" || msgs[5].Content != "after the outage" {
		t.Fatalf("messages after a turn after the outage: %+v", msgs)
	}
	if code, db := readyzDatabase(t, g); code != 200 || !db.Ready {
		t.Fatalf("/readyz after the outage: %d %+v", code, db)
	}
	// The unvalidated key works now.
	res, _ = postChat(t, g, unused, chatBody("chat", "me", false))
	want = append(want, row(unused, "e2e-unused", "/v1/chat/completions", res.Usage))

	// The usage of the requests served during the outage was kept and is written
	// now: after the rows from before, the two WS chats and the HTTP chat served
	// during the outage, then the turn and the chat after it. Refused requests have
	// none.
	rows := g.waitUsage(len(want), 15*time.Second)
	if !slices.Equal(rows, want) {
		t.Fatalf("usage rows:\n%+v\nwant:\n%+v", rows, want)
	}
	noKeysInLogs(t, g, unused)
}

func readAll(resp *http.Response) []byte {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

// A gateway started while Postgres is unreachable serves (503 for what needs the
// database), and once Postgres answers checks the schema of the database that came
// back: an unmigrated one keeps /readyz at 503 naming the schema (and the log names
// the missing migrations) until `ragway migrate up`; then chats are stored, with no
// restart.
func TestStartWithoutDatabase(t *testing.T) {
	c := pgtest.NewCluster(t)
	admin, err := c.URL("postgres")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgcluster.CreateDatabase(ctx, admin, "fresh", "template0"); err != nil {
		t.Fatal(err)
	}
	dbURL, err := c.URL("fresh")
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	g := serveOn(t, dbURL, "", echoModels, false)
	waitReadyzDatabase := func(what string, ok func(code int, ready bool, msg string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, db := readyzDatabase(t, g)
			if ok(code, db.Ready, db.Error) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz %s: %d %+v", what, code, db)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitReadyzDatabase("with Postgres down", func(code int, ready bool, msg string) bool {
		return code == 503 && !ready && strings.Contains(msg, "does not answer")
	})
	if !g.logged("the database is unreachable") {
		t.Errorf("the gateway did not log that it started without its database:\n%s", g.Logs())
	}

	c.Start()
	waitReadyzDatabase("with an unmigrated database", func(code int, ready bool, msg string) bool {
		return code == 503 && !ready && strings.Contains(msg, "schema")
	})
	if !g.logged("lacks migrations") {
		t.Errorf("the gateway's log does not name the missing migrations:\n%s", g.Logs())
	}

	if _, err := g.cli("migrate", "up"); err != nil {
		t.Fatal(err)
	}
	waitReadyzDatabase("after migrate up", func(code int, ready bool, _ string) bool { return code == 200 && ready })
	g.Key = g.createKey("e2e", "chat")
	res, _ := postChat(t, g, g.Key, chatInConversation("chat", "new", "stored at last", false))
	if res.ConversationID == "" {
		t.Fatalf("a chat in a new conversation: %+v", res)
	}
	if msgs := g.conversation(g.Key, res.ConversationID).Messages; len(msgs) != 2 || msgs[0].Content != "stored at last" {
		t.Fatalf("stored messages: %+v", msgs)
	}
	select {
	case err := <-g.exit:
		t.Fatalf("the gateway exited: %v", err)
	default:
	}
}
