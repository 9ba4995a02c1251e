package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

type frame struct {
	Type         string `json:"type"`
	ID           string `json:"id"`
	Text         string `json:"text"`
	FinishReason string `json:"finish_reason"`
	Usage        *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

func dialWS(t *testing.T, g *gateway) *websocket.Conn {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(strings.Replace(g.URL, "http://", "ws://", 1)+"/v1/ws", http.Header{"Authorization": {"Bearer " + g.Key}})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	return conn
}

func readFrame(t *testing.T, c *websocket.Conn) frame {
	t.Helper()
	var f frame
	if err := c.ReadJSON(&f); err != nil {
		t.Fatalf("read frame: %v", err)
	}
	return f
}

func TestWebSocketChat(t *testing.T) {
	g := startGateway(t, `
  - {name: chat, backend: echo, max_concurrency: 8, options: {delay_ms: 20}}
`)
	c := dialWS(t, g)

	// Two concurrent chats on one socket, tokens interleaved.
	for _, m := range []map[string]any{
		{"type": "chat", "id": "a", "model": "chat", "messages": []map[string]string{{"role": "user", "content": "alpha beta gamma delta"}}},
		{"type": "chat", "id": "b", "model": "chat", "content": "one two three four"},
	} {
		if err := c.WriteJSON(m); err != nil {
			t.Fatal(err)
		}
	}
	text := map[string]string{}
	done := map[string]frame{}
	var order []string
	for len(done) < 2 {
		f := readFrame(t, c)
		switch f.Type {
		case "start":
		case "token":
			text[f.ID] += f.Text
			if len(order) == 0 || order[len(order)-1] != f.ID {
				order = append(order, f.ID)
			}
		case "done":
			done[f.ID] = f
		default:
			t.Fatalf("unexpected frame %+v", f)
		}
	}
	if text["a"] != "alpha beta gamma delta" || text["b"] != "one two three four" {
		t.Fatalf("texts = %q", text)
	}
	if done["a"].FinishReason != "stop" || done["a"].Usage == nil || done["a"].Usage.CompletionTokens != 4 {
		t.Fatalf("done a = %+v", done["a"])
	}
	if len(order) < 3 {
		t.Fatalf("token order %v: the two chats did not run concurrently", order)
	}

	// Ping.
	if err := c.WriteJSON(map[string]string{"type": "ping"}); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, c); f.Type != "pong" {
		t.Fatalf("ping answered with %+v", f)
	}

	// Cancel mid-answer: done with finish_reason cancelled, quickly, nothing after.
	long := strings.Repeat("word ", 200)
	if err := c.WriteJSON(map[string]any{"type": "chat", "id": "c", "model": "chat", "content": long}); err != nil {
		t.Fatal(err)
	}
	for f := readFrame(t, c); f.Type != "token"; f = readFrame(t, c) {
	}
	sent := time.Now()
	if err := c.WriteJSON(map[string]string{"type": "cancel", "id": "c"}); err != nil {
		t.Fatal(err)
	}
	for {
		f := readFrame(t, c)
		if f.Type == "token" {
			continue // already in flight when the cancel arrived
		}
		if f.Type != "done" || f.FinishReason != "cancelled" {
			t.Fatalf("after cancel: %+v", f)
		}
		// The prompt the plugin evaluated, as it reported with its first text.
		if f.Usage == nil || f.Usage.PromptTokens < 200 {
			t.Fatalf("cancelled chat's usage %+v: want the real prompt count (over 200 tokens)", f.Usage)
		}
		break
	}
	if d := time.Since(sent); d > 500*time.Millisecond {
		t.Fatalf("cancel took %v", d)
	}

	// A malformed frame gets an error frame and the socket stays usable.
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":`)); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, c); f.Type != "error" || f.Error == nil || f.Error.Message == "" {
		t.Fatalf("malformed frame answered with %+v", f)
	}
	if err := c.WriteJSON(map[string]any{"type": "chat", "id": "d", "model": "nope", "content": "x"}); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, c); f.Type != "error" || f.ID != "d" {
		t.Fatalf("unknown model answered with %+v", f)
	}
	if err := c.WriteJSON(map[string]any{"type": "chat", "id": "e", "model": "chat", "content": "fine"}); err != nil {
		t.Fatal(err)
	}
	var got string
	for f := readFrame(t, c); f.Type != "done"; f = readFrame(t, c) {
		got += f.Text
	}
	if got != "fine" {
		t.Fatalf("chat after errors = %q", got)
	}
	// Nothing arrived for the cancelled chat after its done frame (checked
	// above by reading only d/e frames in order); the plugin slot is free:
	// the replica is ready again.
	g.waitFor("replica idle after cancel", 5*time.Second, func(_ int, r readiness) bool {
		return r.Models[0].Replicas[0].State == "ready"
	})
}

func TestMetrics(t *testing.T) {
	g := startGateway(t, echoModels)
	if code, _ := g.post("/v1/chat/completions", chatBody("chat", "count me", false)); code != 200 {
		t.Fatal(code)
	}
	resp, err := http.Get(g.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	body := string(b)
	for _, want := range []string{
		`ragway_requests_total{`, `ragway_time_to_first_token_seconds_bucket{`, `ragway_request_duration_seconds_bucket{`,
		`ragway_tokens_total{kind="completion",model="chat"} 2`, `ragway_replicas{model="chat",state="ready"} 1`,
		`ragway_replica_start_seconds_count{model="chat"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	var health map[string]any
	hr, err := http.Get(g.URL + "/healthz")
	if err != nil || hr.StatusCode != 200 || json.NewDecoder(hr.Body).Decode(&health) != nil {
		t.Fatalf("/healthz: %v %v", err, hr)
	}
	hr.Body.Close()
}
