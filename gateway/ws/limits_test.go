package ws_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/ragway/ragway/gateway/ws"
)

// TestNoCompressedFrames: the server never negotiates permessage-deflate, so a frame
// is as large in memory as on the wire and MaxFrameBytes bounds it (no decompression
// bomb through a socket).
func TestNoCompressedFrames(t *testing.T) {
	s := start(t, newFake(), ws.Options{MaxFrameBytes: 1024})
	d := websocket.Dialer{EnableCompression: true, WriteBufferSize: 256} // small buffers: several fragments
	conn, resp, err := d.Dial(s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp.Body.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
		t.Fatalf("the server negotiated %q", ext)
	}
	// A fragmented message is bounded as a whole.
	w, err := conn.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := w.Write([]byte(strings.Repeat(" ", 512))); err != nil {
			break
		}
	}
	_ = w.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("read after an oversize fragmented message: %v, want close 1009", err)
	}
}

// TestUnauthenticatedSocketEndsEvenIfItPings: a socket that never authenticates is cut
// at the auth timeout, whatever it sends meanwhile (pings no longer extend its life),
// and may not send a frame larger than an auth frame needs.
func TestUnauthenticatedSocketEndsEvenIfItPings(t *testing.T) {
	s := start(t, newFake(), ws.Options{Gate: keyGate{}, AuthTimeout: 300 * time.Millisecond})
	conn, resp, err := websocket.DefaultDialer.Dial(s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp.Body.Close()
	raw := conn.UnderlyingConn()
	deadline := time.Now().Add(5 * time.Second)
	for {
		// Pings, and no reading: the close frame the server sends is ignored.
		if err := conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second)); err != nil {
			break
		}
		_ = raw.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := raw.Read(make([]byte, 4096)); err != nil && !isTimeout(err) {
			break // the server closed the connection
		}
		if time.Now().After(deadline) {
			t.Fatal("an unauthenticated socket that pings was still open after 5s (auth timeout 300ms)")
		}
	}

	big, resp, err := websocket.DefaultDialer.Dial(s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	resp.Body.Close()
	if err := big.WriteMessage(websocket.TextMessage, []byte(`{"type":"auth","api_key":"`+strings.Repeat("x", 32<<10)+`"}`)); err != nil {
		return // the server cut the connection on the frame's header, before its end
	}
	_ = big.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := big.ReadMessage(); err != nil {
			if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
				t.Fatalf("a 32 KiB first frame: %v, want close 1009", err)
			}
			break
		}
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// TestChatFramesNameWhatTheProtocolLacks: a chat frame with a field the protocol does
// not define, a sampling parameter outside "params", an unknown parameter, or an
// OpenAI feature the gateway does not implement gets an error frame naming it, and
// nothing reaches the backend.
func TestChatFramesNameWhatTheProtocolLacks(t *testing.T) {
	s := start(t, newFake(), ws.Options{})
	c := s.dial(t)
	for _, tc := range []struct{ frame, code, param string }{
		{`{"type":"chat","id":"a","model":"chat","content":"x","temperature":0.2}`, "unknown_parameter", "temperature"},
		{`{"type":"chat","id":"b","model":"chat","content":"x","colour":"red"}`, "unknown_parameter", "colour"},
		{`{"type":"chat","id":"c","model":"chat","content":"x","params":{"temprature":0.2}}`, "unknown_parameter", "params.temprature"},
		{`{"type":"chat","id":"d","model":"chat","content":"x","params":{"tools":[{"type":"function","function":{"name":"f g"}}]}}`, "invalid_value", "params.tools[0].function.name"},
		{`{"type":"chat","id":"d2","model":"chat","content":"x","params":{"functions":[{"name":"f"}]}}`, "unsupported", "params.functions"},
		{`{"type":"chat","id":"e","model":"chat","content":"x","params":{"response_format":{"type":"json_schema","json_schema":{"name":"n","schema":{"not":{}}}}}}`, "unsupported", "params.response_format.json_schema.schema"},
		{`{"type":"chat","id":"e2","model":"chat","content":"x","params":{"response_format":{"type":"xml"}}}`, "invalid_value", "params.response_format.type"},
		{`{"type":"chat","id":"f","model":"chat","content":"x","messages":[{"role":"user","content":"y"}]}`, "invalid_value", "content"},
		{`{"type":"chat","id":"g","model":"chat","system":"s","messages":[{"role":"user","content":"y"}]}`, "invalid_value", "system"},
		{`{"type":"chat","id":"h","model":"chat","content":"x","conversation_id":"c"}`, "unsupported", "conversation_id"},
	} {
		c.send(tc.frame)
		c.expectError(strings.Split(strings.Split(tc.frame, `"id":"`)[1], `"`)[0], "invalid_request_error", tc.code, tc.param)
	}
	if n := len(s.fake.Calls()); n != 0 {
		t.Fatalf("%d refused chats reached the backend", n)
	}
	// Neutral values of the unimplemented fields change nothing and pass.
	c.send(`{"type":"chat","id":"ok","model":"chat","content":"x","params":{"tools":[],"tool_choice":"none","response_format":{"type":"text"}}}`)
	c.expect("start", "ok")
}

// An idle socket costs the gateway one goroutine, its reader's: the writer runs
// while frames are queued, pings go out from a timer, the shutdown is the handler's.
func TestIdleSocketsHoldOneGoroutineEach(t *testing.T) {
	srv := start(t, newFake(), ws.Options{PingInterval: time.Minute}) // (a ping timer waits without a goroutine)
	settle := func() int {
		time.Sleep(300 * time.Millisecond)
		runtime.GC()
		return runtime.NumGoroutine()
	}
	before := settle()
	const n = 40
	for range n {
		c := srv.dial(t)          // (authenticated at the upgrade)
		c.send(`{"type":"ping"}`) // (the writer starts, writes the pong, and ends)
		c.expect("pong", "")
	}
	if got := settle() - before; got > n+4 {
		t.Fatalf("%d idle sockets added %d goroutines, want at most %d", n, got, n+4)
	}
}
