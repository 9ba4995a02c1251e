package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ragway/ragway/gateway/accounts"
	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/conversations"
	"github.com/ragway/ragway/gateway/health"
	"github.com/ragway/ragway/gateway/knowledge"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/netguard"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Backends is what the HTTP layer needs from the workers (package workers
// implements it).
type Backends interface {
	// Generate serves the default chat core (Options.Chat).
	chat.Backends
	// Embed embeds req.Input with an embedding model.
	Embed(ctx context.Context, model string, req sdk.EmbedRequest) (sdk.EmbedResponse, error)
	// Rerank scores req.Documents against req.Query with a rerank model.
	Rerank(ctx context.Context, model string, req sdk.RerankRequest) (sdk.RerankResponse, error)
	// Models returns the status of every model.
	Models() []workers.ModelStatus
	// Model returns the status of the model with that name or alias.
	Model(name string) (workers.ModelStatus, bool)
}

// Options configures the HTTP layer. Zero values take the defaults.
type Options struct {
	// MaxBodyBytes caps a request body (default 4 MiB); larger bodies get
	// 413 in the OpenAI error shape.
	MaxBodyBytes int
	// RequestTimeout is the deadline of one generation, queueing included
	// (default 10m).
	RequestTimeout time.Duration
	// HeartbeatInterval is the period of SSE comment heartbeats sent while a
	// stream waits for the backend (default 5s).
	HeartbeatInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Metrics may be nil (no metrics, no /metrics route).
	Metrics *metrics.Metrics
	// Gate authenticates every route but /healthz, /readyz and (see MetricsOpen)
	// /metrics. Required.
	Gate Gate
	// Conversations serves /v1/conversations; nil: no such routes.
	Conversations *conversations.Service
	// Database is checked by /readyz; nil: /readyz does not report a database.
	Database *health.Database
	// Usage accounts for embeddings (and the chats of the default core when Chat is
	// nil; a Chat given accounts its turns with its own Usage); may be nil.
	Usage Accountant
	// Knowledge serves /v1/knowledge-bases; nil: no such routes.
	Knowledge *knowledge.Service
	// Accounts serves /auth (the website's accounts and sessions), /v1/keys and
	// /admin/invites, and makes the session cookie a credential; nil: none of it.
	Accounts *accounts.Service
	// TrustedProxies are web.trusted_proxies: a request from one of them is counted
	// against the address its X-Forwarded-For names (clientAddr).
	TrustedProxies []netip.Prefix
	// SecureCookies is web.secure_cookies: "auto" (Secure over TLS), "always" or
	// "never".
	SecureCookies string
	// Models serves /admin/models, /admin/aliases and /admin/reload; nil: no such
	// routes.
	Models ModelAdmin
	// Pulls serves POST /admin/models/pull and GET /admin/models/pulls (with
	// Models); nil: no such routes.
	Pulls Pulls
	// Chat runs the chat turns of /v1/chat/completions and /v1/completions (the
	// same core serves the WebSocket protocol, which the caller mounts: see
	// package ws). Nil: a core over the Backends with no conversations and no
	// retrieval ("conversation_id" and "rag" are refused), bounded by
	// RequestTimeout.
	Chat *chat.Service
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken string
	// MetricsOpen serves /metrics without a token (the server listens on loopback
	// only); otherwise, without MetricsToken, /metrics needs an admin key.
	MetricsOpen bool
	// HeaderTimeout is how long a request's headers may take to arrive, from its
	// first byte (default 10s). Serve the app on a netguard listener with the same
	// value to bound a new connection's first request from its accept.
	HeaderTimeout time.Duration
	// BodyTimeout is how long a request's body may take to arrive after its headers
	// (default 60s).
	BodyTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle for that long (default 2m; it
	// does not limit streams or WebSockets).
	IdleTimeout time.Duration
	// CORSOrigins are the origins (exactly as browsers send them in Origin, e.g.
	// "https://chat.example.com"; package config validates them) whose pages may call
	// the API from a browser: their preflights are answered and their responses carry
	// CORS headers (see cors.go). They may also open WebSockets, besides the gateway's
	// own origin. Empty: CORS off.
	CORSOrigins []string
}

// Defaults of Options.
const (
	DefaultMaxBodyBytes      = 4 << 20
	DefaultRequestTimeout    = 10 * time.Minute
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultHeaderTimeout     = 10 * time.Second
	DefaultBodyTimeout       = 60 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
)

func (o Options) withDefaults() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = DefaultBodyTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Gate == nil {
		panic("api: Options.Gate is required")
	}
	return o
}

