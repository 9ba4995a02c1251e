package auth

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// LimitStore holds the keys' shared buckets and the users' quota usage (*store.Store
// implements it).
type LimitStore interface {
	TakeLimits(ctx context.Context, takes []store.LimitTake) ([]store.LimitLevel, error)
	AddQuotaUsage(ctx context.Context, adds []store.QuotaAdd) ([]store.QuotaUsage, error)
}

// Timing of a SharedLimiter.
const (
	// SyncEvery is how often tokens spent here are debited from the shared buckets,
	// their levels read back, and idle leases given back.
	SyncEvery = 250 * time.Millisecond
	// leaseIdle is how long requests leased and not used stay here, the key idle,
	// before they are given back for other gateways.
	leaseIdle = 2 * time.Second
	// leaseValid is how long after its last round trip for a key this gateway uses
	// requests leased for it: the database counts them as leased for 3 s after that
	// (store.TakeLimits), and a lease it no longer counts must not be used. Syncs
	// refresh the leases held every SyncEvery.
	leaseValid = 2 * time.Second
	// roundTripTimeout bounds one round trip to the shared buckets.
	roundTripTimeout = 2 * time.Second
	// tokensStale is the age of a tokens level past which a request reads it again
	// before it is admitted.
	tokensStale = 4 * SyncEvery
	// sharedIdleDrop: a key unused this long, with nothing to give back or debit, is
	// forgotten.
	sharedIdleDrop = 10 * time.Minute
	// outageRetry is how long after a failed round trip requests skip the shared
	// buckets (the local ones decide) instead of each waiting on a database that is
	// away; the syncs keep trying meanwhile.
	outageRetry = time.Second
)

// SharedLimiter enforces keys' limits for the sum over every gateway on one database:
// each key has one bucket in Postgres (store.TakeLimits), holding a burst (Burst) and
// refilled at the limit, as over one gateway. A gateway leases requests from it a few
// at a time (a quarter of the burst, at least one), so that most requests cost no
// round trip; the bucket counts the requests leased and not yet used as its own, so
// that requests in the bucket and in every gateway's leases never exceed the burst,
// and a key gets at most its limit plus the burst in any minute over all gateways. A
// gateway says which leased requests it used, and gives back the ones it did not use
// once the key is idle for two seconds, as it syncs; a lease it could not refresh for
// leaseValid is dropped. Tokens are charged
// after the fact (a request's size is known at its end): debited every SyncEvery,
// with the level read back, and a request is admitted while the key's level, less
// what this gateway spent since, is positive — as over one gateway, a key may
// overdraw by what its requests in flight use, and here by what other gateways spent
// in the last SyncEvery too.
//
// Users' token quotas (daily, monthly; UTC) are counted the same way: the tokens a
// user's requests used are added to the user's usage in Postgres every SyncEvery, the
// totals read back, and a request is admitted while the user's usage, with what this
// gateway counted since, is below the quota; refused, it is a *QuotaError.
//
// When the database cannot be reached, each gateway falls back to its own buckets
// (Local): a key then gets at most its limits per gateway; quotas hold with the last
// usage read (a user first seen during the outage is not held to them).
type SharedLimiter struct {
	Store LimitStore
	// Local is the fallback while the database is unavailable.
	Local *Limiter
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Now defaults to time.Now.
	Now func() time.Time

	wake     chan struct{} // kick: sync now
	mu       sync.Mutex    // guards keys and users; taken before their own mutexes, never after
	keys     map[string]*sharedKey
	users    map[string]*sharedUser
	failing  atomic.Bool  // the last round trip failed: logged once
	awayTill atomic.Int64 // until then (Unix ns) requests skip the database: it failed
	initOnce sync.Once
}

