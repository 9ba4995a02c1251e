package ws_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/workers"
	"github.com/ragway/ragway/gateway/ws"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// stepper is a backend whose generations emit what the test feeds them,
// one channel per chat content.
type stepper struct {
	steps map[string]chan string
}

func (s *stepper) generate(ctx context.Context, _ string, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
	ch := s.steps[req.Messages[len(req.Messages)-1].Content]
	n := 0
	for {
		select {
		case text, ok := <-ch:
			if !ok {
				return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 10, CompletionTokens: n}})
			}
			n++
			if err := emit(sdk.Event{Text: text, Tokens: 1}); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestTwoChatsInterleave(t *testing.T) {
	s := start(t, newFake(), ws.Options{})
	st := &stepper{steps: map[string]chan string{"A": make(chan string), "B": make(chan string)}}
	s.fake.SetGenerate(st.generate)
	c := s.dial(t)
	c.send(chatFrame("c1", "A"))
	if f := c.expect("start", "c1"); f.Model != "chat" {
		t.Errorf("start %s", f)
	}
	c.send(`{"type":"chat","id":"c2","model":"default","messages":[{"role":"system","content":"s"},{"role":"user","content":"B"}]}`)
	if f := c.expect("start", "c2"); f.Model != "default" {
		t.Errorf("start %s", f)
	}
	for _, step := range []struct{ chat, id, text string }{
		{"A", "c1", "a1"}, {"B", "c2", "b1"}, {"A", "c1", "a2 \"q\"\n"}, {"B", "c2", "b2"}, {"B", "c2", "b3"},
	} {
		st.steps[step.chat] <- step.text
		if f := c.expect("token", step.id); f.Text != step.text {
			t.Errorf("token %s, want %q", f, step.text)
		}
	}
	close(st.steps["B"])
	f := c.expect("done", "c2")
	if f.FinishReason != "stop" || f.Usage == nil || f.Usage.PromptTokens != 10 || f.Usage.CompletionTokens != 3 || f.Usage.TotalTokens != 13 {
		t.Errorf("done %s", f)
	}
	close(st.steps["A"])
	if f := c.expect("done", "c1"); f.Usage.CompletionTokens != 2 {
		t.Errorf("done %s", f)
	}
	if n := counter(t, s.met.Requests.WithLabelValues("/v1/ws", "chat", "200")); n != 2 {
		t.Errorf("requests metric %v, want 2", n)
	}
	if n := counter(t, s.met.Tokens.WithLabelValues("chat", "completion")); n != 5 {
		t.Errorf("completion tokens metric %v, want 5", n)
	}
	calls := s.fake.Calls()
	if len(calls) != 2 || calls[0].Model != "chat" || calls[1].Model != "chat" || len(calls[1].Req.Messages) != 2 {
		t.Errorf("calls %+v", calls)
	}
}

func TestCancelAnswersAtOnceAndNothingFollows(t *testing.T) {
	s := start(t, newFake(), ws.Options{})
	sawCancel := make(chan struct{})
	release := make(chan struct{})
	returned := make(chan error, 1)
	s.fake.SetGenerate(func(ctx context.Context, m string, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
		if req.Messages[0].Content != "slow" {
			return apitest.Echo(ctx, m, req, emit)
		}
		// The first text carries the prompt's usage (plugin API 1.3).
		if err := emit(sdk.Event{Text: "t1", Tokens: 1, Usage: &sdk.Usage{PromptTokens: 7}}); err != nil {
			return err
		}
		<-ctx.Done()
		close(sawCancel)
		<-release // a plugin slow to notice: the client must not wait for it
		err := emit(sdk.Event{Text: "late", Tokens: 1})
		if err == nil {
			err = emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{}})
		}
		returned <- err
		return err
	})
	c := s.dial(t)
	c.send(chatFrame("c1", "slow"))
	c.expect("start", "c1")
	c.expect("token", "c1")
	sent := time.Now()
	c.send(`{"type":"cancel","id":"c1"}`)
	f := c.expect("done", "c1")
	// The usage is the real one: the prompt the backend evaluated, the tokens it sent.
	if f.FinishReason != "cancelled" || f.Usage == nil || f.Usage.PromptTokens != 7 || f.Usage.CompletionTokens != 1 || f.Usage.TotalTokens != 8 {
		t.Errorf("done %s", f)
	}
	if d := time.Since(sent); d > 500*time.Millisecond {
		t.Errorf("cancel answered after %v", d)
	}
	select {
	case <-sawCancel:
	case <-time.After(5 * time.Second):
		t.Fatal("the generation's context was not cancelled")
	}
	close(release)
	<-returned

	// Nothing more for c1: the next frames are the answers to what follows.
	c.send(`{"type":"ping"}`)
	c.expect("pong", "")
	c.send(`{"type":"cancel","id":"c1"}`)
	c.expectError("c1", "invalid_request_error", "unknown_id", "id")
	// The id can be used again.
	c.send(chatFrame("c1", "quick reply"))
	c.expect("start", "c1")
	if f := c.expect("token", "c1"); f.Text != "quick " {
		t.Errorf("token %s", f)
	}
	if f := c.expect("token", "c1"); f.Text != "reply" {
		t.Errorf("token %s", f)
	}
	if f := c.expect("done", "c1"); f.FinishReason != "stop" {
		t.Errorf("done %s", f)
	}
}

