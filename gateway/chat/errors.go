package chat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// APIError maps an error from the workers, a backend, the keys or the store to an
// API error. Messages are fixed sentences for humans: an error's own text (a plugin's
// stderr, Postgres's words, Go's wrapping prefixes) never reaches a client, it is the
// Cause, for the server's log. A parameter is named where one is at fault.
//
//	*oai.Error                                   itself
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
//	*auth.QuotaError                         429 rate_limit_error quota_exceeded (names the quota and its reset), Retry-After
//	store.ErrUnavailable                     503 server_error database_unavailable, Retry-After 1
//	*store.FieldError                        400 invalid_request_error invalid_value (param: its field)
//	store.ErrNotFound                        404 invalid_request_error not_found
//	*store.ConflictError                     409 invalid_request_error conflict (param: its field)
//	store.ErrConflict                        409 invalid_request_error conflict
//	store.ErrInvalid                         400 invalid_request_error invalid_value
//	store.ErrDatabase, ErrSchema             500 server_error database_error
//	anything else                            502 server_error backend_error
func APIError(err error) *oai.Error {
	var e *oai.Error
	if errors.As(err, &e) {
		return e
	}
	e = fromError(err)
	if e.Cause == nil {
		e.Cause = err
	}
	return e
}

func fromError(err error) *oai.Error {
	if e := fromAccessError(err); e != nil {
		return e
	}
	var (
		qf     *workers.QueueFullError
		poison *workers.PoisonError
	)
	switch {
	case errors.As(err, &poison):
		return &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: oai.CodeInvalidValue,
			Message: fmt.Sprintf("this request made the model's backend crash; it is refused and not retried: change its input (request %s)", poison.Hash)}
	case errors.Is(err, workers.ErrPoisonRequest):
		return &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: oai.CodeInvalidValue,
			Message: "this request made the model's backend crash; it is refused and not retried: change its input"}
	case errors.Is(err, workers.ErrUnknownModel):
		return &oai.Error{Status: http.StatusNotFound, Type: oai.TypeInvalidRequest, Param: "model", Code: oai.CodeModelNotFound,
			Message: "the model does not exist"}
	case errors.As(err, &qf):
		return &oai.Error{Status: http.StatusTooManyRequests, Type: oai.TypeRateLimit, Code: oai.CodeQueueFull, RetryAfter: qf.RetryAfter,
			Message: fmt.Sprintf("the model '%s' is at capacity (its queue is full); try again shortly", qf.Model)}
	case errors.Is(err, workers.ErrQueueTimeout):
		return &oai.Error{Status: http.StatusTooManyRequests, Type: oai.TypeRateLimit, Code: oai.CodeQueueTimeout, RetryAfter: time.Second,
			Message: "the model was busy for too long: the request timed out waiting for a free slot; try again shortly"}
	case errors.Is(err, workers.ErrStopping):
		return &oai.Error{Status: http.StatusServiceUnavailable, Type: oai.TypeServer, Code: oai.CodeModelUnavailable, RetryAfter: time.Second,
			Message: "the gateway is shutting down; try again shortly"}
	case errors.Is(err, workers.ErrUnavailable), sdk.IsModelNotLoaded(err):
		return &oai.Error{Status: http.StatusServiceUnavailable, Type: oai.TypeServer, Code: oai.CodeModelUnavailable, RetryAfter: time.Second,
			Message: "the model is unavailable right now (none of its processes is ready); try again shortly"}
	case sdk.IsPluginShutdown(err):
		// The full cause (exit status, the plugin's last stderr lines) is
		// for the operator's log and /readyz, not for API clients.
		return &oai.Error{Status: http.StatusBadGateway, Type: oai.TypeServer, Code: oai.CodeBackendError,
			Message: "the model's process stopped while serving the request; try again"}
	case sdk.IsInvalidRequest(err):
		return &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: oai.CodeInvalidValue,
			Message: "the model's backend refused the request as invalid: check the messages and the sampling parameters"}
	case sdk.IsUnsupported(err):
		return &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: oai.CodeUnsupported,
			Message: "the model's backend does not support a parameter or feature of this request"}
	case sdk.IsOverloaded(err):
		return &oai.Error{Status: http.StatusTooManyRequests, Type: oai.TypeRateLimit, Code: oai.CodeOverloaded, RetryAfter: time.Second,
			Message: "the model is overloaded; try again shortly"}
	case errors.Is(err, context.DeadlineExceeded):
		return &oai.Error{Status: http.StatusGatewayTimeout, Type: oai.TypeServer, Code: oai.CodeTimeout,
			Message: "the request timed out before the model finished"}
	case errors.Is(err, context.Canceled):
		return &oai.Error{Status: oai.StatusClientClosed, Type: oai.TypeServer, Code: oai.CodeCancelled, Message: "the request was cancelled"}
	}
	return &oai.Error{Status: http.StatusBadGateway, Type: oai.TypeServer, Code: oai.CodeBackendError,
		Message: "the model's backend failed to serve the request; try again"}
}