// sharedKey is what this gateway holds of a key's shared bucket.
type sharedKey struct {
	mu      sync.Mutex // one round trip at a time for a key
	p       Principal  // its latest limits
	lease   int        // requests leased and not used
	leaseAt time.Time  // the lease's last round trip: usable until leaseAt+leaseValid
	taken   int        // requests of the lease used and not yet said
	unsure  bool       // a round trip failed: the next sync asks what the lease is
	empty   time.Time  // until then the bucket had nothing to lease: refused here
	used    time.Time  // last request admitted
	tokens  float64    // the shared tokens level at synced
	synced  time.Time  // zero: never read
	spent   int64      // tokens spent here, not yet debited
	// dropped: forgotten by a sync (no longer in keys); whoever locks it after
	// takes the key's new entry instead.
	dropped bool
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
		l.users = map[string]*sharedUser{}
		l.wake = make(chan struct{}, 1)
	})
}

// sharedUser is what this gateway holds of a user's quota usage.
type sharedUser struct {
	mu     sync.Mutex // one round trip at a time for a user
	quotas bool       // the user has a quota (a request said so)
	used   time.Time  // last request admitted
	day    int64      // the day's usage at synced
	month  int64      // the month's usage at synced
	synced time.Time  // zero: never read
	spent  int64      // tokens counted here, not yet added
	perReq float64    // tokens a request of the user uses, on average (recent)
	// dropped: forgotten by a sync (no longer in users); whoever locks it after
	// takes the user's new entry instead.
	dropped bool
}

// near reports whether u's usage is close to one of p's quotas: within a tenth of it,
// or four requests' worth. Close to a quota, requests read the usage before they are
// admitted and tokens counted are added at once, so that the gateways together
// overshoot a quota by little more than what requests in flight use.
func (u *sharedUser) near(p Principal, now time.Time) bool {
	day, month := u.usage(now)
	margin := func(quota int64) int64 { return max(quota/10, int64(4*u.perReq)) }
	return p.DailyTokenQuota > 0 && day >= p.DailyTokenQuota-margin(p.DailyTokenQuota) ||
		p.MonthlyTokenQuota > 0 && month >= p.MonthlyTokenQuota-margin(p.MonthlyTokenQuota)
}

// usage is u's usage of the current day and month at now, with what was counted here
// since: a period that ended since the last read starts from nothing.
func (u *sharedUser) usage(now time.Time) (day, month int64) {
	day, month = u.day, u.month
	if !sameDay(u.synced, now) {
		day = 0
	}
	if !sameMonth(u.synced, now) {
		month = 0
	}
	return day + u.spent, month + u.spent
}

func sameDay(a, b time.Time) bool {
	a, b = a.UTC(), b.UTC()
	return a.YearDay() == b.YearDay() && a.Year() == b.Year()
}

func sameMonth(a, b time.Time) bool {
	a, b = a.UTC(), b.UTC()
	return a.Month() == b.Month() && a.Year() == b.Year()
}

// nextDay and nextMonth are when the UTC day and month of t end.
func nextDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}

func nextMonth(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m+1, 1, 0, 0, 0, 0, time.UTC)
}

// lockedUser returns the user id's entry, locked (u.mu).
func (l *SharedLimiter) lockedUser(id string) *sharedUser {
	for {
		l.mu.Lock()
		u := l.users[id]
		if u == nil {
			u = &sharedUser{}
			l.users[id] = u
		}
		l.mu.Unlock()
		u.mu.Lock()
		if !u.dropped {
			return u
		}
		u.mu.Unlock() // forgotten by a sync meanwhile: a new entry
	}
}

// checkQuotas refuses a request of p whose user's quota is used up, reading the
// user's usage first when what this gateway knows is stale.
func (l *SharedLimiter) checkQuotas(ctx context.Context, p Principal, now time.Time) *QuotaError {
	u := l.lockedUser(p.UserID)
	defer u.mu.Unlock()
	u.quotas, u.used = true, now
	stale := now.Sub(u.synced) > tokensStale || !sameDay(u.synced, now) || u.near(p, now)
	if stale && l.away(now) {
		// The database failed a moment ago: decide on what is known.
		if u.synced.IsZero() {
			return nil // nothing: not held to it while the database is away
		}
		stale = false
	}
	if stale {
		add := u.spent
		got, err := l.addUsage(ctx, []store.QuotaAdd{{UserID: p.UserID, Tokens: add}})
		if err != nil {
			if u.synced.IsZero() {
				return nil // nothing known: not held to it while the database is away
			}
		} else {
			u.spent -= add
			u.day, u.month, u.synced = got[0].Day, got[0].Month, now
		}
	}
	day, month := u.usage(now)
	switch {
	case p.DailyTokenQuota > 0 && day >= p.DailyTokenQuota:
		return &QuotaError{Period: "daily", Quota: p.DailyTokenQuota, ResetAt: nextDay(now)}
	case p.MonthlyTokenQuota > 0 && month >= p.MonthlyTokenQuota:
		return &QuotaError{Period: "monthly", Quota: p.MonthlyTokenQuota, ResetAt: nextMonth(now)}
	}
	return nil
}

