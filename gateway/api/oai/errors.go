package oai

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Error types of the OpenAI error shape.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeRateLimit      = "rate_limit_error"
	TypeServer         = "server_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
)

// Error codes. OpenAI leaves code null for many errors; the gateway sets
// one wherever a client may want to branch on it.
const (
	CodeModelNotFound    = "model_not_found"
	CodeQueueFull        = "queue_full"
	CodeQueueTimeout     = "queue_timeout"
	CodeOverloaded       = "overloaded"
	CodeModelUnavailable = "model_unavailable"
	CodeTimeout          = "timeout"
	CodeBackendError     = "backend_error"
	CodeInvalidType      = "invalid_type"
	CodeInvalidValue     = "invalid_value"
	CodeInvalidJSON      = "invalid_json"
	CodeMissingParam     = "missing_required_parameter"
	CodeUnsupported      = "unsupported"
	CodeUnknownURL       = "unknown_url"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeTooLarge         = "request_too_large"
	CodeInternal         = "internal_error"
	CodeCancelled        = "cancelled"
	CodeMissingKey       = "missing_api_key"
	CodeInvalidKey       = "invalid_api_key"
	CodeRevokedKey       = "revoked_api_key"
	CodeScope            = "insufficient_scope"
	CodeRateLimited      = "rate_limit_exceeded"
	CodeDBUnavailable    = "database_unavailable"
	CodeNotFound         = "not_found"
	CodeConflict         = "conflict"
	CodeDatabase         = "database_error"
)

// StatusClientClosed is the status recorded (never sent) for a request
// whose client went away before the response ended (nginx's 499).
const StatusClientClosed = 499

// Error is an API error: an HTTP status and the body
// {"error":{"message","type","param","code"}}. Empty Param and Code are
// sent as null.
type Error struct {
	Status  int
	Message string
	Type    string
	Param   string
	Code    string
	// RetryAfter, when positive, is sent as a Retry-After header (whole
	// seconds, rounded up, at least 1).
	RetryAfter time.Duration
	// Cause, when set, is what went wrong inside, for the server's log only: a
	// client gets Message.
	Cause error
}

func (e *Error) Error() string { return e.Message }

