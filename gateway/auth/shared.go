package auth

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// LimitStore holds the keys' shared buckets (*store.Store implements it).
type LimitStore interface {
	TakeLimits(ctx context.Context, takes []store.LimitTake) ([]store.LimitLevel, error)
}

// Timing of a SharedLimiter.
const (
	// SyncEvery is how often tokens spent here are debited from the shared buckets,
	// their levels read back, and idle leases given back.
	SyncEvery = 250 * time.Millisecond
	// leaseIdle is how long requests leased and not used stay here before they are
	// given back for other gateways.
	leaseIdle = 2 * time.Second
	// tokensStale is the age of a tokens level past which a request reads it again
	// before it is admitted.
	tokensStale = 4 * SyncEvery
	// sharedIdleDrop: a key unused this long, with nothing to give back or debit, is
	// forgotten.
	sharedIdleDrop = 10 * time.Minute
)

// SharedLimiter enforces keys' limits for the sum over every gateway on one database:
// each key has one bucket in Postgres (store.TakeLimits). A gateway leases requests
// from it a few at a time (a twentieth of a minute's allowance, at least one), so that
// most requests cost no round trip and no gateway ever admits more than the bucket
// granted; it gives back what it did not use within two seconds. Tokens are charged
// after the fact (a request's size is known at its end): debited every SyncEvery,
// with the level read back, and a request is admitted while the key's level, less
// what this gateway spent since, is positive — as over one gateway, a key may
// overdraw by what its requests in flight use, and here by what other gateways spent
// in the last SyncEvery too.
//
// When the database cannot be reached, each gateway falls back to its own buckets
// (Local): a key then gets at most its limits per gateway.
type SharedLimiter struct {
	Store LimitStore
	// Local is the fallback while the database is unavailable.
	Local *Limiter
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time

	mu       sync.Mutex // guards keys; taken before a key's own mutex, never after
	keys     map[string]*sharedKey
	failing  atomic.Bool // the last round trip failed: logged once
	initOnce sync.Once
}

// sharedKey is what this gateway holds of a key's shared bucket.
type sharedKey struct {
	mu       sync.Mutex // one round trip at a time for a key
	p        Principal  // its latest limits
	lease    int        // requests leased and not used
	used     time.Time  // last request admitted
	tokens   float64    // the shared tokens level at synced
	synced   time.Time  // zero: never read
	spent    int64      // tokens spent here, not yet debited
	debiting int64      // of which a round trip is debiting now
}

func (l *SharedLimiter) init() {
	l.initOnce.Do(func() {
		if l.Now == nil {
			l.Now = time.Now
		}
		if l.Logger == nil {
			l.Logger = slog.Default()
		}
		if l.Local == nil {
			l.Local = NewLimiter(l.Now)
		}
		l.keys = map[string]*sharedKey{}
	})
}

// leaseSize is how many requests a gateway leases at a time for a limit of rpm.
func leaseSize(rpm int) int { return max(1, rpm/20) }

func (l *SharedLimiter) key(p Principal) *sharedKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.keys[p.KeyID]
	if k == nil {
		k = &sharedKey{}
		l.keys[p.KeyID] = k
	}
	return k
}

