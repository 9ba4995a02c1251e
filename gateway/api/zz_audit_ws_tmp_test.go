package api_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/netguard"
)

type zzGate struct{}

func (zzGate) Check(_ context.Context, k, _ string) (auth.Principal, error) {
	if k == "" {
		return auth.Principal{}, auth.ErrNoKey
	}
	if k != "good" {
		return auth.Principal{}, auth.ErrInvalidKey
	}
	return auth.Principal{UserID: "u", Scopes: []string{"chat"}}, nil
}
func (g zzGate) Verify(ctx context.Context, k, s string) (auth.Principal, error) { return g.Check(ctx, k, s) }

func zzStart(t *testing.T, opts api.Options) (string, net.Listener) {
	opts.Logger = quietLogger()
	opts.Metrics = metrics.New()
	opts.Gate = zzGate{}
	app := api.New(newFake(), opts)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gl := netguard.Listen(ln, netguard.Options{})
	go app.Listener(gl)
	t.Cleanup(func() { _ = app.ShutdownWithTimeout(2 * time.Second) })
	return ln.Addr().String(), gl
}

func TestZZWSIgnoresClose(t *testing.T) {
	addr, gl := zzStart(t, api.Options{WSPingInterval: time.Second})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				t.Logf("client read ended: %v", err)
				return
			}
			t.Logf("client got %q", buf[:n])
		}
	}()
	ping := []byte{0x89, 0x80, 1, 2, 3, 4} // masked empty ping
	for i := 0; i < 30; i++ {
		if _, err := c.Write(ping); err != nil {
			t.Logf("after %v: ping write failed: %v", time.Duration(i)*500*time.Millisecond, err)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("socket still open after 15s (auth timeout 10s); unauthenticated count %d", netguard.Unauthenticated(gl))
}

func TestZZCounting(t *testing.T) {
	addr, gl := zzStart(t, api.Options{})
	// authenticated ws
	c1, r1, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws?api_key=good", nil)
	if err != nil {
		t.Fatal(err)
	}
	r1.Body.Close()
	t.Logf("after authed ws: %d", netguard.Unauthenticated(gl))
	// ws via auth frame
	c2, r2, err := websocket.DefaultDialer.Dial("ws://"+addr+"/v1/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	t.Logf("after unauthed ws: %d", netguard.Unauthenticated(gl))
	_ = c2.WriteMessage(websocket.TextMessage, []byte(`{"type":"auth","api_key":"good"}`))
	_, m, _ := c2.ReadMessage()
	t.Logf("auth frame answer %s; count %d", m, netguard.Unauthenticated(gl))
	c1.Close()
	c2.Close()
	// bad request line
	for _, raw := range []string{"GARBAGE\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-A: b\r\n", 5000) + "\r\n"} {
		c, _ := net.Dial("tcp", addr)
		c.Write([]byte(raw))
		buf := make([]byte, 100)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		t.Logf("raw answer %q %v", buf[:n], err)
		c.Close()
	}
	// 413 from an authenticated request
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/chat/completions", strings.NewReader(strings.Repeat(" ", 5<<20)))
	req.Header.Set("Authorization", "Bearer good")
	resp, err := http.DefaultClient.Do(req)
	if err == nil {
		t.Logf("413? %d", resp.StatusCode)
		resp.Body.Close()
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(3 * time.Second)
	t.Logf("final count %d (want 0)", netguard.Unauthenticated(gl))
}