// Route names, used as the metrics' route label.
const (
	routeChat        = "/v1/chat/completions"
	routeCompletions = "/v1/completions"
	routeEmbeddings  = "/v1/embeddings"
	routeRerank      = "/v1/rerank"
)

type server struct {
	b    Backends
	opts Options
	log  *slog.Logger
	met  *metrics.Metrics
	// core runs chat turns (grounding, stored turns, generation, accounting), for
	// HTTP and WebSocket alike.
	core *chat.Service
	// cors is server.cors_origins.
	cors *corsPolicy
}

// New returns a Fiber app with the HTTP routes mounted (the WebSocket protocol is
// mounted beside them by the caller: ws.Mount). Serve it with app.Listener(ln); stop
// it with app.ShutdownWithContext, which waits for HTTP requests (streams included).
func New(b Backends, opts Options) *fiber.App {
	opts = opts.withDefaults()
	s := &server{b: b, opts: opts, log: opts.Logger, met: opts.Metrics}
	s.core = opts.Chat
	if s.core == nil {
		s.core = &chat.Service{Backends: b, Usage: opts.Usage, Metrics: opts.Metrics, Timeout: opts.RequestTimeout, Logger: opts.Logger}
	}
	s.cors = newCORSPolicy(opts.CORSOrigins)
	app := fiber.New(fiber.Config{
		BodyLimit:             opts.MaxBodyBytes,
		ErrorHandler:          s.handleError,
		DisableStartupMessage: true,
		ReadBufferSize:        16 << 10, // request headers up to 16 KiB
		// Nothing taken from a request (parameters, query, headers, form values,
		// the body) may alias fasthttp's buffers, which the next request reuses
		// once the handler returns: values kept for later (background indexing,
		// usage rows, a socket's key, logs) would silently become another
		// request's bytes.
		Immutable:   true,
		ReadTimeout: opts.HeaderTimeout,
		IdleTimeout: opts.IdleTimeout,
		// Bodies are decoded (Content-Encoding) and multipart forms parsed only
		// after the key is checked, under the body limit (decodeBody).
		DisablePreParseMultipartForm: true,
	})
	app.Server().HeaderReceived = s.headerReceived
	app.Server().SecureErrorLogMessage = true // no request bytes in fasthttp's errors
	app.Use(s.recoverPanics, s.requestID, closeUnauthenticated)
	app.Use(newCORS(s.cors))

	app.Get("/healthz", s.healthz)
	app.Get("/readyz", s.readyz)
	if s.met != nil {
		app.Get("/metrics", s.metricsAccess, adaptor.HTTPHandler(promhttp.HandlerFor(s.met.Registry, promhttp.HandlerOpts{})))
	}
	chat := s.requireScope(auth.ScopeChat)
	app.Get("/v1/models", chat, s.listModels)
	app.Get("/v1/models/+", chat, s.getModel)
	app.Post(routeChat, chat, s.instrument(routeChat, s.chatCompletions))
	app.Post(routeCompletions, chat, s.instrument(routeCompletions, s.completions))
	app.Post(routeEmbeddings, chat, s.instrument(routeEmbeddings, s.embeddings))
	app.Post(routeRerank, chat, s.instrument(routeRerank, s.rerank))
	app.Post(routeResponses, chat, s.instrument(routeResponses, s.responses))
	if s.opts.Knowledge != nil {
		s.knowledgeRoutes(app)
	}
	if s.opts.Accounts != nil {
		s.accountRoutes(app)
		s.userRoutes(app)
	}
	if s.opts.Models != nil {
		s.adminRoutes(app)
	}
	if s.opts.Conversations != nil {
		app.Get("/v1/conversations", chat, s.listConversations)
		app.Post("/v1/conversations", chat, s.createConversation)
		app.Get("/v1/conversations/:id", chat, s.getConversation)
		app.Patch("/v1/conversations/:id", chat, s.renameConversation)
		app.Delete("/v1/conversations/:id", chat, s.deleteConversation)
	}
	return app
}

