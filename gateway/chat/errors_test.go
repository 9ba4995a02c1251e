package chat

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// internals are fragments no client may ever read in an error message: Postgres's
// words, constraint names, package prefixes, a plugin's stderr, Go error chains.
var internals = []string{"store:", "invalid byte sequence", "UTF8", "constraint", "knowledge_bases_", "pq:",
	"stderr", "r13 0x0", "rpc error", "desc =", "context deadline exceeded", "model \"", "option parallel", "0x00"}

func checkClean(t *testing.T, what string, e *oai.Error) {
	t.Helper()
	for _, bad := range internals {
		if strings.Contains(e.Message, bad) {
			t.Errorf("%s: message %q carries %q", what, e.Message, bad)
		}
	}
	if e.Message == "" || !strings.Contains("abcdefghijklmnopqrstuvwxyz", e.Message[:1]) && !strings.Contains("ABCDEFGHIJKLMNOPQRSTUVWXYZ", e.Message[:1]) {
		t.Errorf("%s: message %q is not a sentence for humans", what, e.Message)
	}
}

func TestErrorsCarryNoInternals(t *testing.T) {
	pgNUL := &pq.Error{Code: "22021", Message: `invalid byte sequence for encoding "UTF8": 0x00`}
	pgCheck := &pq.Error{Code: "23514", Message: `new row for relation "knowledge_bases" violates check constraint "knowledge_bases_name_check"`}
	stderrTail := "exit status 2; stderr: SIGSEGV: segmentation violation | r13 0x0 | r14 0xc000012345"
	cases := []struct {
		name   string
		err    error
		status int
		typ    string
		code   string
	}{
		{"unavailable with stderr", fmt.Errorf("model %q: %w: %s", "chat", workers.ErrUnavailable, stderrTail), 503, oai.TypeServer, oai.CodeModelUnavailable},
		{"queue timeout", fmt.Errorf("model %q: %w (%s)", "chat", workers.ErrQueueTimeout, 30*time.Second), 429, oai.TypeRateLimit, oai.CodeQueueTimeout},
		{"stopping", workers.ErrStopping, 503, oai.TypeServer, oai.CodeModelUnavailable},
		{"unknown model", fmt.Errorf("%w: %q", workers.ErrUnknownModel, "nope"), 404, oai.TypeInvalidRequest, oai.CodeModelNotFound},
		{"queue full", &workers.QueueFullError{Model: "chat", RetryAfter: 2 * time.Second}, 429, oai.TypeRateLimit, oai.CodeQueueFull},
		{"plugin invalid request", sdk.InvalidRequestf("option parallel: must be >= 1; stderr: r13 0x0"), 400, oai.TypeInvalidRequest, oai.CodeInvalidValue},
		{"plugin unsupported", fmt.Errorf("%w: stop_token_ids and min_tokens (rpc error: code = Unimplemented desc = x)", sdk.ErrUnsupported), 400, oai.TypeInvalidRequest, oai.CodeUnsupported},
		{"plugin overloaded", fmt.Errorf("%w: rpc error: code = ResourceExhausted desc = slots", sdk.ErrOverloaded), 429, oai.TypeRateLimit, oai.CodeOverloaded},
		{"deadline", fmt.Errorf("generate: %w (rpc error: code = DeadlineExceeded desc = context deadline exceeded)", context.DeadlineExceeded), 504, oai.TypeServer, oai.CodeTimeout},
		{"anything else", errors.New("rpc error: code = Unknown desc = llama_decode returned -3; stderr: r13 0x0"), 502, oai.TypeServer, oai.CodeBackendError},
		{"store not found", fmt.Errorf("store: get conversation: %w", store.ErrNotFound), 404, oai.TypeInvalidRequest, oai.CodeNotFound},
		{"store conflict", fmt.Errorf("store: create knowledge base: %w: Key (user_id, name)=(x, y) already exists.", store.ErrConflict), 409, oai.TypeInvalidRequest, oai.CodeConflict},
		{"store invalid from Postgres", fmt.Errorf("store: create knowledge base: %w: %s", store.ErrInvalid, pgCheck.Message), 400, oai.TypeInvalidRequest, oai.CodeInvalidValue},
		{"store database", fmt.Errorf("store: begin turn: %w: %w", store.ErrDatabase, pgNUL), 500, oai.TypeServer, oai.CodeDatabase},
		{"missing scope", auth.ScopeError{Scope: "ingest"}, 403, oai.TypePermission, oai.CodeScope},
		{"rate limit", fmt.Errorf("auth: %w", &auth.RateLimitError{Limit: "requests", RetryAfter: time.Second}), 429, oai.TypeRateLimit, oai.CodeRateLimited},
	}
	for _, c := range cases {
		e := APIError(c.err)
		if e.Status != c.status || e.Type != c.typ || e.Code != c.code {
			t.Errorf("%s: %d %s %s, want %d %s %s", c.name, e.Status, e.Type, e.Code, c.status, c.typ, c.code)
		}
		checkClean(t, c.name, e)
		if e.Cause == nil {
			t.Errorf("%s: no Cause for the log", c.name)
		}
		if d := Describe(c.err); d != e.Message {
			t.Errorf("%s: Describe %q, APIError %q", c.name, d, e.Message)
		}
	}
	if e := oai.BackendFailed("ggml_abort at ggml.c:1234; stderr: r13 0x0"); e.Status != http.StatusBadGateway || e.Cause == nil {
		t.Errorf("BackendFailed: %+v", e)
	} else {
		checkClean(t, "BackendFailed", e)
	}
	// The model a queue is full for is not an internal: it is what the client asked for.
	if e := APIError(&workers.QueueFullError{Model: "chat", RetryAfter: time.Second}); !strings.Contains(e.Message, "'chat'") {
		t.Errorf("queue full: %q does not name the model", e.Message)
	}
}

