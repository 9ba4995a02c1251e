package ws_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/ws"
)

// keyGate admits the key "good" only.
type keyGate struct{}

func (keyGate) Check(ctx context.Context, key, scope string) (auth.Principal, error) {
	return keyGate{}.Verify(ctx, key, scope)
}

func (keyGate) Verify(_ context.Context, key, _ string) (auth.Principal, error) {
	switch key {
	case "":
		return auth.Principal{}, auth.ErrNoKey
	case "good":
		return auth.Principal{KeyID: "k", UserID: "u"}, nil
	}
	return auth.Principal{}, auth.ErrInvalidKey
}

// expectPolicyClose reads until the socket closes and requires status 1008.
func (c *client) expectPolicyClose() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
			c.t.Fatalf("socket ended with %v, want close 1008", err)
		}
		return
	}
}

func TestUnauthenticatedSocketIsClosed(t *testing.T) {
	srv := start(t, apitest.New(apitest.ReadyModel("chat")), ws.Options{Gate: keyGate{}, AuthTimeout: 300 * time.Millisecond})

	t.Run("a frame that is not JSON first", func(t *testing.T) {
		c := srv.dial(t)
		c.send("not json")
		c.expectError("", "invalid_request_error", "invalid_json", "")
		c.expectPolicyClose()
	})
	t.Run("no auth frame in time", func(t *testing.T) {
		c := srv.dial(t)
		c.expectError("", "authentication_error", "missing_api_key", "")
		c.expectPolicyClose()
	})
	t.Run("an auth frame in time", func(t *testing.T) {
		c := srv.dial(t)
		c.send(`{"type":"auth","api_key":"good"}`)
		c.send(chatFrame("c1", "hello there"))
		c.expect("start", "c1")
		time.Sleep(400 * time.Millisecond) // past the auth timeout: the socket stays open
		c.send(`{"type":"ping"}`)
		for f := c.read(); f.Type != "pong"; f = c.read() {
		}
	})
}

func TestChatWithRAGSendsSources(t *testing.T) {
	svc, _ := apitest.KnowledgeBase(t)
	srv := start(t, apitest.New(apitest.ReadyModel("chat")), ws.Options{Chat: &chat.Service{RAG: svc}})
	c := srv.dial(t)
	c.send(`{"type":"chat","id":"c1","model":"chat","content":"is postgres down?","rag":{"knowledge_base":"docs"}}`)
	c.expect("start", "c1")
	f := c.read()
	if f.Type != "sources" || f.id() != "c1" || !strings.Contains(f.raw, apitest.ChunkID) || !strings.Contains(f.raw, `"n":1`) {
		t.Fatalf("after start: %s, want the sources", f)
	}
	for f = c.read(); f.Type == "token"; f = c.read() {
	}
	if f.Type != "done" {
		t.Fatalf("got %s, want done", f)
	}

	c.send(`{"type":"chat","id":"c2","model":"chat","content":"x","rag":{"knowledge_base":"other"}}`)
	c.expect("start", "c2")
	c.expectError("c2", "invalid_request_error", "not_found", "rag.knowledge_base")
}
