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
// reported as failed (a final event with FinishReason error).
func BackendFailed(msg string) *Error {
	if msg == "" {
		msg = "the backend failed to generate"
	}
	return &Error{Status: http.StatusBadGateway, Type: TypeServer, Code: CodeBackendError, Message: "backend error: " + msg}
}

// FromError maps an error from the workers or a backend to an API error:
//
//	*Error                                   itself
//	workers.ErrUnknownModel                  404 invalid_request_error model_not_found (param model)
//	*workers.QueueFullError                  429 rate_limit_error queue_full, Retry-After
//	workers.ErrUnavailable, ErrQueueTimeout,
//	ErrStopping                              503 server_error model_unavailable
//	sdk.ErrInvalidRequest                    400 invalid_request_error invalid_value
//	sdk.ErrUnsupported                       400 invalid_request_error unsupported
//	sdk.ErrOverloaded                        429 rate_limit_error overloaded, Retry-After 1
//	context.DeadlineExceeded                 504 server_error timeout
//	context.Canceled                         499 (the client went away; never sent)
//	auth.ErrNoKey, ErrInvalidKey, ErrRevokedKey 401 authentication_error
//	auth.ErrMissingScope                     403 permission_error insufficient_scope
//	*auth.RateLimitError                     429 rate_limit_error rate_limit_exceeded, Retry-After
//	store.ErrUnavailable                     503 server_error database_unavailable, Retry-After 1
//	store.ErrNotFound                        404 invalid_request_error not_found
//	store.ErrConflict                        409 invalid_request_error conflict
//	store.ErrInvalid                         400 invalid_request_error invalid_value
//	store.ErrDatabase, ErrSchema             500 server_error database_error (no details)
//	anything else (sdk.ErrPluginShutdown…)   502 server_error backend_error
func FromError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if e := fromAccessError(err); e != nil {
		return e
	}
	var qf *workers.QueueFullError
	switch {
	case errors.Is(err, workers.ErrUnknownModel):
		return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Param: "model", Code: CodeModelNotFound, Message: err.Error()}
	case errors.As(err, &qf):
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: CodeQueueFull, Message: err.Error(), RetryAfter: qf.RetryAfter}
	case errors.Is(err, workers.ErrQueueTimeout):
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: CodeQueueTimeout, Message: err.Error(), RetryAfter: time.Second}
	case errors.Is(err, workers.ErrUnavailable), errors.Is(err, workers.ErrStopping), sdk.IsModelNotLoaded(err):
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: CodeModelUnavailable, Message: err.Error(), RetryAfter: time.Second}
	case sdk.IsPluginShutdown(err):
		// The full cause (exit status, the plugin's last stderr lines) is
		// for the operator's log and /readyz, not for API clients.
		return &Error{Status: http.StatusBadGateway, Type: TypeServer, Code: CodeBackendError, Message: "backend error: the model's plugin process stopped while serving the request"}
	case sdk.IsInvalidRequest(err):
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: CodeInvalidValue, Message: err.Error()}
	case sdk.IsUnsupported(err):
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: CodeUnsupported, Message: err.Error()}
	case sdk.IsOverloaded(err):
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: CodeOverloaded, Message: err.Error(), RetryAfter: time.Second}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusGatewayTimeout, Type: TypeServer, Code: CodeTimeout, Message: "the request timed out: " + err.Error()}
	case errors.Is(err, context.Canceled):
		return &Error{Status: StatusClientClosed, Type: TypeServer, Code: CodeCancelled, Message: "the request was cancelled"}
	}
	return &Error{Status: http.StatusBadGateway, Type: TypeServer, Code: CodeBackendError, Message: "backend error: " + err.Error()}
}

// fromAccessError maps the errors of keys, rate limits and the database, or returns nil.
func fromAccessError(err error) *Error {
	var rl *auth.RateLimitError
	switch {
	case errors.Is(err, auth.ErrNoKey):
		return &Error{Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: CodeMissingKey,
			Message: "no API key: send it as 'Authorization: Bearer <key>' (ragway keys create makes one)"}
	case errors.Is(err, auth.ErrRevokedKey):
		return &Error{Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: CodeRevokedKey, Message: "this API key was revoked"}
	case errors.Is(err, auth.ErrInvalidKey):
		return &Error{Status: http.StatusUnauthorized, Type: TypeAuthentication, Code: CodeInvalidKey, Message: "incorrect API key"}
	case errors.Is(err, auth.ErrMissingScope):
		return &Error{Status: http.StatusForbidden, Type: TypePermission, Code: CodeScope, Message: err.Error()}
	case errors.As(err, &rl):
		return &Error{Status: http.StatusTooManyRequests, Type: TypeRateLimit, Code: CodeRateLimited, Message: err.Error(), RetryAfter: rl.RetryAfter}
	case errors.Is(err, store.ErrUnavailable):
		return &Error{Status: http.StatusServiceUnavailable, Type: TypeServer, Code: CodeDBUnavailable, RetryAfter: time.Second,
			Message: "the database is unavailable; try again shortly"}
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: CodeNotFound, Message: err.Error()}
	case errors.Is(err, store.ErrConflict):
		return &Error{Status: http.StatusConflict, Type: TypeInvalidRequest, Code: CodeConflict, Message: err.Error()}
	case errors.Is(err, store.ErrInvalid):
		return &Error{Status: http.StatusBadRequest, Type: TypeInvalidRequest, Code: CodeInvalidValue, Message: err.Error()}
	case errors.Is(err, store.ErrDatabase), errors.Is(err, store.ErrSchema):
		// The details are the operator's (logged by the server), not the client's.
		return &Error{Status: http.StatusInternalServerError, Type: TypeServer, Code: CodeDatabase, Message: "internal database error", Cause: err}
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

// NotStored returns the error of an answer whose end could not be stored.
func NotStored(err error) *Error {
	e := *FromError(err)
	e.Message = "the answer was not stored: " + e.Message
	return &e
}

// Describe is the message of err as clients see it (FromError's).
func Describe(err error) string { return FromError(err).Message }
