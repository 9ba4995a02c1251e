package workers

import (
	"errors"
	"fmt"
	"slices"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// State is a replica's lifecycle state.
type State string

// Replica states. A replica moves starting → loading → ready ⇄ busy →
// draining → stopped; after a crash it goes back to starting (after a
// backoff) or, when it keeps crashing, to failed. A failed replica keeps
// retrying at the longest backoff.
const (
	StateStarting State = "starting"
	StateLoading  State = "loading"
	StateReady    State = "ready"
	StateBusy     State = "busy"
	StateDraining State = "draining"
	StateStopped  State = "stopped"
	StateFailed   State = "failed"
	StateIdle     State = "idle" // scaled to zero, started on demand
)

// AllStates lists every state, for metrics.
var AllStates = []State{StateStarting, StateLoading, StateReady, StateBusy, StateDraining, StateStopped, StateFailed, StateIdle}

// ModelStatus describes a model and its replicas.
type ModelStatus struct {
	Name      string
	Aliases   []string
	Backend   string
	Embedding bool
	// Rerank marks a rerank model (config rerank: true).
	Rerank  bool
	Created time.Time
	// ContextLength as reported by the plugin's Load (0 until loaded).
	ContextLength int
	// MaxInputTokens is, for an embedding model, the most tokens one input
	// may have (Tokenize counts them; a longer one needs
	// EmbedRequest.Truncate), as reported by the plugin's Load: 0 until
	// loaded, or when the plugin does not say.
	MaxInputTokens int
	// Capabilities are what the model's plugin said it can do when a replica last
	// loaded (nil until one did).
	Capabilities []sdk.Capability
	Replicas     []ReplicaStatus
	// Queued is the number of requests waiting for a replica.
	Queued int
}

// Lacks reports whether the model's plugin is known not to have capability c (false
// while no replica has loaded: it is not known then).
func (m ModelStatus) Lacks(c sdk.Capability) bool {
	return m.Capabilities != nil && !slices.Contains(m.Capabilities, c)
}

// serviceable reports whether a replica in state s serves requests or will
// soon (ready, busy, starting, loading, idle).
func (s State) serviceable() bool {
	switch s {
	case StateReady, StateBusy, StateStarting, StateLoading, StateIdle:
		return true
	}
	return false
}

// Serviceable reports whether the model has a replica that is ready or
// can become ready (starting, loading, busy or idle).
func (m ModelStatus) Serviceable() bool {
	for _, r := range m.Replicas {
		if r.State.serviceable() {
			return true
		}
	}
	return false
}

// ReplicaStatus describes one replica.
type ReplicaStatus struct {
	ID          int
	State       State
	Pid         int
	Restarts    int
	Outstanding int
	LastError   string
	Since       time.Time
	// ColdStarts counts the replica's starts from idle (scale to zero) on a
	// request; LastColdStart is how long the last one took.
	ColdStarts    int
	LastColdStart time.Duration
}

// Errors the dispatcher returns; the HTTP layer maps them to statuses.
var (
	// ErrUnknownModel: no model or alias has that name (404).
	ErrUnknownModel = errors.New("model not found")
	// ErrUnavailable: no replica is ready and none is starting (503).
	ErrUnavailable = errors.New("no replica available")
	// ErrQueueTimeout: the request waited for a replica longer than the
	// queue timeout (503).
	ErrQueueTimeout = errors.New("timed out waiting for a free replica")
	// ErrStopping: the gateway is shutting down (503).
	ErrStopping = errors.New("gateway is shutting down")
	// ErrConflict: a change names a model or alias already in use, or a model that
	// changed meanwhile (409).
	ErrConflict = errors.New("conflict")
	// errRetired: the pool was replaced or removed; the model's name is to be
	// resolved again (the Manager does).
	errRetired = errors.New("model replaced or removed")
)

// QueueFullError is returned when a model's queue is full (429).
type QueueFullError struct {
	Model      string
	RetryAfter time.Duration
}

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("model %q is at capacity: its queue is full", e.Model)
}