// Admit implements RateLimiter: one request of p's allowance, from a lease of the
// key's shared bucket (leasing more when this gateway has none left), while the key's
// tokens level is positive.
func (l *SharedLimiter) Admit(ctx context.Context, p Principal) (time.Duration, error) {
	if p.RPMLimit <= 0 && p.TPMLimit <= 0 {
		return 0, nil
	}
	l.init()
	k := l.key(p)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.p = p
	now := l.Now()
	needLease := p.RPMLimit > 0 && k.lease == 0
	staleTokens := p.TPMLimit > 0 && now.Sub(k.synced) > tokensStale
	if needLease || staleTokens {
		want := 0
		if needLease {
			want = leaseSize(p.RPMLimit)
		}
		spent := k.spent - k.debiting
		lv, err := l.Store.TakeLimits(ctx, []store.LimitTake{{KeyID: p.KeyID, RPM: p.RPMLimit, TPM: p.TPMLimit, Requests: want, Tokens: spent}})
		if err != nil {
			l.fail(err)
			return l.Local.Admit(ctx, p)
		}
		l.recovered()
		k.spent -= spent
		k.lease += lv[0].Granted
		k.tokens, k.synced = lv[0].TokensLeft, now
	}
	if p.TPMLimit > 0 {
		if left := k.tokens - float64(k.spent); left <= 0 {
			// The time until the bucket refills to a positive level.
			wait := time.Duration(math.Ceil((1-left)*float64(time.Minute)/float64(p.TPMLimit))) + time.Millisecond
			return wait, &RateLimitError{Limit: LimitTokens, RetryAfter: wait}
		}
	}
	if p.RPMLimit > 0 {
		if k.lease == 0 {
			wait := time.Minute / time.Duration(p.RPMLimit)
			return wait, &RateLimitError{Limit: LimitRequests, RetryAfter: wait}
		}
		k.lease--
	}
	k.used = now
	_, _ = l.Local.Admit(ctx, p) // kept in step for a fallback; its verdict is not this one
	return 0, nil
}

// Spend implements RateLimiter: the tokens are debited from the key's shared bucket at
// the next sync.
func (l *SharedLimiter) Spend(p Principal, tokens int) {
	if p.TPMLimit <= 0 || tokens <= 0 {
		return
	}
	l.init()
	k := l.key(p)
	k.mu.Lock()
	k.p = p
	k.spent += int64(tokens)
	k.mu.Unlock()
	l.Local.Spend(p, tokens)
}

// Run syncs every SyncEvery until ctx ends, then gives back what it leased.
func (l *SharedLimiter) Run(ctx context.Context) {
	l.init()
	tick := time.NewTicker(SyncEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			// Leases and spends go back to the shared buckets: the next gateway to
			// serve the keys starts from what is true.
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			l.sync(c, true)
			cancel()
			return
		case <-tick.C:
			l.sync(ctx, false)
		}
	}
}

// sync debits the tokens spent here, gives back leases idle for leaseIdle (all of
// them when final) and reads back the tokens levels of the keys in use, in one round
// trip.
func (l *SharedLimiter) sync(ctx context.Context, final bool) {
	now := l.Now()
	type part struct {
		k    *sharedKey
		take store.LimitTake
	}
	var parts []part
	l.mu.Lock()
	for id, k := range l.keys {
		k.mu.Lock()
		idle := now.Sub(k.used)
		t := store.LimitTake{KeyID: id, RPM: k.p.RPMLimit, TPM: k.p.TPMLimit, Tokens: k.spent}
		if k.lease > 0 && (final || idle >= leaseIdle) {
			t.Requests = -k.lease
			k.lease = 0
		}
		used := k.p.TPMLimit > 0 && idle < time.Minute
		switch {
		case t.Requests != 0 || t.Tokens != 0 || (used && !final):
			k.debiting = t.Tokens
			parts = append(parts, part{k, t})
		case idle >= sharedIdleDrop:
			delete(l.keys, id)
		}
		k.mu.Unlock()
	}
	l.mu.Unlock()
	if len(parts) == 0 {
		return
	}
	takes := make([]store.LimitTake, len(parts))
	for i, p := range parts {
		takes[i] = p.take
	}
	levels, err := l.Store.TakeLimits(ctx, takes)
	for i, p := range parts {
		k := p.k
		k.mu.Lock()
		if err != nil {
			k.lease -= p.take.Requests // not given back: still here (Requests ≤ 0)
		} else {
			k.spent -= p.take.Tokens
			k.tokens, k.synced = levels[i].TokensLeft, now
		}
		k.debiting = 0
		k.mu.Unlock()
	}
	if err != nil {
		l.fail(err)
		return
	}
	l.recovered()
}

func (l *SharedLimiter) fail(err error) {
	if l.failing.CompareAndSwap(false, true) {
		l.Logger.Warn("shared rate limits unavailable: each gateway applies the limits alone until the database answers", "error", err)
	}
}

func (l *SharedLimiter) recovered() {
	if l.failing.CompareAndSwap(true, false) {
		l.Logger.Info("shared rate limits available again")
	}
}