// leaseSize is how many requests a gateway leases at a time for a limit of rpm: a
// quarter of the bucket's burst, at least one, so that a few gateways leasing at
// once leave some for the others.
func leaseSize(rpm int) int { return max(1, Burst(rpm)/4) }

// take is k's part in a TakeLimits round trip: the requests it leases (negative:
// gives back), what it used of its lease and the tokens it spent.
func (k *sharedKey) take(requests int) store.LimitTake {
	p := k.p
	return store.LimitTake{KeyID: p.KeyID, RPM: p.RPMLimit, RPMBurst: Burst(p.RPMLimit), TPM: p.TPMLimit, TPMBurst: Burst(p.TPMLimit),
		Requests: requests, Used: k.taken, Tokens: k.spent}
}

// settled records a round trip made with t, started at now, answered with lv: the
// lease is what the database counts as this gateway's (a give-back or a grant whose
// answer was lost, a lease that lapsed, are settled here), usable until now +
// leaseValid (the database counts it 3 s from the call, which is after now).
func (k *sharedKey) settled(t store.LimitTake, lv store.LimitLevel, now time.Time) {
	k.taken -= t.Used
	k.spent -= t.Tokens
	k.lease, k.unsure = lv.Leased, false
	if k.lease > 0 {
		k.leaseAt = now
	}
	k.tokens, k.synced = lv.TokensLeft, now
}

// unsettled records a round trip made with t that failed: whether the database
// applied it is unknown, so the lease is not used until a round trip says what it
// is (the database may have given it back, or let it lapse).
func (k *sharedKey) unsettled() {
	k.lease, k.unsure = 0, true
}

// roundTrip runs one TakeLimits call, on a bounded context, and notes its outcome.
func (l *SharedLimiter) roundTrip(ctx context.Context, takes []store.LimitTake) ([]store.LimitLevel, error) {
	c, cancel := bounded(ctx)
	defer cancel()
	lv, err := l.Store.TakeLimits(c, takes)
	l.noted(err)
	return lv, err
}

// lockedKey returns p's key's entry, locked (k.mu).
func (l *SharedLimiter) lockedKey(p Principal) *sharedKey {
	for {
		l.mu.Lock()
		k := l.keys[p.KeyID]
		if k == nil {
			k = &sharedKey{}
			l.keys[p.KeyID] = k
		}
		l.mu.Unlock()
		k.mu.Lock()
		if !k.dropped {
			return k
		}
		k.mu.Unlock() // forgotten by a sync meanwhile: a new entry
	}
}