func TestPingPong(t *testing.T) {
	s := start(t, newFake(), ws.Options{})
	c := s.dial(t)
	for range 3 {
		c.send(`{"type":"ping"}`)
		if f := c.expect("pong", ""); f.raw != `{"type":"pong"}` {
			t.Errorf("pong %s", f)
		}
	}
}

func TestMalformedFramesKeepTheSocketUsable(t *testing.T) {
	s := start(t, newFake(), ws.Options{})
	c := s.dial(t)
	cases := []struct {
		frame                string
		id, typ, code, param string
	}{
		{`{not json`, "", "invalid_request_error", "invalid_json", ""},
		{`[1,2]`, "", "invalid_request_error", "invalid_json", ""},
		{`{"id":"x"}`, "x", "invalid_request_error", "missing_required_parameter", "type"},
		{`{"type":"dance","id":"x"}`, "x", "invalid_request_error", "invalid_value", "type"},
		{`{"type":3}`, "", "invalid_request_error", "invalid_type", "type"},
		{`{"type":"chat","id":7,"model":"chat","content":"hi"}`, "", "invalid_request_error", "invalid_type", "id"},
		{`{"type":"chat","model":"chat","content":"hi"}`, "", "invalid_request_error", "missing_required_parameter", "id"},
		{`{"type":"chat","id":"a","content":"hi"}`, "a", "invalid_request_error", "missing_required_parameter", "model"},
		{`{"type":"chat","id":"a","model":"nope","content":"hi"}`, "a", "invalid_request_error", "model_not_found", "model"},
		{`{"type":"chat","id":"a","model":"embed","content":"hi"}`, "a", "invalid_request_error", "invalid_value", "model"},
		{`{"type":"chat","id":"a","model":"chat"}`, "a", "invalid_request_error", "missing_required_parameter", "messages"},
		{`{"type":"chat","id":"a","model":"chat","content":7}`, "a", "invalid_request_error", "invalid_type", "content"},
		{`{"type":"chat","id":"a","model":"chat","messages":[{"role":"bot","content":"x"}]}`, "a", "invalid_request_error", "invalid_value", "messages[0].role"},
		{`{"type":"chat","id":"a","model":"chat","content":"hi","params":{"temperature":5}}`, "a", "invalid_request_error", "invalid_value", "params.temperature"},
		{`{"type":"chat","id":"a","model":"chat","content":"hi","params":{"top_p":"high"}}`, "a", "invalid_request_error", "invalid_type", "params.top_p"},
		{`{"type":"chat","id":"a","model":"chat","content":"hi","params":{"stop":["1","2","3","4","5"]}}`, "a", "invalid_request_error", "invalid_value", "params.stop"},
		{`{"type":"chat","id":"a","model":"chat","content":"hi","params":[]}`, "a", "invalid_request_error", "invalid_type", "params"},
		{`{"type":"cancel"}`, "", "invalid_request_error", "missing_required_parameter", "id"},
		{`{"type":"cancel","id":"zzz"}`, "zzz", "invalid_request_error", "unknown_id", "id"},
	}
	for _, tc := range cases {
		c.send(tc.frame)
		f := c.read()
		e := f.Error
		if f.Type != "error" || f.id() != tc.id || e == nil || e.Message == "" || e.Type != tc.typ || deref(e.Code) != tc.code || deref(e.Param) != tc.param {
			t.Errorf("%s:\n got %s\nwant id %q type %q code %q param %q", tc.frame, f, tc.id, tc.typ, tc.code, tc.param)
		}
	}
	if err := c.conn.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	c.expectError("", "invalid_request_error", "unsupported", "")
	if n := len(s.fake.Calls()); n != 0 {
		t.Errorf("%d invalid chats reached the backend", n)
	}
	c.send(chatFrame("ok", "still works"))
	c.expect("start", "ok")
	c.expect("token", "ok")
	c.expect("token", "ok")
	c.expect("done", "ok")
}

