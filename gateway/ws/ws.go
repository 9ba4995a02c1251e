package ws

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/api/oai"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Backend is what the WebSocket protocol needs from the workers.
type Backend interface {
	// Generate runs req on model (a name or alias), calling emit with delta
	// events and then one final event; if emit returns an error Generate
	// stops and returns it.
	Generate(ctx context.Context, model string, req sdk.GenerateRequest, emit func(sdk.Event) error) error
	// Model returns the status of the model with that name or alias.
	Model(name string) (workers.ModelStatus, bool)
}

// Options configures the protocol. Zero values take the defaults.
type Options struct {
	// PingInterval is the period of protocol pings (default 30s). A peer
	// that sends nothing (not even a pong) for two intervals is dropped,
	// and so is one that does not take a frame for two intervals.
	PingInterval time.Duration
	// RequestTimeout is the deadline of one chat, queueing included
	// (default 10m).
	RequestTimeout time.Duration
	// MaxChats is how many chats may run at once on one socket (default 16).
	MaxChats int
	// SendQueue is how many frames may wait for the writer (default 64);
	// beyond, generations block.
	SendQueue int
	// MaxFrameBytes caps a client frame (default 1 MiB); a larger one
	// closes the socket (status 1009).
	MaxFrameBytes int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil.
	Metrics *metrics.Metrics
	// Shutdown, when closed, closes every socket with status 1001 (going
	// away) and cancels its chats. Nil: sockets live until their peers
	// leave.
	Shutdown <-chan struct{}
}

// Defaults of Options.
const (
	DefaultPingInterval   = 30 * time.Second
	DefaultRequestTimeout = 10 * time.Minute
	DefaultMaxChats       = 16
	DefaultSendQueue      = 64
	DefaultMaxFrameBytes  = 1 << 20
)

const (
	route = "/v1/ws"
	// ctrlQueue bounds the frames the reader produces (start, pong,
	// errors, cancellations); a client that floods requests without
	// reading the answers blocks its own reader.
	ctrlQueue = 16
	maxIDLen  = 256
)

