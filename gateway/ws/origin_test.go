package ws_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/ws"
)

// verifyCounter admits any key and counts the checks.
type verifyCounter struct{ n atomic.Int32 }

func (v *verifyCounter) Check(ctx context.Context, key, scope string) (auth.Principal, error) {
	return v.Verify(ctx, key, scope)
}

func (v *verifyCounter) Verify(context.Context, string, string) (auth.Principal, error) {
	v.n.Add(1)
	return auth.Principal{KeyID: "k", UserID: "u"}, nil
}

// startWithErrors serves ws.New like start, with an error handler that writes the
// handler's *oai.Error as the gateway's does, and returns the listener's address.
func startWithErrors(t *testing.T, opts ws.Options) string {
	t.Helper()
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Metrics = metrics.New()
	app := fiber.New(fiber.Config{DisableStartupMessage: true, ErrorHandler: func(c *fiber.Ctx, err error) error {
		var e *oai.Error
		if !errors.As(err, &e) {
			e = &oai.Error{Status: http.StatusInternalServerError, Type: oai.TypeServer, Message: "not an *oai.Error: " + err.Error()}
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(e.Status).Send(e.Body())
	}})
	fake := newFake()
	opts.Chat = withCore(fake, opts)
	app.Get("/v1/ws", ws.New(fake, opts))
	return listen(t, app)
}

// upgrade sends a WebSocket upgrade request with the given Host and extra header lines
// on a raw connection (so that Host and Origin are exactly as given) and returns the
// response.
func upgrade(t *testing.T, addr, host string, lines ...string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := "GET /v1/ws HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer k\r\n"
	for _, l := range lines {
		req += l + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestUpgradeChecksOrigin: an upgrade with an Origin that is neither the gateway's own
// (the request's Host) nor one of Options.AllowedOrigins is refused with 403
// origin_not_allowed before the upgrade and before its key is checked; the gateway's own
// origin, a listed one and no Origin (a client that is not a browser) are upgraded.
func TestUpgradeChecksOrigin(t *testing.T) {
	gate := &verifyCounter{}
	addr := startWithErrors(t, ws.Options{Gate: gate, AllowedOrigins: []string{"https://chat.example.com", "http://localhost:5173"}})

	accepted := []struct {
		name, host string
		lines      []string
	}{
		{"no Origin", "gw.example", nil},
		{"the gateway's own origin", "gw.example:8080", []string{"Origin: http://gw.example:8080"}},
		{"the gateway's own origin over https", "gw.example", []string{"Origin: https://gw.example"}},
		{"the gateway's own origin, Host with the default port", "gw.example:443", []string{"Origin: https://gw.example"}},
		{"the gateway's own origin, Host in upper case", "GW.example:8080", []string{"Origin: http://gw.example:8080"}},
		{"the gateway's own IPv6 origin", "[::1]:8080", []string{"Origin: http://[::1]:8080"}},
		{"a listed origin", "gw.example", []string{"Origin: https://chat.example.com"}},
		{"another listed origin", "127.0.0.1:8080", []string{"Origin: http://localhost:5173"}},
	}
	for _, tc := range accepted {
		t.Run("accepted "+tc.name, func(t *testing.T) {
			resp := upgrade(t, addr, tc.host, tc.lines...)
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusSwitchingProtocols {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d, want 101: %s", resp.StatusCode, b)
			}
		})
	}

	refused := []struct {
		name, host string
		lines      []string
	}{
		{"another site", "gw.example", []string{"Origin: https://evil.example"}},
		{"another port of the gateway's host", "gw.example:8080", []string{"Origin: http://gw.example:8081"}},
		{"the default port of another scheme", "gw.example:443", []string{"Origin: http://gw.example"}},
		{"the gateway's host as a prefix", "gw.example", []string{"Origin: https://gw.example.evil.example"}},
		{"the gateway's host with a user", "gw.example", []string{"Origin: https://gw.example@evil.example"}},
		{"a listed origin with a path", "gw.example", []string{"Origin: https://chat.example.com/"}},
		{"a listed origin in upper case", "gw.example", []string{"Origin: https://CHAT.example.com"}},
		{"null", "gw.example", []string{"Origin: null"}},
		{"empty", "gw.example", []string{"Origin: "}},
		{"not a URL", "gw.example", []string{"Origin: gw.example"}},
		{"two origins, both allowed", "gw.example", []string{"Origin: https://gw.example", "Origin: https://chat.example.com"}},
		{"no Host", "", []string{"Origin: http://"}},
	}
	for _, tc := range refused {
		t.Run("refused "+tc.name, func(t *testing.T) {
			before := gate.n.Load()
			resp := upgrade(t, addr, tc.host, tc.lines...)
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403: %s", resp.StatusCode, b)
			}
			var body struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Code    *string `json:"code"`
					Param   *string `json:"param"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &body); err != nil || body.Error.Type != "permission_error" ||
				deref(body.Error.Code) != "origin_not_allowed" || body.Error.Param != nil ||
				!strings.Contains(body.Error.Message, "server.cors_origins") {
				t.Errorf("body %s, want a permission_error origin_not_allowed naming server.cors_origins", b)
			}
			if n := gate.n.Load() - before; n != 0 {
				t.Errorf("the key was checked %d times", n)
			}
		})
	}

	// Without AllowedOrigins only the gateway's own pages (and non-browsers) may connect.
	own := startWithErrors(t, ws.Options{Gate: gate})
	for origin, want := range map[string]int{"": 101, "http://gw.example": 101, "https://chat.example.com": 403} {
		t.Run(fmt.Sprintf("no list, Origin %q", origin), func(t *testing.T) {
			var lines []string
			if origin != "" {
				lines = append(lines, "Origin: "+origin)
			}
			resp := upgrade(t, own, "gw.example", lines...)
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("status %d, want %d", resp.StatusCode, want)
			}
		})
	}
}