func TestParamsAndContentShorthand(t *testing.T) {
	s := start(t, newFake(), ws.Options{})
	c := s.dial(t)
	c.send(`{"type":"chat","id":"p","model":"chat","content":"hello","params":{"temperature":0.3,"top_p":0.5,"max_tokens":9,"stop":"END","seed":42,"top_k":5,"min_p":0.1,"repetition_penalty":1.2,"presence_penalty":0.5,"frequency_penalty":-0.5}}`)
	c.expect("start", "p")
	for c.read().Type != "done" {
	}
	req := s.fake.Calls()[0].Req
	if !reflect.DeepEqual(req.Messages, []sdk.Message{{Role: "user", Content: "hello"}}) {
		t.Errorf("messages %+v", req.Messages)
	}
	sp := req.Sampling
	if *sp.Temperature != 0.3 || *sp.TopP != 0.5 || sp.MaxTokens != 9 || !reflect.DeepEqual(sp.Stop, []string{"END"}) || *sp.Seed != 42 ||
		sp.TopK != 5 || sp.MinP != 0.1 || sp.RepetitionPenalty != 1.2 || sp.PresencePenalty != 0.5 || sp.FrequencyPenalty != -0.5 {
		t.Errorf("sampling %+v", sp)
	}
	if req.RequestID == "" {
		t.Error("no RequestID")
	}
}

// blocker is a backend whose generations run until cancelled, reporting
// each cancellation.
type blocker struct {
	started   chan string
	cancelled chan string
}

func newBlocker() *blocker {
	return &blocker{started: make(chan string, 16), cancelled: make(chan string, 16)}
}

func (b *blocker) generate(ctx context.Context, _ string, req sdk.GenerateRequest, _ func(sdk.Event) error) error {
	content := req.Messages[0].Content
	b.started <- content
	<-ctx.Done()
	b.cancelled <- content
	return ctx.Err()
}

// waitStarted waits until the generations of want have started, in any order.
func (b *blocker) waitStarted(t *testing.T, want ...string) {
	t.Helper()
	for range want {
		select {
		case got := <-b.started:
			if !slices.Contains(want, got) {
				t.Fatalf("%q started, want %v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%v did not all start", want)
		}
	}
}

func (b *blocker) waitCancelled(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-b.cancelled:
		if got != want {
			t.Fatalf("%q was cancelled, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%q was not cancelled", want)
	}
}

func TestDuplicateIDsAndTheChatCap(t *testing.T) {
	s := start(t, newFake(), ws.Options{MaxChats: 2})
	b := newBlocker()
	s.fake.SetGenerate(b.generate)
	c := s.dial(t)
	c.send(chatFrame("a", "a"))
	c.expect("start", "a")
	c.send(chatFrame("a", "a again"))
	c.expectError("a", "invalid_request_error", "duplicate_id", "id")
	c.send(chatFrame("b", "b"))
	c.expect("start", "b")
	c.send(chatFrame("c", "c"))
	c.expectError("c", "rate_limit_error", "too_many_chats", "")
	// Both generations are running (a chat cancelled before a replica took it never
	// reaches the backend at all).
	b.waitStarted(t, "a", "b")
	c.send(`{"type":"cancel","id":"a"}`)
	c.expect("done", "a")
	b.waitCancelled(t, "a")
	c.send(chatFrame("c", "c"))
	c.expect("start", "c")
}

func TestBackendErrorsBecomeErrorFrames(t *testing.T) {
	s := start(t, newFake(), ws.Options{})
	c := s.dial(t)
	cases := []struct {
		name      string
		gen       apitest.GenerateFunc
		tokens    int
		typ, code string
	}{
		{"queue full", apitest.Fail(&workers.QueueFullError{Model: "chat", RetryAfter: time.Second}), 0, "rate_limit_error", "queue_full"},
		{"unknown model", apitest.Fail(fmt.Errorf("%w: %q", workers.ErrUnknownModel, "chat")), 0, "invalid_request_error", "model_not_found"},
		{"unavailable", apitest.Fail(workers.ErrUnavailable), 0, "server_error", "model_unavailable"},
		{"failure after tokens", apitest.Fail(sdk.ErrPluginShutdown, "x", "y"), 2, "server_error", "backend_error"},
		{"final error event", func(_ context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
			_ = emit(sdk.Event{Text: "x", Tokens: 1})
			return emit(sdk.Event{FinishReason: sdk.FinishError, Error: "decode failed", Usage: &sdk.Usage{}})
		}, 1, "server_error", "backend_error"},
		{"panic", func(context.Context, string, sdk.GenerateRequest, func(sdk.Event) error) error { panic("bug") }, 0, "server_error", "backend_error"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			s.fake.SetGenerate(tc.gen)
			id := fmt.Sprint("e", i)
			c.send(chatFrame(id, "x"))
			c.expect("start", id)
			for range tc.tokens {
				c.expect("token", id)
			}
			c.expectError(id, tc.typ, tc.code, map[bool]string{true: "model"}[tc.code == "model_not_found"])
		})
	}
	c.t = t
	s.fake.SetGenerate(apitest.Echo)
	c.send(chatFrame("after", "ok"))
	c.expect("start", "after")
	c.expect("token", "after")
	c.expect("done", "after")
}