// handleError is the app's ErrorHandler: every error of every route (and
// of fasthttp itself: body too large, bad request line) is written in the
// OpenAI error shape.
func (s *server) handleError(c *fiber.Ctx, err error) error {
	e := toAPIError(err)
	s.cors.mark(c) // errors fasthttp raised before any middleware, too
	var fe *fiber.Error
	if errors.As(err, &fe) && fe.Code == fiber.StatusRequestEntityTooLarge {
		// fasthttp refused the body unread (a decoded body over the limit is
		// decodeBody's own 413, read whole): drain it so that the client reads the
		// answer, and end the connection, whose next bytes are that body's.
		e.Message = fmt.Sprintf("the request body is larger than the limit of %d bytes", s.opts.MaxBodyBytes)
		drainBody(c)
		c.Context().SetConnectionClose()
	}
	if e.Status >= 500 && e.Status != http.StatusServiceUnavailable && e.Status != http.StatusGatewayTimeout {
		cause := e.Message
		if e.Cause != nil {
			cause = e.Cause.Error()
		}
		s.log.Warn("request failed", "method", c.Method(), "path", c.Path(), "status", e.Status, "error", cause)
	}
	return writeError(c, e)
}

func writeError(c *fiber.Ctx, e *oai.Error) error {
	status := e.Status
	if status == oai.StatusClientClosed {
		status = http.StatusBadRequest // nobody is listening; keep the wire status valid
	}
	if status == fiber.StatusTooManyRequests || e.RetryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, e.RetryAfterSeconds())
	}
	if id := reqID(c); id != "" {
		// Some paths (the WebSocket upgrader) reset the response headers.
		c.Set(headerRequestID, id)
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(status).Send(e.Body())
}

// toAPIError maps any error to an API error, Fiber's included.
func toAPIError(err error) *oai.Error {
	var fe *fiber.Error
	if errors.As(err, &fe) {
		return fromFiber(fe)
	}
	return chat.APIError(err)
}

func fromFiber(fe *fiber.Error) *oai.Error {
	e := &oai.Error{Status: fe.Code, Message: fe.Message, Type: oai.TypeInvalidRequest}
	switch fe.Code {
	case fiber.StatusNotFound:
		e.Code = oai.CodeUnknownURL
	case fiber.StatusMethodNotAllowed:
		e.Code = oai.CodeMethodNotAllowed
	case fiber.StatusRequestEntityTooLarge:
		e.Code = oai.CodeTooLarge
	case fiber.StatusBadRequest, fiber.StatusRequestHeaderFieldsTooLarge:
		// fasthttp's parser errors quote the request's bytes (its headers, a key
		// among them) and its own internals: say only what is wrong.
		e.Code = "malformed_request"
		e.Message = "the HTTP request is malformed"
		if fe.Code == fiber.StatusRequestHeaderFieldsTooLarge {
			e.Message = "the request's headers are too large"
		}
	}
	if fe.Code >= 500 {
		e.Type = oai.TypeServer
		e.Code = oai.CodeInternal
	}
	if fe.Code < 400 || fe.Code > 599 {
		e.Status = fiber.StatusInternalServerError
		e.Type = oai.TypeServer
		e.Code = oai.CodeInternal
	}
	return e
}

// recoverPanics turns a panic in a handler into a 500 in the error shape.
func (s *server) recoverPanics(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "method", c.Method(), "path", c.Path(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = oai.Internal()
		}
	}()
	return c.Next()
}

