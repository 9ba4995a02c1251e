package ws_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/ws"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// TestMountClosesSocketsOnShutdown: Mount serves the protocol on an app and closes
// its sockets (1001, chats cancelled) when the app shuts down.
func TestMountClosesSocketsOnShutdown(t *testing.T) {
	fake := newFake()
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	ws.Mount(app, fake, ws.Options{Gate: apitest.Gate{}, Chat: &chat.Service{Backends: fake}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	conn, resp, err := websocket.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	defer conn.Close()
	cancelled := make(chan struct{})
	fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, _ func(sdk.Event) error) error {
		<-ctx.Done()
		close(cancelled)
		return ctx.Err()
	})
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"chat","id":"a","model":"chat","content":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, msg, err := conn.ReadMessage(); err != nil || !strings.Contains(string(msg), `"type":"start"`) {
		t.Fatalf("%s, %v", msg, err)
	}
	if err := app.ShutdownWithTimeout(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	<-served
	if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Errorf("after shutdown: %v, want close 1001", err)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the socket's chat was not cancelled on shutdown")
	}
}