func TestSlowReaderGetsBackpressure(t *testing.T) {
	s := start(t, newFake(), ws.Options{SendQueue: 4, PingInterval: time.Minute})
	big := strings.Repeat("y", 16<<10)
	const total = 2048 // 32 MiB if nothing pushed back
	blocked := make(chan int64, 1)
	var emitted atomic.Int64
	s.fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
		for range total {
			timer := time.AfterFunc(200*time.Millisecond, func() {
				select {
				case blocked <- emitted.Load():
				default:
				}
			})
			err := emit(sdk.Event{Text: big, Tokens: 1})
			timer.Stop()
			if err != nil {
				return err
			}
			emitted.Add(1)
		}
		return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{CompletionTokens: total}})
	})
	c := s.dial(t)
	c.send(chatFrame("big", "x"))
	var n int64
	select {
	case n = <-blocked:
	case <-time.After(20 * time.Second):
		t.Fatal("emit never blocked on a client that does not read")
	}
	t.Logf("emit blocked after %d frames of 16 KiB", n)
	if n >= total/2 {
		t.Fatalf("%d frames of 16 KiB were taken before emit blocked", n)
	}
	// Reading lets it finish, with every token delivered in order.
	c.expect("start", "big")
	for i := range total {
		if f := c.expect("token", "big"); len(f.Text) != len(big) {
			t.Fatalf("token %d has %d bytes", i, len(f.Text))
		}
	}
	if f := c.expect("done", "big"); f.Usage.CompletionTokens != total {
		t.Errorf("done %s", f)
	}
}

func TestClosingTheSocketCancelsItsChats(t *testing.T) {
	s := start(t, newFake(), ws.Options{})
	b := newBlocker()
	s.fake.SetGenerate(b.generate)
	c := s.dial(t)
	c.send(chatFrame("a", "a"))
	c.send(chatFrame("b", "b"))
	c.expect("start", "a")
	c.expect("start", "b")
	<-b.started
	<-b.started
	_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	c.conn.Close()
	got := map[string]bool{}
	for range 2 {
		select {
		case id := <-b.cancelled:
			got[id] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("cancelled only %v", got)
		}
	}
}

func TestDeadPeersAreDropped(t *testing.T) {
	s := start(t, newFake(), ws.Options{PingInterval: 20 * time.Millisecond})
	b := newBlocker()
	s.fake.SetGenerate(b.generate)
	c := s.dial(t)
	c.send(chatFrame("a", "a"))
	<-b.started
	// The client never reads again, so it never answers pings: after two
	// intervals the server drops it and cancels its chat.
	b.waitCancelled(t, "a")
}

func TestLivePeersAreKept(t *testing.T) {
	s := start(t, newFake(), ws.Options{PingInterval: 20 * time.Millisecond})
	c := s.dial(t)
	var pings atomic.Int32
	enough := make(chan struct{})
	var once sync.Once
	c.conn.SetPingHandler(func(data string) error {
		if pings.Add(1) == 8 {
			once.Do(func() { close(enough) })
		}
		return c.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	frames := make(chan frame, 16)
	go func() {
		for {
			_, data, err := c.conn.ReadMessage()
			if err != nil {
				close(frames)
				return
			}
			frames <- frame{raw: string(data)}
		}
	}()
	select {
	case <-enough: // eight pings: four read deadlines' worth of time
	case <-time.After(10 * time.Second):
		t.Fatal("no pings")
	}
	c.send(`{"type":"ping"}`)
	f, ok := <-frames
	if !ok || f.raw != `{"type":"pong"}` {
		t.Fatalf("socket dropped or wrong answer: %q %v", f.raw, ok)
	}
}

func TestOversizeFrameClosesTheSocket(t *testing.T) {
	s := start(t, newFake(), ws.Options{MaxFrameBytes: 1024})
	c := s.dial(t)
	c.send(chatFrame("a", strings.Repeat("x", 2048)))
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.conn.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Errorf("read after an oversize frame: %v, want close 1009", err)
	}
}
