package auth

import (
	"context"
	"sync"
	"time"
)

const (
	// idleDrop: the buckets of a key unused this long are dropped once full again
	// (a full bucket is what a key without one gets, so nothing is forgotten).
	idleDrop = 10 * time.Minute
	// sweepEvery is the least time between two sweeps for idle buckets.
	sweepEvery = time.Minute
	// MaxLimit is the largest limit a Limiter enforces: a limit above it (requests or
	// tokens per minute) counts as MaxLimit.
	MaxLimit = 100_000_000
)

// Limiter enforces the per-key limits of principals: requests per minute and tokens
// per minute, each a token bucket that holds a burst (Burst) and refills continuously
// at the limit, so that a key gets at most its limit plus the burst in any minute. Its
// arithmetic is exact (integers, to the nanosecond). It is safe for concurrent use.
type Limiter struct {
	now func() time.Time

	mu        sync.Mutex
	keys      map[string]*buckets // key id → its buckets
	lastSweep time.Time
}

// buckets are one key's two buckets.
type buckets struct {
	requests bucket
	tokens   bucket
	updated  time.Time
}

// bucket is a token bucket of limit per minute that holds Burst(limit) tokens. Its
// level is counted in units of 1/60e9 of a token (one token is time.Minute units), so
// that it gains exactly limit units per nanosecond. A limit of 0 means the bucket is
// not enforced.
type bucket struct {
	limit int64
	level int64 // ≤ capacity(); negative after an overspend, down to minLevel
}

// Burst is what a bucket of limit per minute holds: a tenth of the limit, at least 1.
// A key may spend it at once, then what refills at the limit: in any minute, at most
// limit + Burst(limit) (10 % over the limit, like a provider enforcing 60 requests a
// minute as one a second with a little slack).
func Burst(limit int) int {
	l := clampLimit(limit)
	return int(max(1, (l+9)/10))
}

const (
	unit     = int64(time.Minute)   // units per token
	minLevel = -MaxLimit * unit / 2 // the deepest debt kept (with capacity, fits in an int64 difference)
)

func newBucket(limit int) bucket {
	b := bucket{limit: clampLimit(limit)}
	b.level = b.capacity()
	return b
}

func clampLimit(limit int) int64 {
	return int64(min(max(limit, 0), MaxLimit))
}

func (b *bucket) capacity() int64 { return int64(Burst(int(b.limit))) * unit }

// refill adds what b gains in d (> 0), up to its capacity.
func (b *bucket) refill(d time.Duration) {
	if b.limit == 0 {
		return
	}
	missing := b.capacity() - b.level
	if missing <= 0 {
		return
	}
	if int64(d) >= (missing+b.limit-1)/b.limit {
		b.level = b.capacity()
		return
	}
	b.level += int64(d) * b.limit // < missing + limit: no overflow
}

// untilLevel is the time until b holds at least level units (0 if it does).
func (b *bucket) untilLevel(level int64) time.Duration {
	need := level - b.level
	if need <= 0 {
		return 0
	}
	return time.Duration((need + b.limit - 1) / b.limit)
}

// take removes n tokens (the level stays ≥ minLevel).
func (b *bucket) take(n int64) {
	if n > (b.level-minLevel)/unit {
		b.level = minLevel
		return
	}
	b.level -= n * unit
}

// setLimit adapts b to a new limit: a bucket that was not enforced starts full, one
// that was is capped at its new capacity.
func (b *bucket) setLimit(limit int) {
	l := clampLimit(limit)
	if l == b.limit {
		return
	}
	was := b.limit
	b.limit = l
	if was == 0 {
		b.level = b.capacity()
	}
	b.level = min(b.level, b.capacity())
}

func (b *bucket) full() bool { return b.level >= b.capacity() }

// NewLimiter returns a Limiter on the clock now (nil: time.Now).
func NewLimiter(now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{now: now, keys: map[string]*buckets{}}
}

// refill brings the buckets to now.
func (b *buckets) refill(now time.Time) {
	if d := now.Sub(b.updated); d > 0 {
		b.requests.refill(d)
		b.tokens.refill(d)
		b.updated = now
	}
}

// get returns p's buckets, refilled to now, made full if p had none; their limits
// follow p's. l.mu must be held.
func (l *Limiter) get(p Principal, now time.Time) *buckets {
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	b, ok := l.keys[p.KeyID]
	if !ok {
		b = &buckets{requests: newBucket(p.RPMLimit), tokens: newBucket(p.TPMLimit), updated: now}
		l.keys[p.KeyID] = b
		return b
	}
	b.refill(now)
	b.requests.setLimit(p.RPMLimit)
	b.tokens.setLimit(p.TPMLimit)
	return b
}

// sweep drops the buckets of keys idle for idleDrop that are full again. l.mu must be
// held.
func (l *Limiter) sweep(now time.Time) {
	l.lastSweep = now
	for id, b := range l.keys {
		if now.Sub(b.updated) < idleDrop {
			continue
		}
		b.refill(now)
		if b.requests.full() && b.tokens.full() {
			delete(l.keys, id)
		}
	}
}

// Admit takes one request of p's allowance. It returns a *RateLimitError (wrapping
// ErrRateLimited) and the time until the key may make its next request when no
// request is left in the key's allowance or its token balance is not positive (tokens
// are charged after the fact by [Limiter.Spend], so a request may overdraw it). When
// both limits refuse, the longer wait is reported. A key whose limits are both 0 is
// never limited.
func (l *Limiter) Admit(_ context.Context, p Principal) (retryAfter time.Duration, err error) {
	if p.RPMLimit <= 0 && p.TPMLimit <= 0 {
		return 0, nil
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(p, now)
	var reqWait, tokWait time.Duration
	if b.requests.limit > 0 {
		reqWait = b.requests.untilLevel(unit) // one whole request
	}
	if b.tokens.limit > 0 {
		tokWait = b.tokens.untilLevel(1) // a positive balance
	}
	switch {
	case reqWait == 0 && tokWait == 0:
		if b.requests.limit > 0 {
			b.requests.take(1)
		}
		return 0, nil
	case reqWait >= tokWait:
		return reqWait, &RateLimitError{Limit: LimitRequests, RetryAfter: reqWait}
	default:
		return tokWait, &RateLimitError{Limit: LimitTokens, RetryAfter: tokWait}
	}
}

// Spend charges tokens to p's tokens-per-minute balance, which may go negative.
func (l *Limiter) Spend(p Principal, tokens int) {
	if p.TPMLimit <= 0 || tokens <= 0 {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.get(p, now).tokens.take(int64(tokens))
}