// Admit implements RateLimiter: one request of p's allowance, from a lease of the
// key's shared bucket (leasing more when this gateway has none left), while the key's
// tokens level is positive.
func (l *SharedLimiter) Admit(ctx context.Context, p Principal) (time.Duration, error) {
	hasQuota := p.DailyTokenQuota > 0 || p.MonthlyTokenQuota > 0
	if p.RPMLimit <= 0 && p.TPMLimit <= 0 && !hasQuota {
		return 0, nil
	}
	l.init()
	if hasQuota {
		if q := l.checkQuotas(ctx, p, l.Now()); q != nil {
			return q.ResetAt.Sub(l.Now()), q
		}
		if p.RPMLimit <= 0 && p.TPMLimit <= 0 {
			return 0, nil
		}
	}
	k := l.lockedKey(p)
	defer k.mu.Unlock()
	k.p = p
	now := l.Now()
	if k.lease > 0 && now.Sub(k.leaseAt) >= leaseValid {
		k.lease = 0 // no longer counted by the database: not ours to use
	}
	if p.RPMLimit > 0 && k.lease == 0 && now.Before(k.empty) {
		// The bucket was empty a moment ago: a client hammering a spent key costs no
		// round trip per request.
		wait := k.empty.Sub(now)
		return wait, &RateLimitError{Limit: LimitRequests, RetryAfter: wait}
	}
	needLease := p.RPMLimit > 0 && k.lease == 0
	staleTokens := p.TPMLimit > 0 && now.Sub(k.synced) > tokensStale
	if (needLease || staleTokens) && l.away(now) {
		return l.Local.Admit(ctx, p)
	}
	if needLease || staleTokens {
		want := 0
		if needLease {
			want = leaseSize(p.RPMLimit)
		}
		t := k.take(want)
		lv, err := l.roundTrip(ctx, []store.LimitTake{t})
		if err != nil {
			k.unsettled()
			return l.Local.Admit(ctx, p)
		}
		k.settled(t, lv[0], now)
		if needLease && lv[0].Granted == 0 {
			k.empty = now.Add(time.Minute / time.Duration(p.RPMLimit))
		}
	}
	if p.TPMLimit > 0 {
		if left := k.tokens - float64(k.spent); left <= 0 {
			// The time until the bucket refills to a positive level.
			wait := time.Duration(math.Ceil(-left*float64(time.Minute)/float64(p.TPMLimit))) + time.Millisecond
			return wait, &RateLimitError{Limit: LimitTokens, RetryAfter: wait}
		}
	}
	if p.RPMLimit > 0 {
		if k.lease == 0 {
			wait := time.Minute / time.Duration(p.RPMLimit)
			return wait, &RateLimitError{Limit: LimitRequests, RetryAfter: wait}
		}
		k.lease--
		k.taken++
	}
	k.used = now
	_, _ = l.Local.Admit(ctx, p) // kept in step for a fallback; its verdict is not this one
	return 0, nil
}

// Spend implements RateLimiter: the tokens are debited from the key's shared bucket at
// the next sync.
func (l *SharedLimiter) Spend(p Principal, tokens int) {
	if tokens <= 0 {
		return
	}
	l.init()
	if p.DailyTokenQuota > 0 || p.MonthlyTokenQuota > 0 {
		u := l.lockedUser(p.UserID)
		u.spent += int64(tokens)
		if u.perReq == 0 {
			u.perReq = float64(tokens)
		} else {
			u.perReq = 0.8*u.perReq + 0.2*float64(tokens)
		}
		near := u.near(p, l.Now())
		u.mu.Unlock()
		if near {
			l.kick() // added now, not at the next tick: the other gateways read it
		}
	}
	if p.TPMLimit <= 0 {
		return
	}
	k := l.lockedKey(p)
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
		case <-l.wake:
			l.sync(ctx, false)
		}
	}
}

// sync syncs the keys' buckets (syncKeys) and the users' quota usage (syncUsers).
func (l *SharedLimiter) sync(ctx context.Context, final bool) {
	if !final && l.away(l.Now()) {
		return // the first tick after outageRetry tries again
	}
	l.syncKeys(ctx, final)
	l.syncUsers(ctx, final)
}

// syncUsers adds the tokens counted here to the users' quota usage and reads back the
// usage of the users in use, in one round trip. The users synced stay locked until
// their usage is read back: what is added and what is read agree.
func (l *SharedLimiter) syncUsers(ctx context.Context, final bool) {
	now := l.Now()
	var (
		users []*sharedUser
		adds  []store.QuotaAdd
	)
	l.mu.Lock()
	for id, u := range l.users {
		if !lockForSync(&u.mu, final) {
			continue // busy with its own round trip: the next tick syncs it
		}
		idle := now.Sub(u.used)
		switch {
		case u.spent != 0 || (u.quotas && idle < time.Minute && !final):
			users = append(users, u) // unlocked once read back
			adds = append(adds, store.QuotaAdd{UserID: id, Tokens: u.spent})
			continue
		case idle >= sharedIdleDrop:
			u.dropped = true // a request that found it meanwhile takes a new one
			delete(l.users, id)
		}
		u.mu.Unlock()
	}
	l.mu.Unlock()
	if len(adds) == 0 {
		return
	}
	got, err := l.addUsage(ctx, adds)
	for i, u := range users {
		if err == nil {
			u.spent -= adds[i].Tokens
			u.day, u.month, u.synced = got[i].Day, got[i].Month, now
		}
		u.mu.Unlock()
	}
}

