package ws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/ragway/ragway/gateway/auth"
	core "github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/netguard"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/tokens"
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

// Gate admits chats by API key (package auth's *Gate implements it).
type Gate interface {
	// Check authenticates key, requires scope and admits one request under the
	// key's rate limits (once per chat).
	Check(ctx context.Context, key, scope string) (auth.Principal, error)
	// Verify authenticates key and requires scope, admitting no request (opening
	// the socket is not one).
	Verify(ctx context.Context, key, scope string) (auth.Principal, error)
}

// Accountant accounts for served chats: rate-limit tokens and usage rows (package
// usage's *Recorder implements it).
type Accountant interface {
	Account(p auth.Principal, route, model string, promptTokens, completionTokens int)
}

// Options configures the protocol. Zero values take the defaults.
type Options struct {
	// Gate authenticates the socket's key (Authorization header, ?api_key=, or a
	// first frame {"type":"auth","api_key":…}) and re-checks it for every chat, so a
	// revoked key stops at once. Required.
	Gate Gate
	// Conversations stores `content` chats as conversations; nil: `content` chats
	// are single stateless turns.
	Conversations *conversation.Turns
	// Usage accounts for every chat; may be nil.
	Usage Accountant
	// RAG grounds chats with "rag" in knowledge bases (a sources frame follows the
	// start frame); nil: such chats are refused.
	RAG *rag.Service
	// PingInterval is the period of protocol pings (default 30s). A peer
	// that sends nothing (not even a pong) for two intervals is dropped,
	// and so is one that does not take a frame for two intervals.
	PingInterval time.Duration
	// RequestTimeout is the deadline of one chat, queueing included
	// (default 10m).
	RequestTimeout time.Duration
	// AuthTimeout is how long a socket opened without a key has to send its auth
	// frame (default 10s).
	AuthTimeout time.Duration
	// Chats, when set, counts running chats (Add at the start, Done when the chat's
	// end is stored and sent): the server waits for it before closing the database.
	Chats *sync.WaitGroup
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
	// AllowedOrigins are the origins (exactly as browsers send them in Origin, e.g.
	// "https://chat.example.com") whose pages may open sockets besides the gateway's
	// own (server.cors_origins). An upgrade with any other Origin is refused with 403;
	// one without Origin (not from a browser) is not concerned.
	AllowedOrigins []string
}

// Defaults of Options.
const (
	DefaultPingInterval   = 30 * time.Second
	DefaultRequestTimeout = 10 * time.Minute
	DefaultMaxChats       = 16
	DefaultAuthTimeout    = 10 * time.Second
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
	// authFrameBytes caps the frames of a socket that has not authenticated yet.
	authFrameBytes = 16 << 10
)

