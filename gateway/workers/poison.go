package workers

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/ragway/ragway/gateway/metrics"
)

// A poison request is one whose replica died under it twice: an input that
// crashes the plugin (a bug in the backend) would otherwise take down every
// replica of a shared model in turn, each retry on the next one. The
// dispatcher retries a request once after its replica died (the death may be
// unrelated to the request); after a second death it gives up, answers
// ErrPoisonRequest and remembers the request's hash for a while, so that the
// same request sent again is refused before it reaches a replica.

// ErrPoisonRequest is what a request that made the model's backend crash
// twice is answered with (directly, or when it is sent again while its hash is
// quarantined). Errors wrapping it are *PoisonError. The HTTP layer answers it
// as a client error (400): retrying it cannot help.
var ErrPoisonRequest = errors.New("this request made the model's backend crash twice; it is not retried")

// PoisonError reports a poison request. Its message names the model and the
// request's hash, never the request's text nor the backend's output.
type PoisonError struct {
	Model string
	// Hash identifies the request in the gateway's log: the first 16 hex
	// digits of the SHA-256 of its canonical bytes.
	Hash string
	// Quarantined is set when the request was refused without being run
	// because the same request crashed the backend twice shortly before.
	Quarantined bool
}

func (e *PoisonError) Error() string {
	if e.Quarantined {
		return fmt.Sprintf("model %q: this request made the model's backend crash twice recently; it is refused without being run (request %s)", e.Model, e.Hash)
	}
	return fmt.Sprintf("model %q: %s (request %s)", e.Model, ErrPoisonRequest, e.Hash)
}

// Is makes errors.Is(err, ErrPoisonRequest) true.
func (e *PoisonError) Is(target error) bool { return target == ErrPoisonRequest }

// Poison quarantine defaults.
const (
	DefaultPoisonWindow = 10 * time.Minute
	DefaultPoisonMemory = 1024
)

// requestKey is the SHA-256 of a request's canonical bytes: its kind
// ("generate", "embed", "tokenize") and its JSON encoding (struct fields in
// declaration order, map keys sorted; invalid UTF-8 becomes U+FFFD, as on
// every other text path of the gateway). Callers clear per-call fields (the
// request id) first, so that the same request sent again has the same key.
type requestKey [sha256.Size]byte

func keyOf(kind string, req any) requestKey {
	b, err := json.Marshal(struct {
		Kind string
		Req  any
	}{kind, req})
	if err != nil {
		// Requests are plain data and always encode; should one not, it
		// still gets a key of its own (not shared with any other request).
		b = fmt.Appendf(nil, "%s\x00%#v", kind, req)
	}
	return sha256.Sum256(b)
}

// String is the short hash logged and reported: 16 hex digits.
func (k requestKey) String() string { return hex.EncodeToString(k[:8]) }

// quarantine remembers the keys of poison requests for window, at most
// memory of them (the least recently seen are forgotten first). It is safe
// for concurrent use.
type quarantine struct {
	window time.Duration
	memory int
	now    func() time.Time

	mu    sync.Mutex
	order *list.List // of *quarantined, most recently seen first
	byKey map[requestKey]*list.Element
}

type quarantined struct {
	key   requestKey
	until time.Time
}

func newQuarantine(window time.Duration, memory int, now func() time.Time) *quarantine {
	return &quarantine{window: window, memory: memory, now: now, order: list.New(), byKey: map[requestKey]*list.Element{}}
}

// add quarantines k for the window from now.
func (q *quarantine) add(k requestKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	until := q.now().Add(q.window)
	if e, ok := q.byKey[k]; ok {
		e.Value.(*quarantined).until = until
		q.order.MoveToFront(e)
		return
	}
	q.byKey[k] = q.order.PushFront(&quarantined{key: k, until: until})
	for q.order.Len() > q.memory {
		q.forget(q.order.Back())
	}
}

// has reports whether k is quarantined; an expired entry is forgotten.
func (q *quarantine) has(k requestKey) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.byKey[k]
	if !ok {
		return false
	}
	if !q.now().Before(e.Value.(*quarantined).until) {
		q.forget(e)
		return false
	}
	q.order.MoveToFront(e)
	return true
}

// len is the number of keys remembered (expired ones included until looked up
// or pushed out).
func (q *quarantine) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.order.Len()
}

func (q *quarantine) forget(e *list.Element) {
	delete(q.byKey, e.Value.(*quarantined).key)
	q.order.Remove(e)
}

// poisonMetrics counts poison requests by model and outcome: "crashed"
// (answered after its second replica death) or "refused" (quarantined).
// It lives in the Metrics' registry; Managers sharing a registry share it.
func poisonMetrics(m *metrics.Metrics) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ragway_poison_requests_total",
		Help: "Requests during which two replicas died (outcome crashed), and the same requests refused while quarantined (outcome refused), by model.",
	}, []string{"model", "outcome"})
	if err := m.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
		// Another collector with the same name but another shape: count
		// without exporting rather than fail the gateway.
		return c
	}
	return c
}
