package ws_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/ws"
)

// server is a Fiber app serving only ws.New on a real TCP listener.
type server struct {
	url  string
	fake *apitest.Fake
	met  *metrics.Metrics
}

func start(t testing.TB, fake *apitest.Fake, opts ws.Options) *server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	if opts.Gate == nil {
		opts.Gate = apitest.Gate{}
	}
	opts.Chat = withCore(fake, opts)
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/v1/ws", ws.New(fake, opts))
	return &server{url: "ws://" + listen(t, app) + "/v1/ws", fake: fake, met: opts.Metrics}
}

// withCore returns opts.Chat over fake (a stateless core when nil), with the test's
// logger and metrics.
func withCore(fake *apitest.Fake, opts ws.Options) *chat.Service {
	c := opts.Chat
	if c == nil {
		c = &chat.Service{}
	}
	c.Backends = fake
	if c.Logger == nil {
		c.Logger = opts.Logger
	}
	if c.Metrics == nil {
		c.Metrics = opts.Metrics
	}
	return c
}

// listen serves app on 127.0.0.1 until the test ends and returns its address.
func listen(t testing.TB, app *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- app.Listener(ln) }()
	t.Cleanup(func() {
		_ = app.ShutdownWithTimeout(5 * time.Second)
		<-served
	})
	return ln.Addr().String()
}

func newFake() *apitest.Fake {
	return apitest.New(apitest.ReadyModel("chat", "default"), apitest.EmbeddingModel("embed"))
}

// client is a test WebSocket client.
type client struct {
	t    *testing.T
	conn *websocket.Conn
}

func (s *server) dial(t *testing.T) *client {
	t.Helper()
	conn, resp, err := websocket.DefaultDialer.Dial(s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn}
}

func (c *client) send(frame string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		c.t.Fatal(err)
	}
}

// frame is a server frame.
type frame struct {
	Type         string  `json:"type"`
	ID           *string `json:"id"`
	Model        string  `json:"model"`
	Text         string  `json:"text"`
	FinishReason string  `json:"finish_reason"`
	Usage        *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
	raw string
}

func (f frame) id() string {
	if f.ID == nil {
		return ""
	}
	return *f.ID
}

func (f frame) String() string { return f.raw }

// read returns the next frame (failing after 5s).
func (c *client) read() frame {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if mt != websocket.TextMessage {
		c.t.Fatalf("message type %d", mt)
	}
	var f frame
	if err := json.Unmarshal(data, &f); err != nil {
		c.t.Fatalf("frame %s: %v", data, err)
	}
	f.raw = string(data)
	return f
}

// expect reads a frame and checks its type and id.
func (c *client) expect(typ, id string) frame {
	c.t.Helper()
	f := c.read()
	if f.Type != typ || f.id() != id {
		c.t.Fatalf("got %s, want a %s frame for %q", f, typ, id)
	}
	return f
}

// expectError reads an error frame and checks it.
func (c *client) expectError(id, typ, code, param string) frame {
	c.t.Helper()
	f := c.expect("error", id)
	e := f.Error
	if e == nil || e.Message == "" || e.Type != typ || deref(e.Code) != code || deref(e.Param) != param {
		c.t.Fatalf("error frame %s, want type %q code %q param %q", f, typ, code, param)
	}
	if id == "" && strings.Contains(f.raw, `"id"`) {
		c.t.Errorf("error frame %s carries an id", f)
	}
	return f
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func chatFrame(id, content string) string {
	b, _ := json.Marshal(map[string]any{"type": "chat", "id": id, "model": "chat", "content": content})
	return string(b)
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