// addUsage runs one AddQuotaUsage call, on a bounded context, and notes its outcome.
func (l *SharedLimiter) addUsage(ctx context.Context, adds []store.QuotaAdd) ([]store.QuotaUsage, error) {
	c, cancel := bounded(ctx)
	defer cancel()
	got, err := l.Store.AddQuotaUsage(c, adds)
	l.noted(err)
	return got, err
}

// syncKeys says which leased requests were used, debits the tokens spent here, gives
// back leases idle for leaseIdle (all of them when final), refreshes the leases held
// and reads back the tokens levels of the keys in use, in one round trip. The keys
// synced stay locked until their levels are read back.
func (l *SharedLimiter) syncKeys(ctx context.Context, final bool) {
	now := l.Now()
	type part struct {
		k    *sharedKey
		take store.LimitTake
	}
	var parts []part
	l.mu.Lock()
	for id, k := range l.keys {
		if !lockForSync(&k.mu, final) {
			continue // busy with its own round trip: the next tick syncs it
		}
		idle := now.Sub(k.used)
		if k.lease > 0 && now.Sub(k.leaseAt) >= leaseValid {
			k.lease = 0 // no longer counted by the database
		}
		give := 0
		if k.lease > 0 && (final || idle >= leaseIdle) {
			give, k.lease = k.lease, 0
		}
		t := k.take(-give)
		inUse := k.p.TPMLimit > 0 && idle < time.Minute
		switch {
		case t.Requests != 0 || t.Used != 0 || t.Tokens != 0 || k.lease > 0 || k.unsure || (inUse && !final):
			parts = append(parts, part{k, t}) // unlocked once read back
			continue
		case idle >= sharedIdleDrop:
			k.dropped = true // a request that found it meanwhile takes a new one
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
	levels, err := l.roundTrip(ctx, takes)
	for i, p := range parts {
		k := p.k
		if err != nil {
			k.unsettled()
		} else {
			k.settled(p.take, levels[i], now)
		}
		k.mu.Unlock()
	}
}

// lockForSync locks mu for a sync: at once or not at all (a request holding it across
// its own round trip must not hold up the sync, which holds l.mu), except for the
// final sync, which waits.
func lockForSync(mu *sync.Mutex, final bool) bool {
	if final {
		mu.Lock()
		return true
	}
	return mu.TryLock()
}

// kick asks Run to sync now.
func (l *SharedLimiter) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// away reports whether the database was found away less than outageRetry ago.
func (l *SharedLimiter) away(now time.Time) bool { return now.UnixNano() < l.awayTill.Load() }

// bounded is the context of one round trip: its own (a client that goes away mid-way
// must not lose what the database granted or counted), bounded by roundTripTimeout.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), roundTripTimeout)
}

// noted records a round trip's outcome. An outage (store.ErrUnavailable, or no answer
// within roundTripTimeout) makes the requests of the next outageRetry skip the
// database, and is logged once; an answer ends it. Other errors say nothing of the
// database's health.
func (l *SharedLimiter) noted(err error) {
	switch {
	case err == nil:
		l.awayTill.Store(0)
		if l.failing.CompareAndSwap(true, false) {
			l.Logger.Info("shared rate limits available again")
		}
	case errors.Is(err, store.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded):
		l.awayTill.Store(l.Now().Add(outageRetry).UnixNano())
		if l.failing.CompareAndSwap(false, true) {
			l.Logger.Warn("shared rate limits unavailable: each gateway applies the limits alone until the database answers", "error", err)
		}
	}
}
