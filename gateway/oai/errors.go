package oai

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
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
	CodeQuotaExceeded    = "quota_exceeded"
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

// NotFound returns the 404 for a row (what: "conversation") with that id; another
// user's row gets exactly this answer too.
func NotFound(what, id, param string) *Error {
	return &Error{Status: http.StatusNotFound, Type: TypeInvalidRequest, Code: CodeNotFound, Param: param,
		Message: "no " + what + " with id '" + id + "'"}
}

// NoKnowledgeBase returns the 404 for a knowledge base (an id or a name) the caller
// does not have.
func NoKnowledgeBase(kb, param string) *Error {
	e := NotFound("knowledge base", kb, param)
	e.Message = "no knowledge base '" + kb + "'"
	return e
}

// Internal is the error of a fault of the gateway itself (a recovered panic): 500,
// saying nothing of it (the cause goes to the log).
func Internal() *Error {
	return &Error{Status: http.StatusInternalServerError, Type: TypeServer, Code: CodeInternal, Message: "internal server error"}
}