// closeUnauthenticated ends, after its answer, a connection that has not carried an
// authenticated request: it would otherwise hold one of the listener's slots for
// unauthenticated connections while idle (netguard). WebSocket upgrades are left alone.
func closeUnauthenticated(c *fiber.Ctx) error {
	err := c.Next()
	if conn := c.Context().Conn(); conn != nil && !netguard.IsAuthenticated(conn) && c.Response().StatusCode() != fiber.StatusSwitchingProtocols {
		c.Context().SetConnectionClose()
	}
	return err
}

const headerRequestID = "X-Request-Id"

type ctxKey int

const requestIDKey ctxKey = iota

// requestID sets the X-Request-Id response header: the client's, when it is
// a short token, else a fresh random one. Handlers read it with reqID.
func (s *server) requestID(c *fiber.Ctx) error {
	id := c.Get(headerRequestID)
	if !validRequestID(id) {
		id = oai.NewID()
	} else {
		id = string([]byte(id)) // c.Get aliases fasthttp's buffer
	}
	c.Locals(requestIDKey, id)
	c.Set(headerRequestID, id)
	return c.Next()
}

func reqID(c *fiber.Ctx) string {
	id, _ := c.Locals(requestIDKey).(string)
	return id
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// call follows one API request for metrics.
type call struct {
	s     *server
	route string
	// model is the canonical model name once resolved ("" before: the
	// label never carries client-chosen strings).
	model string
	start time.Time
	// streamed is set when the handler handed the response to a stream,
	// which then records the request itself.
	streamed bool
	// principal is the caller.
	principal auth.Principal
}

// instrument wraps an API handler: it records the request's status and
// duration (unless the handler started a stream, which records itself)
// and maps its error to the OpenAI shape.
func (s *server) instrument(route string, h func(*fiber.Ctx, *call) error) fiber.Handler {
	return func(c *fiber.Ctx) error {
		cl := &call{s: s, route: route, start: time.Now(), principal: principalOf(c)}
		err := h(c, cl)
		if cl.streamed {
			return err
		}
		if err != nil {
			e := toAPIError(err)
			cl.finish(e.Status)
			return e
		}
		cl.finish(c.Response().StatusCode())
		return nil
	}
}

// finish records the end of the request with status.
func (cl *call) finish(status int) {
	cl.s.met.ObserveRequest(cl.route, cl.model, status, cl.start)
}

// tokens records the token counts of a served request: metrics, the key's
// tokens-per-minute limit and the usage row.
func (cl *call) tokens(prompt, completion int) {
	cl.s.met.AddTokens(cl.model, prompt, completion)
	if cl.s.opts.Usage != nil {
		cl.s.opts.Usage.Account(cl.principal, cl.route, cl.model, prompt, completion)
	}
}

// resolveModel looks name up for a generation (embedding false) or an
// embedding request and sets cl.model.
// The kinds of model a route serves.
type modelKind int

const (
	kindChat modelKind = iota
	kindEmbedding
	kindRerank
)

func (s *server) resolveModel(cl *call, name string, kind modelKind) (workers.ModelStatus, *oai.Error) {
	if name == "" {
		return workers.ModelStatus{}, oai.Missing("model")
	}
	m, ok := s.b.Model(name)
	if !ok {
		return m, oai.ModelNotFound(name)
	}
	cl.model = m.Name
	switch {
	case kind == kindEmbedding && !m.Embedding:
		return m, oai.Invalid("model", oai.CodeInvalidValue, "the model '%s' is not an embedding model", name)
	case kind == kindRerank && !m.Rerank:
		return m, oai.Invalid("model", oai.CodeInvalidValue, "the model '%s' is not a rerank model", name)
	case kind == kindChat && m.Embedding:
		return m, oai.Invalid("model", oai.CodeInvalidValue, "the model '%s' is an embedding model: use /v1/embeddings", name)
	case kind == kindChat && m.Rerank:
		return m, oai.Invalid("model", oai.CodeInvalidValue, "the model '%s' is a rerank model: use /v1/rerank", name)
	}
	return m, nil
}
