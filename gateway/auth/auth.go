package auth

import (
	"container/list"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// Principal is an authenticated caller: the key used and its owner.
type Principal struct {
	KeyID    string
	Prefix   string
	UserID   string
	UserName string
	Scopes   []string
	// RPMLimit and TPMLimit are requests and tokens per minute; 0 means unlimited.
	RPMLimit int
	TPMLimit int
	// DailyTokenQuota and MonthlyTokenQuota are the user's token quotas (UTC days and
	// months, over all the user's keys and every gateway); 0: none.
	DailyTokenQuota   int64
	MonthlyTokenQuota int64
	// Session marks a website session (a key of kind session).
	Session bool
	// ExpiresAt is when the key stops being accepted (zero: never).
	ExpiresAt time.Time
}

// Has reports whether p carries scope.
func (p Principal) Has(scope string) bool {
	return slices.Contains(p.Scopes, scope)
}

// KeyStore is what an [Authenticator] needs of the database (*store.Store has it).
type KeyStore interface {
	// APIKeyByPrefix returns the key with that prefix, revoked or not; store.ErrNotFound
	// if there is none, an error wrapping store.ErrUnavailable if the database cannot
	// be reached.
	APIKeyByPrefix(ctx context.Context, prefix string) (store.APIKey, error)
	// TouchAPIKey records the key's last use.
	TouchAPIKey(ctx context.Context, id string, at time.Time) error
}

var _ KeyStore = (*store.Store)(nil)

// Options tunes an [Authenticator]. Zero values take the defaults.
type Options struct {
	// StaleFor is how long after its last successful validation a key is still
	// accepted while the database is unavailable. Default 5m.
	StaleFor time.Duration
	// TouchEvery is the least time between two updates of a key's last use.
	// Default 1m.
	TouchEvery time.Duration
	// Logger receives debug messages about failed last-use updates. Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of [Options].
const (
	DefaultStaleFor   = 5 * time.Minute
	DefaultTouchEvery = time.Minute
)

const (
	// maxRemembered bounds the keys remembered for stale-if-error.
	maxRemembered = 10_000
	// touchTimeout bounds one last-use update.
	touchTimeout = 10 * time.Second
)

// Authenticator checks API keys against a [KeyStore]. It is safe for concurrent use.
//
// Every call asks the store, so a revoked key is refused at once. A key validated less
// than Options.StaleFor ago is still accepted while the store is unavailable
// (stale-if-error). A key's last use is recorded in the background, at most once per
// Options.TouchEvery.
type Authenticator struct {
	ks         KeyStore
	staleFor   time.Duration
	touchEvery time.Duration
	log        *slog.Logger
	now        func() time.Time

	mu         sync.Mutex
	known      map[string]*list.Element // prefix → element of order, value *validated
	order      *list.List               // least recently validated first
	maxEntries int

	touches sync.WaitGroup // last-use updates in flight
}

// validated is a key the store accepted.
type validated struct {
	prefix    string
	hash      []byte
	principal Principal
	at        time.Time // when the store last accepted it
	touchedAt time.Time // when its last use was last recorded (zero: never)
}

// New returns an Authenticator over ks.
func New(ks KeyStore, opts Options) *Authenticator {
	a := &Authenticator{
		ks:         ks,
		staleFor:   opts.StaleFor,
		touchEvery: opts.TouchEvery,
		log:        opts.Logger,
		now:        opts.Now,
		known:      map[string]*list.Element{},
		order:      list.New(),
		maxEntries: maxRemembered,
	}
	if a.staleFor <= 0 {
		a.staleFor = DefaultStaleFor
	}
	if a.touchEvery <= 0 {
		a.touchEvery = DefaultTouchEvery
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	return a
}

// Authenticate returns the principal of key. Errors: ErrNoKey (key is empty),
// ErrInvalidKey (malformed, unknown, or a wrong secret), ErrRevokedKey, or an error
// wrapping store.ErrUnavailable when the store cannot be reached and key was not
// validated recently enough to be accepted without it.
func (a *Authenticator) Authenticate(ctx context.Context, key string) (Principal, error) {
	if key == "" {
		return Principal{}, ErrNoKey
	}
	prefix, ok := PrefixOf(key)
	if !ok {
		return Principal{}, ErrInvalidKey
	}
	hash := Hash(key)
	k, err := a.ks.APIKeyByPrefix(ctx, prefix)
	switch {
	case err == nil:
	case errors.Is(err, store.ErrNotFound):
		a.Forget(prefix)
		return Principal{}, ErrInvalidKey
	case errors.Is(err, store.ErrUnavailable):
		return a.stale(prefix, hash, err)
	default:
		return Principal{}, fmt.Errorf("authenticate key %s: %w", prefix, err)
	}
	if subtle.ConstantTimeCompare(k.Hash, hash) != 1 {
		return Principal{}, ErrInvalidKey
	}
	if k.Revoked() {
		a.Forget(prefix)
		return Principal{}, ErrRevokedKey
	}
	if k.Expired(a.now()) {
		a.Forget(prefix)
		return Principal{}, ErrExpiredKey
	}
	p := Principal{
		KeyID:    k.ID,
		Prefix:   k.Prefix,
		UserID:   k.UserID,
		UserName: k.UserName,
		Scopes:   slices.Clone(k.Scopes),
		RPMLimit: k.RPMLimit,
		TPMLimit: k.TPMLimit,

		DailyTokenQuota:   k.DailyTokenQuota,
		MonthlyTokenQuota: k.MonthlyTokenQuota,

		Session:   k.Kind == store.KindSession,
		ExpiresAt: k.ExpiresAt,
	}
	if a.remember(prefix, hash, p) {
		a.touch(p.KeyID, prefix)
	}
	return p, nil
}

// stale answers for key (prefix, hash) when the store failed with storeErr
// (unavailable): the remembered principal if the same key was validated less than
// staleFor ago.
func (a *Authenticator) stale(prefix string, hash []byte, storeErr error) (Principal, error) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	el, ok := a.known[prefix]
	if !ok {
		return Principal{}, fmt.Errorf("authenticate key %s: %w", prefix, storeErr)
	}
	v := el.Value.(*validated)
	if subtle.ConstantTimeCompare(v.hash, hash) != 1 {
		// The store matched this prefix to another secret moments ago.
		return Principal{}, ErrInvalidKey
	}
	if now.Sub(v.at) >= a.staleFor {
		return Principal{}, fmt.Errorf("authenticate key %s: %w (and its last validation is older than %s)",
			prefix, storeErr, a.staleFor)
	}
	p := v.principal
	if !p.ExpiresAt.IsZero() && !now.Before(p.ExpiresAt) {
		return Principal{}, ErrExpiredKey
	}
	p.Scopes = slices.Clone(p.Scopes)
	return p, nil
}

// remember records that the store accepted key (prefix, hash) as p, and reports
// whether its last use is due to be recorded (and marks it recorded if so).
func (a *Authenticator) remember(prefix string, hash []byte, p Principal) (touch bool) {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var v *validated
	if el, ok := a.known[prefix]; ok {
		v = el.Value.(*validated)
		a.order.MoveToBack(el)
	} else {
		v = &validated{prefix: prefix}
		a.known[prefix] = a.order.PushBack(v)
		for a.order.Len() > a.maxEntries {
			oldest := a.order.Front()
			a.order.Remove(oldest)
			delete(a.known, oldest.Value.(*validated).prefix)
		}
	}
	v.hash, v.principal, v.at = hash, p, now
	if v.touchedAt.IsZero() || now.Sub(v.touchedAt) >= a.touchEvery {
		v.touchedAt = now
		return true
	}
	return false
}

// Forget drops what is remembered of prefix (the key is gone or revoked, here or, told
// by the change feed, through another gateway): it is not accepted while the store is
// unavailable.
func (a *Authenticator) Forget(prefix string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if el, ok := a.known[prefix]; ok {
		a.order.Remove(el)
		delete(a.known, prefix)
	}
}

// touch records the key's last use in the background.
func (a *Authenticator) touch(id, prefix string) {
	at := a.now()
	a.touches.Add(1)
	go func() {
		defer a.touches.Done()
		ctx, cancel := context.WithTimeout(context.Background(), touchTimeout)
		defer cancel()
		if err := a.ks.TouchAPIKey(ctx, id, at); err != nil {
			a.log.Debug("record API key use", "prefix", prefix, "error", err)
		}
	}()
}

// Wait waits for the last-use updates in flight to end (each is bounded by a
// timeout). Call it at shutdown, before closing the store.
func (a *Authenticator) Wait() { a.touches.Wait() }

// The scopes a key can carry (the store's names): what a route or protocol
// requires of the caller.
const (
	ScopeChat   = store.ScopeChat
	ScopeIngest = store.ScopeIngest
	ScopeAdmin  = store.ScopeAdmin
)
