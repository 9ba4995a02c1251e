package api_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// TestRefusedTurnStoresNothing: a stored turn that no replica took (the model is
// restarting, its queue is full) stores nothing: clients retrying through a plugin's
// restarts create no empty conversations, and retries into a conversation do not
// repeat its user message.
func TestRefusedTurnStoresNothing(t *testing.T) {
	fake := newFake()
	s, st := storedServer(t, fake)
	var first struct {
		ConversationID string `json:"conversation_id"`
	}
	decodeJSON(t, s.post(t, "/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"hello there"}]}`, bearer...), 200, &first)

	fake.SetRefuse(func(model string) error {
		return fmt.Errorf("model %q: %w: the replica is restarting", model, workers.ErrUnavailable)
	})
	for i := range 3 {
		for _, body := range []string{
			`{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"anyone?"}]}`,
			`{"model":"chat","conversation_id":"new","stream":true,"messages":[{"role":"user","content":"anyone?"}]}`,
			`{"model":"chat","conversation_id":"` + first.ConversationID + `","messages":[{"role":"user","content":"again"}]}`,
			`{"model":"chat","conversation_id":"` + first.ConversationID + `","stream":true,"messages":[{"role":"user","content":"again"}]}`,
		} {
			resp := s.post(t, "/v1/chat/completions", body, bearer...)
			if resp.Header.Get("X-Ragway-Conversation-Id") != "" {
				t.Errorf("try %d: a refused turn names a conversation: %s", i, body)
			}
			checkError(t, resp, 503, "server_error", "model_unavailable", "")
		}
	}
	// What can be told without a replica is told first: a turn of system messages only.
	checkError(t, s.post(t, "/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"system","content":"be brief"}]}`, bearer...),
		400, "invalid_request_error", "invalid_value", "messages")
	if n := rows(t, st, `SELECT count(*) FROM conversations`); n != 1 {
		t.Errorf("%d conversations after refused turns, want 1", n)
	}
	if n := rows(t, st, `SELECT count(*) FROM messages`); n != 2 {
		t.Errorf("%d messages after refused turns, want the first turn's 2", n)
	}

	fake.SetRefuse(nil)
	resp := s.post(t, "/v1/chat/completions", `{"model":"chat","conversation_id":"`+first.ConversationID+`","messages":[{"role":"user","content":"again"}]}`, bearer...)
	if b := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("once the model is back: %d %s", resp.StatusCode, b)
	}
	if n := rows(t, st, `SELECT count(*) FROM messages WHERE role = 'user' AND content = 'again'`); n != 1 {
		t.Errorf("the retried question is stored %d times, want once", n)
	}
}

// queued holds every request in a queue until release is closed, as workers' queue
// does, and reports each request that enters it and each one cancelled there.
type queued struct {
	*apitest.Fake
	release  chan struct{}
	entered  chan struct{}
	canceled chan struct{}
}

func (q *queued) Generate(ctx context.Context, model string, req sdk.GenerateRequest, adm *workers.Admission, emit func(sdk.Event) error) error {
	q.entered <- struct{}{}
	select {
	case <-q.release:
	case <-ctx.Done():
		q.canceled <- struct{}{}
		return ctx.Err()
	}
	return q.Fake.Generate(ctx, model, req, adm, emit)
}

// TestClientGoneWhileQueuedStoresNothing: a client that leaves while its stored turn
// waits for a replica cancels it, streamed or not; nothing is stored when a replica
// frees up.
func TestClientGoneWhileQueuedStoresNothing(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprint("stream=", stream), func(t *testing.T) {
			fake := newFake()
			st, p := apitest.StoreWithUser(t)
			q := &queued{Fake: fake, release: make(chan struct{}), entered: make(chan struct{}, 1), canceled: make(chan struct{}, 1)}
			s := startWith(t, q, fake, withStore(st, api.Options{Gate: apitest.Gate{Principal: p}, HeartbeatInterval: 50 * time.Millisecond}))
			conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			body := fmt.Sprintf(`{"model":"chat","conversation_id":"new","stream":%v,"messages":[{"role":"user","content":"hello"}]}`, stream)
			fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
				apitest.Key, len(body), body)
			<-q.entered
			conn.Close() // the client gives up while the turn is queued
			select {
			case <-q.canceled:
			case <-time.After(10 * time.Second):
				t.Fatal("the queued turn was not cancelled when its client left")
			}
			close(q.release)
			if n := rows(t, st, `SELECT count(*) FROM conversations`) + rows(t, st, `SELECT count(*) FROM messages`); n != 0 {
				t.Errorf("client left while queued: %d rows stored, want 0", n)
			}
		})
	}
}