func (o Options) withDefaults() Options {
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.MaxChats <= 0 {
		o.MaxChats = DefaultMaxChats
	}
	if o.SendQueue <= 0 {
		o.SendQueue = DefaultSendQueue
	}
	if o.MaxFrameBytes <= 0 {
		o.MaxFrameBytes = DefaultMaxFrameBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

type handler struct {
	b    Backend
	opts Options
	log  *slog.Logger
	met  *metrics.Metrics
}

// New returns the Fiber handler of GET /v1/ws. A request that is not a
// WebSocket upgrade gets fiber.ErrUpgradeRequired (426).
func New(b Backend, opts Options) fiber.Handler {
	opts = opts.withDefaults()
	h := &handler{b: b, opts: opts, log: opts.Logger, met: opts.Metrics}
	return fws.New(h.serve, fws.Config{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		RecoverHandler: func(*fws.Conn) {
			if r := recover(); r != nil {
				h.log.Error("panic in websocket handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		},
	})
}

// frame is one server frame waiting for the writer. chat is nil for frames
// that belong to no accepted chat.
type frame struct {
	chat     *chat
	buf      *[]byte
	terminal bool
	// start marks the chat's start frame: the writer closes
	// chat.startWritten once it is written.
	start bool
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// chat is one running chat of a socket.
type chat struct {
	id     string
	model  string // canonical, for metrics
	start  time.Time
	ctx    context.Context
	cancel context.CancelFunc
	// tokenHead is `{"type":"token","id":…,"text":`.
	tokenHead []byte
	// startWritten is closed once the start frame is written: the chat's
	// own frames wait for it, so they can never overtake it.
	startWritten chan struct{}
	// ended is claimed (false → true) by whoever sends the chat's terminal
	// frame: the generation when it ends, or the reader on cancel.
	ended atomic.Bool
	// completion counts the tokens generated so far.
	completion atomic.Int64
	// terminated is owned by the writer: the terminal frame was written,
	// later frames of the chat are dropped.
	terminated bool
}

// socket is one WebSocket connection.
type socket struct {
	h      *handler
	conn   *fws.Conn
	ctx    context.Context
	cancel context.CancelFunc
	ctrl   chan frame
	data   chan frame

	mu    sync.Mutex
	chats map[string]*chat
}

func (h *handler) serve(conn *fws.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &socket{
		h: h, conn: conn, ctx: ctx, cancel: cancel,
		ctrl:  make(chan frame, ctrlQueue),
		data:  make(chan frame, h.opts.SendQueue),
		chats: map[string]*chat{},
	}
	// Every goroutine using conn ends before serve returns: the conn is
	// recycled then.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.writeLoop()
	}()
	if h.opts.Shutdown != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-h.opts.Shutdown:
				msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
				_ = conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
				s.fail()
			case <-ctx.Done():
			}
		}()
	}
	s.readLoop()
	cancel() // cancels every chat of the socket
	_ = conn.NetConn().Close()
	wg.Wait()
}

// readLoop reads client frames until the peer goes away or is silent for
// two ping intervals.
func (s *socket) readLoop() {
	c := s.conn
	wait := 2 * s.h.opts.PingInterval
	c.SetReadLimit(s.h.opts.MaxFrameBytes)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	c.SetPongHandler(func(string) error { return c.SetReadDeadline(time.Now().Add(wait)) })
	c.SetPingHandler(func(msg string) error {
		_ = c.SetReadDeadline(time.Now().Add(wait))
		// A pong that cannot be written now (the writer is stuck on a slow
		// peer) is not worth dropping the socket for.
		_ = c.WriteControl(websocket.PongMessage, []byte(msg), time.Now().Add(time.Second))
		return nil
	})
	for {
		mt, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		if mt != websocket.TextMessage {
			s.sendError("", oai.Invalid("", oai.CodeUnsupported, "binary frames are not supported: send JSON text frames"))
			continue
		}
		s.dispatch(data)
	}
}

// writeLoop is the socket's only writer. Frames of the reader (ctrl) go
// before generated frames (data), so a cancellation is answered at once
// even when tokens are queued; a chat's frames that arrive after its
// terminal frame was written are dropped.
func (s *socket) writeLoop() {
	c := s.conn
	wait := 2 * s.h.opts.PingInterval
	ticker := time.NewTicker(s.h.opts.PingInterval)
	defer ticker.Stop()
	for {
		var f frame
		select {
		case f = <-s.ctrl:
		default:
			select {
			case f = <-s.ctrl:
			case f = <-s.data:
			case <-ticker.C:
				if err := c.WriteControl(websocket.PingMessage, nil, time.Now().Add(wait)); err != nil {
					s.fail()
					return
				}
				continue
			case <-s.ctx.Done():
				return
			}
		}
		if f.chat != nil && f.chat.terminated {
			putBuf(f.buf)
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(wait))
		err := c.WriteMessage(websocket.TextMessage, *f.buf)
		putBuf(f.buf)
		if f.terminal && f.chat != nil {
			f.chat.terminated = true
		}
		if f.start {
			close(f.chat.startWritten)
		}
		if err != nil {
			s.fail()
			return
		}
	}
}

// fail tears the socket down after a write error: the reader's next read
// fails and every chat is cancelled.
func (s *socket) fail() {
	s.cancel()
	_ = s.conn.NetConn().Close()
}

// sendCtrl queues a frame of the reader.
func (s *socket) sendCtrl(f frame) {
	select {
	case s.ctrl <- f:
	case <-s.ctx.Done():
		putBuf(f.buf)
	}
}

// sendData queues a frame of a generation, blocking while the queue is
// full (backpressure) until ctx is done. It first waits for the chat's
// start frame to be written.
func (s *socket) sendData(ctx context.Context, f frame) error {
	select {
	case <-f.chat.startWritten:
	default:
		select {
		case <-f.chat.startWritten:
		case <-ctx.Done():
			putBuf(f.buf)
			return ctx.Err()
		}
	}
	select {
	case s.data <- f:
		return nil
	case <-ctx.Done():
		putBuf(f.buf)
		return ctx.Err()
	}
}

func (s *socket) sendError(id string, e *oai.Error) {
	s.sendCtrl(frame{buf: errorFrame(id, e)})
}

func errorFrame(id string, e *oai.Error) *[]byte {
	b := getBuf()
	*b = append(*b, `{"type":"error",`...)
	if id != "" {
		*b = append(*b, `"id":`...)
		*b = oai.AppendString(*b, id)
		*b = append(*b, ',')
	}
	*b = append(*b, `"error":`...)
	*b = e.AppendJSON(*b)
	*b = append(*b, '}')
	return b
}

func doneFrame(id, reason string, u sdk.Usage) *[]byte {
	b := getBuf()
	*b = append(*b, `{"type":"done","id":`...)
	*b = oai.AppendString(*b, id)
	*b = append(*b, `,"finish_reason":`...)
	*b = oai.AppendString(*b, reason)
	*b = fmt.Appendf(*b, `,"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}`,
		u.PromptTokens, u.CompletionTokens, u.PromptTokens+u.CompletionTokens)
	return b
}

// clientFrame is any client frame; which fields matter depends on Type.
type clientFrame struct {
	Type     string          `json:"type"`
	ID       string          `json:"id"`
	Model    string          `json:"model"`
	Messages json.RawMessage `json:"messages"`
	Content  json.RawMessage `json:"content"`
	Params   json.RawMessage `json:"params"`
}

// dispatch handles one client frame.
func (s *socket) dispatch(data []byte) {
	var f clientFrame
	if err := oai.Decode(data, &f, ""); err != nil {
		s.sendError(readID(data), err)
		return
	}
	switch f.Type {
	case "ping":
		b := getBuf()
		*b = append(*b, `{"type":"pong"}`...)
		s.sendCtrl(frame{buf: b})
	case "cancel":
		s.cancelChat(f.ID)
	case "chat":
		s.startChat(&f)
	case "":
		s.sendError(f.ID, oai.Missing("type"))
	default:
		s.sendError(f.ID, oai.Invalid("type", oai.CodeInvalidValue, "unknown frame type '%s': expected chat, cancel or ping", f.Type))
	}
}

// readID extracts a string id from a frame that did not decode, if it can.
func readID(data []byte) string {
	var probe struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return ""
	}
	id, _ := probe.ID.(string)
	return id
}

func validID(id string) *oai.Error {
	switch {
	case id == "":
		return oai.Missing("id")
	case len(id) > maxIDLen:
		return oai.Invalid("id", oai.CodeInvalidValue, "'id' is longer than %d bytes", maxIDLen)
	}
	return nil
}

// cancelChat answers a cancel frame: the chat gets done "cancelled" now and
// its generation is cancelled.
func (s *socket) cancelChat(id string) {
	if err := validID(id); err != nil {
		s.sendError("", err)
		return
	}
	s.mu.Lock()
	c := s.chats[id]
	won := c != nil && c.ended.CompareAndSwap(false, true)
	if won {
		delete(s.chats, id)
	}
	s.mu.Unlock()
	switch {
	case c == nil:
		s.sendError(id, oai.Invalid("id", "unknown_id", "no active chat has id '%s'", id))
		return
	case !won:
		return // it is ending on its own: its done or error frame is on the way
	}
	c.cancel()
	s.sendCtrl(frame{chat: c, terminal: true, buf: doneFrame(id, string(sdk.FinishCancelled), sdk.Usage{CompletionTokens: int(c.completion.Load())})})
}

// startChat validates a chat frame and starts its generation.
func (s *socket) startChat(f *clientFrame) {
	if err := validID(f.ID); err != nil {
		s.sendError("", err)
		return
	}
	req, model, aerr := s.parseChat(f)
	if aerr != nil {
		s.sendError(f.ID, aerr)
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.h.opts.RequestTimeout)
	c := &chat{id: f.ID, model: model, start: time.Now(), ctx: ctx, cancel: cancel, startWritten: make(chan struct{})}
	c.tokenHead = append(c.tokenHead, `{"type":"token","id":`...)
	c.tokenHead = oai.AppendString(c.tokenHead, f.ID)
	c.tokenHead = append(c.tokenHead, `,"text":`...)
	s.mu.Lock()
	switch {
	case s.chats[f.ID] != nil:
		aerr = oai.Invalid("id", "duplicate_id", "a chat with id '%s' is already running", f.ID)
	case len(s.chats) >= s.h.opts.MaxChats:
		aerr = &oai.Error{Status: http.StatusTooManyRequests, Type: oai.TypeRateLimit, Code: "too_many_chats",
			Message: fmt.Sprintf("too many concurrent chats on this socket (at most %d)", s.h.opts.MaxChats)}
	default:
		s.chats[f.ID] = c
	}
	s.mu.Unlock()
	if aerr != nil {
		cancel()
		s.sendError(f.ID, aerr)
		return
	}
	req.RequestID = "ws-" + oai.NewID()
	b := getBuf()
	*b = append(*b, `{"type":"start","id":`...)
	*b = oai.AppendString(*b, f.ID)
	*b = append(*b, `,"model":`...)
	*b = oai.AppendString(*b, f.Model)
	*b = append(*b, '}')
	s.sendCtrl(frame{chat: c, buf: b, start: true})
	go s.runChat(c, req)
}

// parseChat validates a chat frame into a generation request and the
// canonical model name.
func (s *socket) parseChat(f *clientFrame) (sdk.GenerateRequest, string, *oai.Error) {
	var req sdk.GenerateRequest
	if f.Model == "" {
		return req, "", oai.Missing("model")
	}
	m, ok := s.h.b.Model(f.Model)
	if !ok {
		return req, "", oai.ModelNotFound(f.Model)
	}
	if m.Embedding {
		return req, "", oai.Invalid("model", oai.CodeInvalidValue, "the model '%s' is an embedding model", f.Model)
	}
	switch {
	case !oai.IsNull(f.Messages):
		msgs, err := oai.Messages(f.Messages, "messages")
		if err != nil {
			return req, "", err
		}
		req.Messages = msgs
	case !oai.IsNull(f.Content):
		content, err := oai.Content(f.Content, "content", false)
		if err != nil {
			return req, "", err
		}
		req.Messages = []sdk.Message{{Role: "user", Content: content}}
	default:
		return req, "", oai.Missing("messages")
	}
	if !oai.IsNull(f.Params) {
		var p oai.SamplingParams
		if err := oai.Decode(f.Params, &p, "params"); err != nil {
			return req, "", err
		}
		sampling, err := p.Sampling("params.")
		if err != nil {
			return req, "", err
		}
		req.Sampling = sampling
	}
	return req, m.Name, nil
}

// runChat runs one chat's generation and sends its tokens and its terminal
// frame (unless a cancel claimed it first).
func (s *socket) runChat(c *chat, req sdk.GenerateRequest) {
	defer s.forget(c)
	var (
		final    sdk.Event
		gotFinal bool
		firstTok bool
	)
	err := s.generate(c, req, func(e sdk.Event) error {
		if e.Tokens > 0 {
			c.completion.Add(int64(e.Tokens))
		} else if e.Text != "" {
			c.completion.Add(1)
		}
		if e.Text != "" {
			if !firstTok {
				firstTok = true
				s.h.met.ObserveFirstToken(c.model, c.start)
			}
			b := getBuf()
			*b = append(*b, c.tokenHead...)
			*b = oai.AppendString(*b, e.Text)
			*b = append(*b, '}')
			if err := s.sendData(c.ctx, frame{chat: c, buf: b}); err != nil {
				return err
			}
		}
		if e.Final() {
			final, gotFinal = e, true
		}
		return nil
	})
	var usage sdk.Usage
	if final.Usage != nil {
		usage = *final.Usage
	}
	if !c.ended.CompareAndSwap(false, true) {
		s.record(c, oai.StatusClientClosed, usage)
		return
	}
	var b *[]byte
	status := http.StatusOK
	switch {
	case err == nil && gotFinal && final.FinishReason == sdk.FinishError:
		e := oai.BackendFailed(final.Error)
		status, b = e.Status, errorFrame(c.id, e)
	case err == nil:
		reason := string(final.FinishReason)
		if reason == "" {
			reason = string(sdk.FinishStop)
		}
		b = doneFrame(c.id, reason, usage)
	default:
		e := oai.FromError(err)
		status, b = e.Status, errorFrame(c.id, e)
	}
	s.record(c, status, usage) // before the client can see the end
	_ = s.sendData(s.ctx, frame{chat: c, buf: b, terminal: true})
}

// generate runs the chat's generation, turning a panic of the backend into
// an error.
func (s *socket) generate(c *chat, req sdk.GenerateRequest, emit func(sdk.Event) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.h.log.Error("panic in Generate", "model", c.model, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("backend panicked: %v", r)
		}
	}()
	return s.h.b.Generate(c.ctx, c.model, req, emit)
}

// forget removes c from the socket's chats (if a cancel did not already)
// and releases its context.
func (s *socket) forget(c *chat) {
	s.mu.Lock()
	if s.chats[c.id] == c {
		delete(s.chats, c.id)
	}
	s.mu.Unlock()
	c.cancel()
}

func (s *socket) record(c *chat, status int, u sdk.Usage) {
	s.h.met.ObserveRequest(route, c.model, status, c.start)
	s.h.met.AddTokens(c.model, u.PromptTokens, u.CompletionTokens)
}