// TestPoisonRequestIsAClientError: a request that killed replicas is refused as the
// client's, with no trace of the plugin's crash.
func TestPoisonRequestIsAClientError(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("generate: %w", &workers.PoisonError{Model: "chat", Hash: "0123456789abcdef"}),
		fmt.Errorf("generate: %w", &workers.PoisonError{Model: "chat", Hash: "0123456789abcdef", Quarantined: true}),
		fmt.Errorf("model %q: %w; stderr: r13 0x0", "chat", workers.ErrPoisonRequest),
	} {
		e := APIError(err)
		if e.Status != http.StatusBadRequest || e.Type != oai.TypeInvalidRequest || e.Code != oai.CodeInvalidValue || e.Cause == nil {
			t.Errorf("%v: %+v", err, e)
		}
		checkClean(t, "poison", e)
	}
}

func TestFieldErrorsNameTheParam(t *testing.T) {
	err := fmt.Errorf("store: create knowledge base: %w", &store.FieldError{Field: "description", Reason: "it contains a NUL character (U+0000), which cannot be stored"})
	e := APIError(err)
	if e.Status != 400 || e.Param != "description" || e.Code != oai.CodeInvalidValue || !strings.Contains(e.Message, "'description'") {
		t.Errorf("field error: %+v", e)
	}
	checkClean(t, "field error", e)
}

// TestNotStoredIsAServerError: an answer that was generated and could not be stored
// is the server's failure, whatever the store said.
func TestNotStoredIsAServerError(t *testing.T) {
	pgNUL := &pq.Error{Code: "22021", Message: `invalid byte sequence for encoding "UTF8": 0x00`}
	for name, err := range map[string]error{
		"invalid":     fmt.Errorf("store the answer: store: finish message: %w: %s", store.ErrInvalid, pgNUL.Message),
		"field":       fmt.Errorf("store the answer: %w", &store.FieldError{Field: "content", Reason: "it contains a NUL character"}),
		"not found":   fmt.Errorf("store the answer: store: finish message: %w", store.ErrNotFound),
		"deadlock":    fmt.Errorf("store the answer: store: finish message: %w: %w", store.ErrDatabase, &pq.Error{Code: "40P01", Message: "deadlock detected"}),
		"unavailable": fmt.Errorf("store the answer: store: finish message: %w: %w", store.ErrUnavailable, errors.New("dial tcp: connection refused")),
	} {
		e := NotStored(err)
		if e.Status < 500 || e.Type != oai.TypeServer || e.Param != "" {
			t.Errorf("%s: %d %s %s param %q, want a 5xx server_error", name, e.Status, e.Type, e.Code, e.Param)
		}
		if e.Code != oai.CodeDatabase && e.Code != oai.CodeDBUnavailable {
			t.Errorf("%s: code %s", name, e.Code)
		}
		if !strings.Contains(e.Message, "not stored") {
			t.Errorf("%s: message %q does not say the answer was not stored", name, e.Message)
		}
		checkClean(t, name, e)
		if !errors.Is(e.Cause, err) {
			t.Errorf("%s: Cause %v", name, e.Cause)
		}
	}
}

func TestWrappedAPIErrorsPassThrough(t *testing.T) {
	e := &oai.Error{Status: 429, Message: "m", Type: oai.TypeRateLimit, Code: oai.CodeQueueFull}
	if APIError(errors.Join(e)) != e {
		t.Error("a wrapped *oai.Error is not returned as is")
	}
}