// fromAccessError maps the errors of keys, rate limits and the database, or returns nil.
func fromAccessError(err error) *oai.Error {
	var (
		rl       *auth.RateLimitError
		quota    *auth.QuotaError
		scope    auth.ScopeError
		field    *store.FieldError
		conflict *store.ConflictError
	)
	switch {
	case errors.Is(err, auth.ErrNoKey):
		return &oai.Error{Status: http.StatusUnauthorized, Type: oai.TypeAuthentication, Code: oai.CodeMissingKey,
			Message: "no API key: send it as 'Authorization: Bearer <key>' (ragway keys create makes one)"}
	case errors.Is(err, auth.ErrExpiredKey):
		return &oai.Error{Status: http.StatusUnauthorized, Type: oai.TypeAuthentication, Code: oai.CodeRevokedKey, Message: "this session has expired: sign in again"}
	case errors.Is(err, auth.ErrRevokedKey):
		return &oai.Error{Status: http.StatusUnauthorized, Type: oai.TypeAuthentication, Code: oai.CodeRevokedKey, Message: "this API key was revoked"}
	case errors.Is(err, auth.ErrInvalidKey):
		return &oai.Error{Status: http.StatusUnauthorized, Type: oai.TypeAuthentication, Code: oai.CodeInvalidKey, Message: "incorrect API key"}
	case errors.As(err, &scope):
		return &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: oai.CodeScope,
			Message: fmt.Sprintf("this API key lacks the '%s' scope", scope.Scope)}
	case errors.Is(err, auth.ErrMissingScope):
		return &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: oai.CodeScope, Message: "this API key lacks a scope this request needs"}
	case errors.As(err, &rl):
		return &oai.Error{Status: http.StatusTooManyRequests, Type: oai.TypeRateLimit, Code: oai.CodeRateLimited, RetryAfter: rl.RetryAfter,
			Message: fmt.Sprintf("rate limit exceeded: too many %s per minute for this API key; retry in %ds", rl.Limit, auth.RetryAfterSeconds(rl.RetryAfter))}
	case errors.As(err, &quota):
		// The message is the error's own: it names the quota and when it resets.
		return &oai.Error{Status: http.StatusTooManyRequests, Type: oai.TypeRateLimit, Code: oai.CodeQuotaExceeded,
			RetryAfter: max(time.Until(quota.ResetAt), time.Second), Message: quota.Error()}
	case errors.Is(err, store.ErrUnavailable):
		return &oai.Error{Status: http.StatusServiceUnavailable, Type: oai.TypeServer, Code: oai.CodeDBUnavailable, RetryAfter: time.Second,
			Message: "the database is unavailable; try again shortly"}
	case errors.As(err, &field):
		return oai.Invalid(field.Field, oai.CodeInvalidValue, "invalid value for '%s': %s", field.Field, field.Reason)
	case errors.Is(err, store.ErrNotFound):
		return &oai.Error{Status: http.StatusNotFound, Type: oai.TypeInvalidRequest, Code: oai.CodeNotFound, Message: "no such object: it does not exist, or it is not yours"}
	case errors.As(err, &conflict):
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: oai.CodeConflict, Param: conflict.Field, Message: conflict.Reason}
	case errors.Is(err, store.ErrConflict):
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: oai.CodeConflict, Message: "such an object already exists"}
	case errors.Is(err, store.ErrInvalid):
		return &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: oai.CodeInvalidValue,
			Message: "a value of the request cannot be stored: check the lengths and the text of its fields"}
	case errors.Is(err, store.ErrDatabase), errors.Is(err, store.ErrSchema):
		// The details are the operator's (logged by the server), not the client's.
		return &oai.Error{Status: http.StatusInternalServerError, Type: oai.TypeServer, Code: oai.CodeDatabase, Message: "internal database error; try again"}
	}
	return nil
}

// CheckRAG validates the "rag" object of a chat (HTTP or WebSocket); configured
// tells whether the gateway has retrieval at all.
func CheckRAG(configured bool, p rag.Params) *oai.Error {
	switch {
	case !configured:
		return oai.Unsupported("rag", "this gateway has no retrieval configured")
	case p.KnowledgeBase == "":
		return oai.Missing("rag.knowledge_base")
	case p.TopK < 0 || p.TopK > rag.MaxTopK:
		return oai.Invalid("rag.top_k", oai.CodeInvalidValue, "invalid value for 'rag.top_k': %d; it must be between 1 and %d", p.TopK, rag.MaxTopK)
	}
	return nil
}

// GroundError maps an error of rag.Service.Ground for knowledge base kb.
func GroundError(err error, kb string) *oai.Error {
	if errors.Is(err, store.ErrNotFound) {
		return oai.NoKnowledgeBase(kb, "rag.knowledge_base")
	}
	return APIError(err)
}

// NotStored returns the error of an answer whose end could not be stored (err is
// why): always a 5xx server_error, whatever the store said — the request was valid and
// the answer was generated; the server failed to keep it. Its code is
// database_unavailable (503) when Postgres could not be reached, else database_error
// (500); err is the Cause. The answer's text still reaches the client: over SSE and
// WebSocket its tokens went out before this error; over plain HTTP the error body
// carries the completion too (see package api).
func NotStored(err error) *oai.Error {
	e := &oai.Error{Status: http.StatusInternalServerError, Type: oai.TypeServer, Code: oai.CodeDatabase, Cause: err,
		Message: "the answer was generated but not stored: the database failed to save it; the conversation does not hold it"}
	switch {
	case errors.Is(err, store.ErrUnavailable):
		e.Status, e.Code, e.RetryAfter = http.StatusServiceUnavailable, oai.CodeDBUnavailable, time.Second
		e.Message = "the answer was generated but not stored: the database is unavailable; the conversation does not hold it"
	case errors.Is(err, store.ErrNotFound):
		e.Message = "the answer was generated but not stored: its conversation no longer exists (deleted meanwhile?)"
	}
	return e
}

// Describe is the message of err as clients see it (APIError's).
func Describe(err error) string { return APIError(err).Message }