func (o Options) withDefaults() Options {
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.AuthTimeout <= 0 {
		o.AuthTimeout = DefaultAuthTimeout
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
	if o.Gate == nil {
		panic("ws: Options.Gate is required")
	}
	return o
}

type handler struct {
	b    Backend
	opts Options
	log  *slog.Logger
	met  *metrics.Metrics
	// core runs the chat turns (grounding, stored turns, generation).
	core *core.Service
}

// New returns the Fiber handler of GET /v1/ws. A request that is not a
// WebSocket upgrade gets fiber.ErrUpgradeRequired (426). An upgrade from a browser
// page on another origin than the gateway's own or Options.AllowedOrigins is refused
// with 403 (originAllowed) before anything else, so that such a page cannot ride on
// credentials the browser holds for the gateway. A key given with the
// upgrade request (Authorization: Bearer, or ?api_key=) is checked before the
// upgrade: a bad one is an HTTP error in the OpenAI shape.
func New(b Backend, opts Options) fiber.Handler {
	opts = opts.withDefaults()
	h := &handler{b: b, opts: opts, log: opts.Logger, met: opts.Metrics,
		core: &core.Service{Backends: b, Turns: opts.Conversations, RAG: opts.RAG, Logger: opts.Logger}}
	upgrade := fws.New(h.serve, fws.Config{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		RecoverHandler: func(*fws.Conn) {
			if r := recover(); r != nil {
				h.log.Error("panic in websocket handler", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		},
	})
	allowed := make(map[string]bool, len(opts.AllowedOrigins))
	for _, o := range opts.AllowedOrigins {
		allowed[o] = true
	}
	return func(c *fiber.Ctx) error {
		if !fws.IsWebSocketUpgrade(c) {
			return fiber.ErrUpgradeRequired
		}
		if !originAllowed(&c.Request().Header, allowed) {
			return errOriginNotAllowed
		}
		key := c.Query("api_key")
		if hdr := c.Get(fiber.HeaderAuthorization); hdr != "" {
			var err error
			if key, err = auth.BearerToken(hdr); err != nil {
				return err
			}
		}
		p, err := h.opts.Gate.Verify(c.UserContext(), key, store.ScopeChat)
		switch {
		case err == nil:
			netguard.Authenticated(c.Context().Conn())
			c.Locals(localAuthenticated, true)
			c.Locals(localKey, key)
			c.Locals(localPrincipal, p)
		case key == "" && errors.Is(err, auth.ErrNoKey):
			// The first frame must carry the key; the connection counts as
			// unauthenticated until it does.
		default:
			return err
		}
		// The socket's own connection: closing the upgraded one fasthttp hands the
		// handler does not close the socket.
		c.Locals(localConn, c.Context().Conn())
		return upgrade(c)
	}
}

// errOriginNotAllowed refuses an upgrade from a page on another origin.
var errOriginNotAllowed = &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: "origin_not_allowed",
	Message: "this page's origin may not open WebSockets here: it is neither the gateway's own nor listed in server.cors_origins"}

// originAllowed reports whether an upgrade request with headers h may proceed: one
// without Origin is not from a browser; one from a browser must come from a page of
// the gateway's own origin (the host and port of the request's Host, for http and
// https pages; the scheme is not compared, a proxy may terminate TLS) or of an allowed
// origin, byte for byte. More than one Origin header is refused.
func originAllowed(h *fasthttp.RequestHeader, allowed map[string]bool) bool {
	values := h.PeekAll(fiber.HeaderOrigin)
	switch len(values) {
	case 0:
		return true
	case 1:
	default:
		return false
	}
	origin := string(values[0])
	if allowed[origin] {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme+"://"+u.Host != origin || u.Host == "" {
		return false // "null", a path, a user, anything but scheme://host[:port]
	}
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port = "443"
	default:
		return false
	}
	withPort := func(hostport string) string {
		if strings.LastIndexByte(hostport, ':') > strings.LastIndexByte(hostport, ']') {
			return hostport
		}
		return hostport + ":" + port
	}
	host := string(h.Host())
	return host != "" && strings.EqualFold(withPort(u.Host), withPort(host))
}

// Locals carrying the key checked before the upgrade into the socket.
const (
	localAuthenticated = "ragway.ws.authenticated"
	localKey           = "ragway.ws.key"
	localPrincipal     = "ragway.ws.principal"
	localConn          = "ragway.ws.conn"
)

// frame is one server frame waiting for the writer. chat is nil for frames
// that belong to no accepted chat.
type frame struct {
	chat     *chat
	buf      *[]byte
	terminal bool
	// start marks the chat's start frame: the writer closes
	// chat.startWritten once it is written.
	start bool
	// close, when set, makes the writer send a close frame with this status
	// (buf is the reason) and end the socket.
	close int
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
	id    string
	model string // canonical, for metrics
	// ctxLen is the model's context length (0: unknown), for fitting history.
	ctxLen int
	// stored chats (`content` with a conversation store) are turns of a
	// conversation; conversationID is "" for a new one.
	stored         bool
	conversationID string
	principal      auth.Principal
	// rag, when set, grounds the chat in a knowledge base.
	rag    *rag.Params
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
	// cancelled is set by a cancel frame of a stored chat, whose terminal frame
	// the generation sends once the partial answer is stored.
	cancelled atomic.Bool
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

	// authenticated, key and principal are the socket's credentials, owned by
	// the reader: set before the upgrade or by the first frame.
	authenticated atomic.Bool
	key           string
	principal     auth.Principal
	// netConn is the socket's network connection: closing it ends the socket (the
	// upgraded conn's Close does not), and the auth frame marks it authenticated
	// (netguard).
	netConn net.Conn
}

func (h *handler) serve(conn *fws.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &socket{
		h: h, conn: conn, ctx: ctx, cancel: cancel,
		ctrl:  make(chan frame, ctrlQueue),
		data:  make(chan frame, h.opts.SendQueue),
		chats: map[string]*chat{},
	}
	if ok, _ := conn.Locals(localAuthenticated).(bool); ok {
		s.authenticated.Store(true)
	}
	s.key, _ = conn.Locals(localKey).(string)
	s.principal, _ = conn.Locals(localPrincipal).(auth.Principal)
	s.netConn, _ = conn.Locals(localConn).(net.Conn)
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
	if !s.authenticated.Load() {
		// A socket that does not authenticate in time is closed.
		t := time.AfterFunc(h.opts.AuthTimeout, func() {
			if !s.authenticated.Load() {
				s.sendError("", &oai.Error{Status: http.StatusUnauthorized, Type: oai.TypeAuthentication, Code: oai.CodeMissingKey,
					Message: "no auth frame within " + h.opts.AuthTimeout.String()})
				s.closePolicy("authentication timeout")
			}
		})
		defer t.Stop()
	}
	s.readLoop()
	cancel() // cancels every chat of the socket
	s.closeConn()
	wg.Wait()
}

// readLoop reads client frames until the peer goes away or is silent for
// two ping intervals.
func (s *socket) readLoop() {
	c := s.conn
	wait := 2 * s.h.opts.PingInterval
	if s.authenticated.Load() {
		c.SetReadLimit(s.h.opts.MaxFrameBytes)
		_ = c.SetReadDeadline(time.Now().Add(wait))
	} else {
		// Until its auth frame, a socket holds little and not for long: pings do
		// not extend its deadline.
		// (The deadline leaves the auth timer a second to say why it closes it.)
		c.SetReadLimit(min(authFrameBytes, s.h.opts.MaxFrameBytes))
		_ = c.SetReadDeadline(time.Now().Add(s.h.opts.AuthTimeout + time.Second))
	}
	extend := func() {
		if s.authenticated.Load() {
			_ = c.SetReadDeadline(time.Now().Add(wait))
		}
	}
	c.SetPongHandler(func(string) error { extend(); return nil })
	c.SetPingHandler(func(msg string) error {
		extend()
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
		extend()
		if mt != websocket.TextMessage {
			s.sendError("", oai.Invalid("", oai.CodeUnsupported, "binary frames are not supported: send JSON text frames"))
			if !s.authenticated.Load() {
				s.closePolicy("the first frame must be an auth frame")
			}
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
		if f.close != 0 {
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(f.close, string(*f.buf)), time.Now().Add(time.Second))
			putBuf(f.buf)
			s.fail()
			return
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
	s.closeConn()
}

// closeConn closes the socket's network connection.
func (s *socket) closeConn() {
	if s.netConn != nil {
		_ = s.netConn.Close()
		return
	}
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

// clientFrame is any client frame; which fields matter depends on Type: a chat
// frame's are chatFields, an auth frame's type and api_key.
type clientFrame struct {
	chatFields
	APIKey string `json:"api_key"`
}

// dispatch handles one client frame.
func (s *socket) dispatch(data []byte) {
	var f clientFrame
	if err := oai.Decode(data, &f, ""); err != nil {
		s.sendError(readID(data), err)
		if !s.authenticated.Load() {
			s.closePolicy("the first frame must be an auth frame")
		}
		return
	}
	if !s.authenticated.Load() {
		// A socket opened without a key must authenticate with its first frame.
		s.authenticate(&f)
		return
	}
	switch f.Type {
	case "auth":
		s.sendError(f.ID, oai.Invalid("type", oai.CodeInvalidValue, "this socket is already authenticated"))
	case "ping":
		b := getBuf()
		*b = append(*b, `{"type":"pong"}`...)
		s.sendCtrl(frame{buf: b})
	case "cancel":
		s.cancelChat(f.ID)
	case "chat":
		if e := checkChatFields(data); e != nil {
			s.sendError(f.ID, e)
			return
		}
		s.startChat(&f)
	case "":
		s.sendError(f.ID, oai.Missing("type"))
	default:
		s.sendError(f.ID, oai.Invalid("type", oai.CodeInvalidValue, "unknown frame type '%s': expected chat, cancel or ping", f.Type))
	}
}

// authenticate handles the first frame of a socket opened without a key: it must be
// {"type":"auth","api_key":…}. Anything else, or a bad key, gets an error frame and
// the socket is closed (policy violation).
func (s *socket) authenticate(f *clientFrame) {
	var err error
	switch {
	case f.Type != "auth":
		err = auth.ErrNoKey
	case f.APIKey == "":
		err = auth.ErrNoKey
	default:
		var p auth.Principal
		if p, err = s.h.opts.Gate.Verify(s.ctx, f.APIKey, store.ScopeChat); err == nil {
			s.key, s.principal = f.APIKey, p
			s.authenticated.Store(true)
			netguard.Authenticated(s.netConn)
			s.conn.SetReadLimit(s.h.opts.MaxFrameBytes)
			_ = s.conn.SetReadDeadline(time.Now().Add(2 * s.h.opts.PingInterval))
			return
		}
	}
	e := core.APIError(err)
	if errors.Is(err, auth.ErrNoKey) {
		e.Message = "authenticate first: send {\"type\":\"auth\",\"api_key\":\"<key>\"} as the first frame, or open the socket with an Authorization header"
	}
	s.sendError(f.ID, e)
	s.closePolicy(e.Message)
}

// closePolicy closes the socket with status 1008 (policy violation) once the frames
// already queued are written.
func (s *socket) closePolicy(reason string) {
	if len(reason) > 120 {
		reason = reason[:120]
	}
	b := getBuf()
	*b = append(*b, reason...)
	s.sendCtrl(frame{buf: b, close: websocket.ClosePolicyViolation})
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

// cancelChat answers a cancel frame: the chat's generation is cancelled and the
// chat gets done "cancelled" — at once for a stateless chat, after its partial
// answer is stored for a stored one.
func (s *socket) cancelChat(id string) {
	if err := validID(id); err != nil {
		s.sendError("", err)
		return
	}
	s.mu.Lock()
	c := s.chats[id]
	won := c != nil && !c.stored && c.ended.CompareAndSwap(false, true)
	if won {
		delete(s.chats, id)
	}
	s.mu.Unlock()
	switch {
	case c == nil:
		s.sendError(id, oai.Invalid("id", "unknown_id", "no active chat has id '%s'", id))
		return
	case c.stored:
		c.cancelled.Store(true)
		c.cancel()
		return
	case !won:
		return // it is ending on its own: its done or error frame is on the way
	}
	c.cancel()
	s.sendCtrl(frame{chat: c, terminal: true, buf: doneFrame(id, string(sdk.FinishCancelled), sdk.Usage{CompletionTokens: int(c.completion.Load())})})
}

// startChat validates a chat frame, re-checks the socket's key (a revoked key stops
// at once; the key's rate limits apply per chat) and starts the chat.
func (s *socket) startChat(f *clientFrame) {
	if err := validID(f.ID); err != nil {
		s.sendError("", err)
		return
	}
	// The frame is checked before the key: a refused chat costs no request of the
	// key's limits.
	ctx, cancel := context.WithTimeout(s.ctx, s.h.opts.RequestTimeout)
	c := &chat{id: f.ID, start: time.Now(), ctx: ctx, cancel: cancel, startWritten: make(chan struct{})}
	req, aerr := s.parseChat(f, c)
	if aerr != nil {
		cancel()
		s.sendError(f.ID, aerr)
		return
	}
	p, err := s.h.opts.Gate.Check(s.ctx, s.key, store.ScopeChat)
	if err != nil {
		cancel()
		s.sendError(f.ID, core.APIError(err))
		return
	}
	s.principal, c.principal = p, p
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
	if !c.stored {
		// Start frames of stateless chats go out in the order of their chat frames.
		s.sendCtrl(frame{chat: c, buf: startFrame(c.id, f.Model, nil), start: true})
	}
	if wg := s.h.opts.Chats; wg != nil {
		wg.Add(1)
	}
	go s.runChat(c, req, f.Model)
}

// startFrame is `{"type":"start","id","model"[,"conversation_id","message_id"]}`.
func startFrame(id, model string, t *conversation.Turn) *[]byte {
	b := getBuf()
	*b = append(*b, `{"type":"start","id":`...)
	*b = oai.AppendString(*b, id)
	*b = append(*b, `,"model":`...)
	*b = oai.AppendString(*b, model)
	if t != nil {
		*b = append(*b, `,"conversation_id":`...)
		*b = oai.AppendString(*b, t.Conversation.ID)
		*b = append(*b, `,"message_id":`...)
		*b = oai.AppendString(*b, t.MessageID)
	}
	*b = append(*b, '}')
	return b
}

// parseChat validates a chat frame into a generation request, filling c's model
// fields and whether it is a stored turn.
// chatParams is the "params" object of a chat frame: OpenAI's sampling parameters.
type chatParams struct {
	oai.SamplingParams
	oai.Unhonoured
}

// chatFields are the fields a chat frame may have (and every frame's type and id).
type chatFields struct {
	Type           string          `json:"type"`
	ID             string          `json:"id"`
	Model          string          `json:"model"`
	Messages       json.RawMessage `json:"messages"`
	Content        json.RawMessage `json:"content"`
	ConversationID *string         `json:"conversation_id"`
	System         *string         `json:"system"`
	RAG            *rag.Params     `json:"rag"`
	Params         json.RawMessage `json:"params"`
}

// checkChatFields refuses a chat frame field the protocol does not define, naming it;
// a sampling parameter belongs in "params".
func checkChatFields(data []byte) *oai.Error {
	k := oai.UnknownField(data, &chatFields{})
	if k == "" {
		return nil
	}
	probe, _ := json.Marshal(map[string]any{k: nil})
	if oai.UnknownField(probe, &chatParams{}) == "" {
		return oai.Invalid(k, "unknown_parameter", "'%s' goes in 'params': {\"params\": {\"%s\": …}}", k, k)
	}
	return oai.Invalid(k, "unknown_parameter", "unknown field '%s' in a chat frame", k)
}

func (s *socket) parseChat(f *clientFrame, c *chat) (sdk.GenerateRequest, *oai.Error) {
	var req sdk.GenerateRequest
	if f.Model == "" {
		return req, oai.Missing("model")
	}
	m, ok := s.h.b.Model(f.Model)
	if !ok {
		return req, oai.ModelNotFound(f.Model)
	}
	if m.Embedding {
		return req, oai.Invalid("model", oai.CodeInvalidValue, "the model '%s' is an embedding model", f.Model)
	}
	c.model, c.ctxLen = m.Name, m.ContextLength
	switch {
	case !oai.IsNull(f.Messages) && !oai.IsNull(f.Content):
		return req, oai.Invalid("content", oai.CodeInvalidValue, "give either 'messages' (the whole history) or 'content' (one turn, the history kept by the server), not both")
	case !oai.IsNull(f.Messages) && f.System != nil:
		return req, oai.Invalid("system", oai.CodeInvalidValue, "'system' goes with 'content'; with 'messages', send a system message")
	case !oai.IsNull(f.Content) && f.ConversationID != nil && s.h.opts.Conversations == nil:
		return req, oai.Unsupported("conversation_id", "this gateway has no database: 'conversation_id' is not available")
	case !oai.IsNull(f.Messages):
		if f.ConversationID != nil {
			return req, oai.Invalid("conversation_id", oai.CodeInvalidValue, "'conversation_id' goes with 'content' (the server keeps the history), not with 'messages'")
		}
		msgs, err := oai.Messages(f.Messages, "messages")
		if err != nil {
			return req, err
		}
		req.Messages = msgs
	case !oai.IsNull(f.Content):
		content, err := oai.Content(f.Content, "content", false)
		if err != nil {
			return req, err
		}
		if f.System != nil {
			req.Messages = append(req.Messages, sdk.Message{Role: "system", Content: *f.System})
		}
		req.Messages = append(req.Messages, sdk.Message{Role: "user", Content: content})
		if s.h.opts.Conversations != nil {
			// Stored: text Postgres cannot store is the client's 400, before any write.
			if err := oai.CheckText("content", content); err != nil {
				return req, err
			}
			if f.System != nil {
				if err := oai.CheckText("system", *f.System); err != nil {
					return req, err
				}
			}
			c.stored = true
			if f.ConversationID != nil {
				if *f.ConversationID == "" {
					return req, oai.Invalid("conversation_id", oai.CodeInvalidValue, "'conversation_id' is empty: leave it out to start a new conversation")
				}
				c.conversationID = *f.ConversationID
			}
		}
	default:
		return req, oai.Missing("messages")
	}
	if f.RAG != nil {
		if e := core.CheckRAG(s.h.opts.RAG != nil, *f.RAG); e != nil {
			return req, e
		}
		c.rag = f.RAG
	}
	if !oai.IsNull(f.Params) {
		var p chatParams
		if err := oai.Decode(f.Params, &p, "params"); err != nil {
			return req, err
		}
		if k := oai.UnknownField(f.Params, &p); k != "" {
			return req, oai.Invalid("params."+k, "unknown_parameter", "unknown parameter 'params.%s'", k)
		}
		if err := p.Unhonoured.Check("params."); err != nil {
			return req, err
		}
		sampling, err := p.Sampling("params.")
		if err != nil {
			return req, err
		}
		req.Sampling = sampling
	}
	return req, nil
}

// runChat runs one chat: for a stored chat it first stores the turn and sends the
// start frame (a stateless chat's was sent by startChat), then it sends the tokens
// and the terminal frame (unless a cancel of a stateless
// chat claimed it first). A stored chat's answer is stored before its terminal frame
// is sent.
func (s *socket) runChat(c *chat, req sdk.GenerateRequest, modelName string) {
	defer s.forget(c)
	if wg := s.h.opts.Chats; wg != nil {
		defer wg.Done()
	}
	t, e := s.h.core.Begin(c.ctx, core.Request{
		UserID: c.principal.UserID, Model: workers.ModelStatus{Name: c.model, ContextLength: c.ctxLen},
		Messages: req.Messages, Stored: c.stored, ConversationID: c.conversationID, MaxTokens: req.Sampling.MaxTokens, RAG: c.rag,
	})
	if e != nil {
		// A stateless chat's start frame was sent; a stored chat's comes with its turn.
		s.end(c, e.Status, sdk.Usage{}, errorFrame(c.id, e), !c.stored)
		return
	}
	turn := t.Stored
	if c.stored {
		s.sendCtrl(frame{chat: c, buf: startFrame(c.id, modelName, turn), start: true})
	}
	req.Messages = t.Prompt
	if t.Grounding != nil {
		// A cancelled chat fails to send it; its generation then ends at once, and the
		// usual end (stored as cancelled) follows.
		_ = s.sendData(c.ctx, frame{chat: c, buf: sourcesFrame(c.id, *t.Grounding)})
	}
	var (
		final    sdk.Event
		gotFinal bool
		firstTok bool
	)
	err := t.Generate(c.ctx, req, func(e sdk.Event) error {
		t.Observe(e)
		c.completion.Add(int64(tokens.Of(e)))
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
	if usage.CompletionTokens == 0 {
		usage.CompletionTokens = int(c.completion.Load())
	}
	// A generation that ended on its own is not cancelled by a cancel that came
	// after its end.
	cancelled := (c.cancelled.Load() || s.ctx.Err() != nil) && !(err == nil && gotFinal)
	ended := err
	if err == nil && gotFinal && final.FinishReason == sdk.FinishError {
		ended = oai.BackendFailed(final.Error) // stored as the client is told it
	}
	storeErr := t.End(ended, final, cancelled)
	var b *[]byte
	status := http.StatusOK
	switch {
	case storeErr != nil:
		status, b = storeErr.Status, errorFrame(c.id, storeErr)
	case cancelled:
		status, b = oai.StatusClientClosed, doneFrame(c.id, string(sdk.FinishCancelled), usage)
	case err == nil && gotFinal && final.FinishReason == sdk.FinishError:
		e := oai.BackendFailed(final.Error)
		s.h.log.Warn("chat failed", "model", c.model, "status", e.Status, "error", e.Cause)
		status, b = e.Status, errorFrame(c.id, e)
	case err == nil:
		reason := string(final.FinishReason)
		if reason == "" {
			reason = string(sdk.FinishStop)
		}
		b = doneFrame(c.id, reason, usage)
	default:
		e := core.APIError(err)
		if e.Status >= 500 {
			s.h.log.Warn("chat failed", "model", c.model, "status", e.Status, "error", err)
		}
		status, b = e.Status, errorFrame(c.id, e)
	}
	s.end(c, status, usage, b, true)
}

// end records the chat and sends its terminal frame b, unless a cancel already
// answered it. started tells whether the start frame was sent (the terminal frame
// then follows the chat's tokens; else it goes out at once, and the chat, refused
// before it reached a backend, has no usage row: as over HTTP).
func (s *socket) end(c *chat, status int, usage sdk.Usage, b *[]byte, started bool) {
	if !c.ended.CompareAndSwap(false, true) {
		putBuf(b)
		s.record(c, oai.StatusClientClosed, usage, started)
		return
	}
	s.record(c, status, usage, started) // before the client can see the end
	f := frame{chat: c, buf: b, terminal: true}
	if !started {
		s.sendCtrl(f)
		return
	}
	_ = s.sendData(s.ctx, f)
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

// record records the chat's metrics and, when it was served (it reached a
// backend), its usage.
func (s *socket) record(c *chat, status int, u sdk.Usage, served bool) {
	s.h.met.ObserveRequest(route, c.model, status, c.start)
	s.h.met.AddTokens(c.model, u.PromptTokens, u.CompletionTokens)
	if served && s.h.opts.Usage != nil && c.model != "" {
		s.h.opts.Usage.Account(c.principal, route, c.model, u.PromptTokens, u.CompletionTokens)
	}
}

// sourcesFrame is `{"type":"sources","id","sources":[…],"warning"?}`.
func sourcesFrame(id string, g rag.Grounding) *[]byte {
	body, _ := json.Marshal(struct {
		Type    string       `json:"type"`
		ID      string       `json:"id"`
		Sources []rag.Source `json:"sources"`
		Warning string       `json:"warning,omitempty"`
	}{"sources", id, append([]rag.Source{}, g.Sources...), g.Warning})
	b := getBuf()
	*b = append(*b, body...)
	return b
}
