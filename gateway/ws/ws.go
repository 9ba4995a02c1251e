package ws

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/ragway/ragway/gateway/accounts"
	"github.com/ragway/ragway/gateway/auth"
	core "github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/netguard"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/workers"
)

// Backend is what the WebSocket protocol needs from the workers: a chat frame's
// model is resolved before the chat starts (the chat core runs it).
type Backend interface {
	// Model returns the status of the model with that name or alias.
	Model(name string) (workers.ModelStatus, bool)
}

// Gate admits chats by API key: Check once per chat, Verify when the socket
// authenticates (opening it is not a request).
type Gate = auth.Admitter

// Options configures the protocol. Zero values take the defaults.
type Options struct {
	// Gate authenticates the socket's key (Authorization header, ?api_key=, or a
	// first frame {"type":"auth","api_key":…}) and re-checks it for every chat, so a
	// revoked key stops at once. Required.
	Gate Gate
	// Chat runs the chats (the same core as the HTTP API's). `content` chats are
	// stored turns when it stores conversations, else single stateless turns; "rag"
	// is refused when it grounds in no knowledge base. Its Timeout bounds a chat,
	// queueing included. Required.
	Chat *core.Service
	// PingInterval is the period of protocol pings (default 30s). A peer
	// that sends nothing (not even a pong) for two intervals is dropped,
	// and so is one that does not take a frame for two intervals.
	PingInterval time.Duration
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
	// SessionCookies makes the website's session cookie a credential of upgrades
	// from the gateway's own origin.
	SessionCookies bool
	// SecureCookies reports whether the site's cookies are Secure for a request
	// (only the __Host- cookie counts then); nil: over TLS.
	SecureCookies func(c *fiber.Ctx) bool
}

// Defaults of Options.
const (
	DefaultPingInterval  = 30 * time.Second
	DefaultMaxChats      = 16
	DefaultAuthTimeout   = 10 * time.Second
	DefaultSendQueue     = 64
	DefaultMaxFrameBytes = 1 << 20
)

const (
	route = Route
	// ctrlQueue bounds the frames the reader produces (start, pong,
	// errors, cancellations); a client that floods requests without
	// reading the answers blocks its own reader.
	ctrlQueue = 16
	maxIDLen  = 256
	// authFrameBytes caps the frames of a socket that has not authenticated yet.
	authFrameBytes = 16 << 10
)

func (o Options) withDefaults() Options {
	if o.SecureCookies == nil {
		o.SecureCookies = func(c *fiber.Ctx) bool { return c.Context().IsTLS() }
	}
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
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
	if o.Chat == nil {
		panic("ws: Options.Chat is required")
	}
	return o
}

type handler struct {
	b       Backend
	opts    Options
	log     *slog.Logger
	met     *metrics.Metrics
	sockets socketSet
}

// socketSet is a handler's open sockets, closed together at shutdown.
type socketSet struct {
	mu   sync.Mutex
	m    map[*socket]struct{}
	down bool
}

// add adds s, unless the shutdown began (then it reports false).
func (ss *socketSet) add(s *socket) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.down {
		return false
	}
	if ss.m == nil {
		ss.m = map[*socket]struct{}{}
	}
	ss.m[s] = struct{}{}
	return true
}

func (ss *socketSet) remove(s *socket) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, s)
}

// shutdown closes every socket (going away), and those added later.
func (ss *socketSet) shutdown() {
	ss.mu.Lock()
	ss.down = true
	open := make([]*socket, 0, len(ss.m))
	for s := range ss.m {
		open = append(open, s)
	}
	ss.mu.Unlock()
	for _, s := range open {
		go s.goingAway() // (each waits up to a second for its close frame)
	}
}

// Route is where Mount serves the protocol.
const Route = "/v1/ws"

// Mount serves the protocol at GET /v1/ws on app (behind app's middleware), closing
// every socket when app shuts down (unless opts.Shutdown says otherwise).
func Mount(app *fiber.App, b Backend, opts Options) {
	if opts.Shutdown == nil {
		closing := make(chan struct{})
		var once sync.Once
		app.Hooks().OnShutdown(func() error {
			once.Do(func() { close(closing) })
			return nil
		})
		opts.Shutdown = closing
	}
	app.Get(Route, New(b, opts))
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
	h := &handler{b: b, opts: opts, log: opts.Logger, met: opts.Metrics}
	if opts.Shutdown != nil {
		go func() {
			<-opts.Shutdown
			h.sockets.shutdown()
		}()
	}
	upgrade := fws.New(h.serve, fws.Config{
		// An idle socket holds its read buffer only (a frame larger than it is read
		// in pieces); a write takes a buffer from the pool for its time.
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		WriteBufferPool: writeBuffers,
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
		if key == "" && h.opts.SessionCookies && originAllowed(&c.Request().Header, nil) {
			// The website's session cookie, from a page of the gateway's own origin
			// only: a page of another origin, even an allowed one, cannot open a
			// socket as the user.
			key = accounts.SessionCookie(h.opts.SecureCookies(c), func(name string) string { return c.Cookies(name) })
		}
		p, err := h.opts.Gate.Verify(c.UserContext(), key, auth.ScopeChat)
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

// writeBuffers are the sockets' write buffers, held only while a frame is written.
var writeBuffers = &sync.Pool{}

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