// RetryAfterSeconds is the Retry-After header value: RetryAfter in whole
// seconds, rounded up, at least 1.
func (e *Error) RetryAfterSeconds() string {
	secs := int64((e.RetryAfter + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return strconv.FormatInt(secs, 10)
}

// AppendJSON appends the inner error object
// {"message":…,"type":…,"param":…,"code":…} to dst.
func (e *Error) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"message":`...)
	dst = AppendString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	dst = AppendString(dst, e.Type)
	dst = append(dst, `,"param":`...)
	dst = appendNullable(dst, e.Param)
	dst = append(dst, `,"code":`...)
	dst = appendNullable(dst, e.Code)
	return append(dst, '}')
}

// Body returns the full error body {"error":{…}}.
func (e *Error) Body() []byte {
	b := make([]byte, 0, 96+len(e.Message))
	b = append(b, `{"error":`...)
	b = e.AppendJSON(b)
	return append(b, '}')
}

func appendNullable(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return AppendString(dst, s)
}

// Invalid returns a 400 invalid_request_error about param.
func Invalid(param, code, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Param: param, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Missing returns the 400 error for a required parameter that is absent.
func Missing(param string) *Error {
	return Invalid(param, CodeMissingParam, "missing required parameter: '%s'", param)
}

// Unsupported returns a 400 error for a parameter value the gateway does
// not support.
func Unsupported(param, format string, args ...any) *Error {
	return Invalid(param, CodeUnsupported, format, args...)
}

// ModelNotFound returns the 404 error for an unknown model name.
func ModelNotFound(name string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Param: "model", Code: CodeModelNotFound,
		Message: fmt.Sprintf("the model '%s' does not exist", name)}
}

// BackendFailed returns the 502 error for a generation the backend
// reported as failed (a final event with FinishReason error). msg, the
// backend's words, is the Cause (for the log): a client reads a fixed message.
func BackendFailed(msg string) *Error {
	if msg == "" {
		msg = "the backend reported a failed generation"
	}
	return &Error{Status: http.StatusBadGateway, Type: TypeServer, Code: CodeBackendError,
		Message: "the model failed while generating the answer; try again", Cause: errors.New(msg)}
}

// FromError maps an error from the workers, a backend, the keys or the store to an
// API error. Messages are fixed sentences for humans: an error's own text (a plugin's
// stderr, Postgres's words, Go's wrapping prefixes) never reaches a client, it is the
// Cause, for the server's log. A parameter is named where one is at fault.
//
//	*Error                                   itself
//	workers.ErrUnknownModel                  404 invalid_request_error model_not_found (param model)
//	workers.ErrPoisonRequest (*PoisonError)  400 invalid_request_error invalid_value (names the request's hash)
//	*workers.QueueFullError                  429 rate_limit_error queue_full, Retry-After
//	workers.ErrQueueTimeout                  429 rate_limit_error queue_timeout, Retry-After 1
//	workers.ErrUnavailable, ErrStopping,
//	sdk.ErrModelNotLoaded                    503 server_error model_unavailable, Retry-After 1
//	sdk.ErrPluginShutdown                    502 server_error backend_error
//	sdk.ErrInvalidRequest                    400 invalid_request_error invalid_value
//	sdk.ErrUnsupported                       400 invalid_request_error unsupported
//	sdk.ErrOverloaded                        429 rate_limit_error overloaded, Retry-After 1
//	context.DeadlineExceeded                 504 server_error timeout
//	context.Canceled                         499 (the client went away; never sent)
//	auth.ErrNoKey, ErrInvalidKey, ErrRevokedKey 401 authentication_error
//	auth.ErrMissingScope                     403 permission_error insufficient_scope
//	*auth.RateLimitError                     429 rate_limit_error rate_limit_exceeded, Retry-After
//	store.ErrUnavailable                     503 server_error database_unavailable, Retry-After 1
//	*store.FieldError                        400 invalid_request_error invalid_value (param: its field)
//	store.ErrNotFound                        404 invalid_request_error not_found
//	store.ErrConflict                        409 invalid_request_error conflict
//	store.ErrInvalid                         400 invalid_request_error invalid_value
//	store.ErrDatabase, ErrSchema             500 server_error database_error
//	anything else                            502 server_error backend_error
func FromError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	e = fromError(err)
	if e.Cause == nil {
		e.Cause = err
	}
	return e
}

func fromError(err error) *Error {
	if e := fromAccessError(err); e != nil {
		return e
	}
	var (
		qf     *workers.QueueFullError
		poison *workers.PoisonError
	)
	switch {
	case errors.As(err, &poison):
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: CodeInvalidValue,
			Message: fmt.Sprintf("this request made the model's backend crash; it is refused and not retried: change its input (request %s)", poison.Hash)}
	case errors.Is(err, workers.ErrPoisonRequest):
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: CodeInvalidValue,
			Message: "this request made the model's backend crash; it is refused and not retried: change its input"}
	case errors.Is(err, workers.ErrUnknownModel):
		return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Param: "model", Code: CodeModelNotFound,
			Message: "the model does not exist"}
	case errors.As(err, &qf):
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: CodeQueueFull, RetryAfter: qf.RetryAfter,
			Message: fmt.Sprintf("the model '%s' is at capacity (its queue is full); try again shortly", qf.Model)}
	case errors.Is(err, workers.ErrQueueTimeout):
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: CodeQueueTimeout, RetryAfter: time.Second,
			Message: "the model was busy for too long: the request timed out waiting for a free slot; try again shortly"}
	case errors.Is(err, workers.ErrStopping):
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: CodeModelUnavailable, RetryAfter: time.Second,
			Message: "the gateway is shutting down; try again shortly"}
	case errors.Is(err, workers.ErrUnavailable), sdk.IsModelNotLoaded(err):
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: CodeModelUnavailable, RetryAfter: time.Second,
			Message: "the model is unavailable right now (none of its processes is ready); try again shortly"}
	case sdk.IsPluginShutdown(err):
		// The full cause (exit status, the plugin's last stderr lines) is
		// for the operator's log and /readyz, not for API clients.
		return &Error{Status: http.StatusBadGateway, Type: TypeServer, Code: CodeBackendError,
			Message: "the model's process stopped while serving the request; try again"}
	case sdk.IsInvalidRequest(err):
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: CodeInvalidValue,
			Message: "the model's backend refused the request as invalid: check the messages and the sampling parameters"}
	case sdk.IsUnsupported(err):
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: CodeUnsupported,
			Message: "the model's backend does not support a parameter or feature of this request"}
	case sdk.IsOverloaded(err):
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: CodeOverloaded, RetryAfter: time.Second,
			Message: "the model is overloaded; try again shortly"}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusGatewayTimeout, Type: TypeServer, Code: CodeTimeout,
			Message: "the request timed out before the model finished"}
	case errors.Is(err, context.Canceled):
		return &Error{Status: StatusClientClosed, Type: TypeServer, Code: CodeCancelled, Message: "the request was cancelled"}
	}
	return &Error{Status: http.StatusBadGateway, Type: TypeServer, Code: CodeBackendError,
		Message: "the model's backend failed to serve the request; try again"}
}

// fromAccessError maps the errors of keys, rate limits and the database, or returns nil.
func fromAccessError(err error) *Error {
	var (
		rl    *auth.RateLimitError
		scope auth.ScopeError
		field *store.FieldError
	)
	switch {
	case errors.Is(err, auth.ErrNoKey):
		return &Error{Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: CodeMissingKey,
			Message: "no API key: send it as 'Authorization: Bearer <key>' (ragway keys create makes one)"}
	case errors.Is(err, auth.ErrRevokedKey):
		return &Error{Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: CodeRevokedKey, Message: "this API key was revoked"}
	case errors.Is(err, auth.ErrInvalidKey):
		return &Error{Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: CodeInvalidKey, Message: "incorrect API key"}
	case errors.As(err, &scope):
		return &Error{Status: http.StatusForbidden, Type: TypePermission, Code: CodeScope,
			Message: fmt.Sprintf("this API key lacks the '%s' scope", scope.Scope)}
	case errors.Is(err, auth.ErrMissingScope):
		return &Error{Status: http.StatusForbidden, Type: TypePermission, Code: CodeScope, Message: "this API key lacks a scope this request needs"}
	case errors.As(err, &rl):
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: CodeRateLimited, RetryAfter: rl.RetryAfter,
			Message: fmt.Sprintf("rate limit exceeded: too many %s per minute for this API key; retry in %ds", rl.Limit, auth.RetryAfterSeconds(rl.RetryAfter))}
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: CodeDBUnavailable, RetryAfter: time.Second,
			Message: "the database is unavailable; try again shortly"}
	case errors.As(err, &field):
		return Invalid(field.Field, CodeInvalidValue, "invalid value for '%s': %s", field.Field, field.Reason)
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: CodeNotFound, Message: "no such object: it does not exist, or it is not yours"}
	case errors.Is(err, store.ErrConflict):
		return &Error{Status: http.StatusConflict, Type: TypeInvalidRequest, Code: CodeConflict, Message: "such an object already exists"}
	case errors.Is(err, store.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: CodeInvalidValue,
			Message: "a value of the request cannot be stored: check the lengths and the text of its fields"}
	case errors.Is(err, store.ErrDatabase), errors.Is(err, store.ErrSchema):
		// The details are the operator's (logged by the server), not the client's.
		return &Error{Status: http.StatusInternalServerError, Type: TypeServer, Code: CodeDatabase, Message: "internal database error; try again"}
	}
	return nil
}

// NotFound returns the 404 for a row (what: "conversation") with that id; another
// user's row gets exactly this answer too.
func NotFound(what, id, param string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: CodeNotFound, Param: param,
		Message: "no " + what + " with id '" + id + "'"}
}

// CheckRAG validates the "rag" object of a chat (HTTP or WebSocket); configured
// tells whether the gateway has retrieval at all.
func CheckRAG(configured bool, p rag.Params) *Error {
	switch {
	case !configured:
		return Unsupported("rag", "this gateway has no retrieval configured")
	case p.KnowledgeBase == "":
		return Missing("rag.knowledge_base")
	case p.TopK < 0 || p.TopK > rag.MaxTopK:
		return Invalid("rag.top_k", CodeInvalidValue, "invalid value for 'rag.top_k': %d; it must be between 1 and %d", p.TopK, rag.MaxTopK)
	}
	return nil
}

// GroundError maps an error of rag.Service.Ground for knowledge base kb.
func GroundError(err error, kb string) *Error {
	if errors.Is(err, store.ErrNotFound) {
		return NoKnowledgeBase(kb, "rag.knowledge_base")
	}
	return FromError(err)
}

// NoKnowledgeBase returns the 404 for a knowledge base (an id or a name) the caller
// does not have.
func NoKnowledgeBase(kb, param string) *Error {
	e := NotFound("knowledge base", kb, param)
	e.Message = "no knowledge base '" + kb + "'"
	return e
}

// NotStored returns the error of an answer whose end could not be stored (err is
// why): always a 5xx server_error, whatever the store said — the request was valid and
// the answer was generated; the server failed to keep it. Its code is
// database_unavailable (503) when Postgres could not be reached, else database_error
// (500); err is the Cause. The answer's text still reaches the client: over SSE and
// WebSocket its tokens went out before this error; over plain HTTP the error body
// carries the completion too (see package api).
func NotStored(err error) *Error {
	e := &Error{Status: http.StatusInternalServerError, Type: TypeServer, Code: CodeDatabase, Cause: err,
		Message: "the answer was generated but not stored: the database failed to save it; the conversation does not hold it"}
	switch {
	case errors.Is(err, store.ErrUnavailable):
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, CodeDBUnavailable, time.Second
		e.Message = "the answer was generated but not stored: the database is unavailable; the conversation does not hold it"
	case errors.Is(err, store.ErrNotFound):
		e.Message = "the answer was generated but not stored: its conversation no longer exists (deleted meanwhile?)"
	}
	return e
}

// Describe is the message of err as clients see it (FromError's).
func Describe(err error) string { return FromError(err).Message }
