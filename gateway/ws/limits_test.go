package ws_test

import (
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
