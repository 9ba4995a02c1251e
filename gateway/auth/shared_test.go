package auth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

// sharedKeyOf creates a key with limits in a fresh database and returns the key's
// principal and gateway, which opens the database as the gateway called name (each
// gateway has its leases).
func sharedKeyOf(t *testing.T, rpm, tpm int) (gateway func(name string) *store.Store, _ Principal) {
	t.Helper()
	url := pgtest.Database(t)
	gateway = func(name string) *store.Store {
		st, err := store.Open(url, store.Options{Origin: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	st := gateway("setup")
	ctx := context.Background()
	u, err := st.EnsureUser(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	k, err := st.CreateAPIKey(ctx, store.NewAPIKey{UserID: u.ID, Prefix: "rgw_shared", Hash: []byte("0123456789abcdef0123456789abcdef"), Name: "k",
		Scopes: []string{store.ScopeChat}, RPMLimit: rpm, TPMLimit: tpm})
	if err != nil {
		t.Fatal(err)
	}
	return gateway, Principal{KeyID: k.ID, UserID: u.ID, RPMLimit: rpm, TPMLimit: tpm}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestSharedLimitHoldsAcrossGateways: three gateways' limiters on one database admit,
// together, no more requests than the key's bucket holds, however the requests are
// spread: 90 requests in a second for a key of 30 per minute (a burst of 3), while the
// limiters sync.
func TestSharedLimitHoldsAcrossGateways(t *testing.T) {
	gw, p := sharedKeyOf(t, 30, 0)
	gateways := make([]*SharedLimiter, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range gateways {
		gateways[i] = &SharedLimiter{Store: gw(string(rune('a' + i))), Logger: quietLogger()}
		go gateways[i].Run(ctx) // syncing meanwhile, as in a gateway
	}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range 90 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 10 * time.Millisecond) // spread over a few syncs
			_, err := gateways[i%3].Admit(context.Background(), p)
			switch {
			case err == nil:
				admitted.Add(1)
			case errors.Is(err, ErrRateLimited):
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	// The bucket refills by one request every 2 s meanwhile.
	most := 3 + int64(time.Since(start)/(2*time.Second)) + 1
	if a := admitted.Load(); a < 3 || a > most || a+refused.Load() != 90 {
		t.Fatalf("admitted %d, refused %d of 90 in %v for a limit of 30 per minute over 3 gateways (at most %d)", a, refused.Load(), time.Since(start), most)
	}
}

// TestSharedLimitGivesBackIdleLeases: requests leased by one gateway and not used go
// back to the shared bucket, for another gateway to use.
func TestSharedLimitGivesBackIdleLeases(t *testing.T) {
	gw, p := sharedKeyOf(t, 160, 0) // a burst of 16, leases of 4
	now := time.Now()
	clock := func() time.Time { return now }
	a := &SharedLimiter{Store: gw("a"), Logger: quietLogger(), Now: clock}
	b := &SharedLimiter{Store: gw("b"), Logger: quietLogger(), Now: clock}
	ctx := context.Background()
	for range 13 { // A leases the last 4 and uses one: 3 stay leased
		if _, err := a.Admit(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Admit(ctx, p); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("B while A holds the last request: %v, want refused", err)
	}
	// A keeps its lease alive while the key is busy, and gives it back once the key
	// is idle.
	now = now.Add(leaseIdle / 2)
	a.sync(ctx, false)
	if _, err := b.Admit(ctx, p); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("B while A still holds its lease: %v, want refused", err)
	}
	now = now.Add(leaseIdle / 2)
	a.sync(ctx, false) // A gives back its idle lease
	if _, err := b.Admit(ctx, p); err != nil {
		t.Fatalf("B once A gave back its lease: %v", err)
	}
}

// TestSharedTokensLimit: tokens spent through one gateway count against the key on
// another once synced.
func TestSharedTokensLimit(t *testing.T) {
	gw, p := sharedKeyOf(t, 0, 1000)
	a := &SharedLimiter{Store: gw("a"), Logger: quietLogger()}
	b := &SharedLimiter{Store: gw("b"), Logger: quietLogger()}
	ctx := context.Background()
	if _, err := b.Admit(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Admit(ctx, p); err != nil {
		t.Fatal(err)
	}
	a.Spend(p, 1500)
	a.sync(ctx, false)
	b.sync(ctx, false)
	if _, err := b.Admit(ctx, p); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("after 1500 tokens spent through A: B admitted (%v), want refused", err)
	}
}

// down is a LimitStore whose database is away.
type down struct{}

func (down) TakeLimits(context.Context, []store.LimitTake) ([]store.LimitLevel, error) {
	return nil, store.ErrUnavailable
}

func (down) AddQuotaUsage(context.Context, []store.QuotaAdd) ([]store.QuotaUsage, error) {
	return nil, store.ErrUnavailable
}

// TestSharedLimitFallsBackToLocal: without the database, a gateway applies the limits
// alone.
func TestSharedLimitFallsBackToLocal(t *testing.T) {
	l := &SharedLimiter{Store: down{}, Logger: quietLogger()}
	p := Principal{KeyID: "k", RPMLimit: 30} // a burst of 3
	for i := range 4 {
		_, err := l.Admit(context.Background(), p)
		if (i < 3) != (err == nil) {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

// TestQuotaAcrossGatewaysAndRestarts: a user's daily quota counts the tokens used
// through every gateway, and holds for a gateway that starts afterwards (it is
// Postgres's); refused, the error names the quota and when it resets.
func TestQuotaAcrossGatewaysAndRestarts(t *testing.T) {
	gw, p := sharedKeyOf(t, 0, 0)
	st := gw("a")
	if err := st.SetUserQuotas(context.Background(), "alice", store.QuotaChange{Daily: new(int64(1000))}); err != nil {
		t.Fatal(err)
	}
	p.DailyTokenQuota = 1000
	a := &SharedLimiter{Store: st, Logger: quietLogger()}
	b := &SharedLimiter{Store: gw("b"), Logger: quietLogger()}
	ctx := context.Background()
	for _, l := range []*SharedLimiter{a, b} {
		if _, err := l.Admit(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	a.Spend(p, 700)
	b.Spend(p, 400)
	a.sync(ctx, false)
	b.sync(ctx, false)
	a.sync(ctx, false) // the next sync reads what B added
	var q *QuotaError
	if _, err := a.Admit(ctx, p); !errors.As(err, &q) || q.Period != "daily" || q.Quota != 1000 ||
		!q.ResetAt.Equal(nextDay(time.Now())) || !strings.Contains(err.Error(), "daily token quota of 1000 tokens") {
		t.Fatalf("after 1100 tokens through two gateways: %v, want the daily quota's error", err)
	}
	restarted := &SharedLimiter{Store: gw("b"), Logger: quietLogger()}
	if _, err := restarted.Admit(ctx, p); !errors.As(err, &q) {
		t.Fatalf("a gateway started afterwards: %v, want the quota held", err)
	}
}

// counting counts the round trips to the shared buckets.
type counting struct {
	LimitStore
	takes atomic.Int64
}

func (c *counting) TakeLimits(ctx context.Context, t []store.LimitTake) ([]store.LimitLevel, error) {
	c.takes.Add(1)
	return c.LimitStore.TakeLimits(ctx, t)
}

// TestSpentKeyCostsNoRoundTrips: once its bucket had nothing to lease, a key's
// requests are refused here until the next request is due, without a round trip each.
func TestSpentKeyCostsNoRoundTrips(t *testing.T) {
	gw, p := sharedKeyOf(t, 20, 0) // a burst of 2
	c := &counting{LimitStore: gw("a")}
	l := &SharedLimiter{Store: c, Logger: quietLogger()}
	ctx := context.Background()
	for range 2 {
		if _, err := l.Admit(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	before := c.takes.Load()
	for range 50 {
		if _, err := l.Admit(ctx, p); !errors.Is(err, ErrRateLimited) {
			t.Fatalf("over the limit: %v", err)
		}
	}
	if n := c.takes.Load() - before; n != 1 {
		t.Fatalf("50 refused requests made %d round trips, want 1", n)
	}
}

// TestOutageCostsOneRoundTrip: once the database failed, requests decide on the local
// buckets for a moment instead of each waiting on it; the syncs keep trying.
func TestOutageCostsOneRoundTrip(t *testing.T) {
	c := &counting{LimitStore: down{}}
	now := time.Now()
	l := &SharedLimiter{Store: c, Logger: quietLogger(), Now: func() time.Time { return now }}
	p := Principal{KeyID: "k", RPMLimit: 30000, TPMLimit: 1_000_000}
	for range 100 {
		if _, err := l.Admit(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.takes.Load(); n != 1 {
		t.Fatalf("100 requests during an outage made %d round trips, want 1", n)
	}
	now = now.Add(outageRetry)
	if _, err := l.Admit(context.Background(), p); err != nil || c.takes.Load() != 2 {
		t.Fatalf("after %v: %v, %d round trips; want the database tried again", outageRetry, err, c.takes.Load())
	}
}

// TestDroppedEntryIsNotUsed: a request that found a key's entry just as a sync
// forgot it counts in the key's new entry, not in the forgotten one (what it counted
// there would never reach the database).
func TestDroppedEntryIsNotUsed(t *testing.T) {
	gw, p := sharedKeyOf(t, 0, 1000)
	l := &SharedLimiter{Store: gw("a"), Logger: quietLogger()}
	if _, err := l.Admit(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	old := l.keys[p.KeyID]
	old.mu.Lock() // a sync holds it...
	spent := make(chan struct{})
	go func() {
		l.Spend(p, 300) // ...while a request finds it and waits for it
		close(spent)
	}()
	time.Sleep(50 * time.Millisecond)
	// The sync forgets it.
	l.mu.Lock()
	old.dropped = true
	delete(l.keys, p.KeyID)
	l.mu.Unlock()
	old.mu.Unlock()
	<-spent
	if k := l.keys[p.KeyID]; old.spent != 0 || k == nil || k.spent != 300 {
		t.Fatalf("300 tokens spent as the entry was dropped: %d in the dropped entry, new entry %+v", old.spent, k)
	}
}

// TestCancelledRequestIsNoOutage: a request whose client went away mid-way does not
// make the gateway think the database is away (which would leave every key to the
// local buckets for a moment).
func TestCancelledRequestIsNoOutage(t *testing.T) {
	gw, p := sharedKeyOf(t, 30000, 0)
	c := &counting{LimitStore: gw("a")}
	l := &SharedLimiter{Store: c, Logger: quietLogger()}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := l.Admit(cancelled, p); err != nil {
		t.Fatalf("a cancelled request's admission: %v (the round trip runs on its own context)", err)
	}
	if l.away(time.Now()) {
		t.Fatal("a cancelled request made the database look away")
	}
	if n := c.takes.Load(); n != 1 {
		t.Fatalf("%d round trips, want 1", n)
	}
	if k := l.keys[p.KeyID]; k.lease != leaseSize(p.RPMLimit)-1 {
		t.Fatalf("lease %d after the cancelled request, want %d: what the database granted is kept", k.lease, leaseSize(p.RPMLimit)-1)
	}
}

// lossy is a LimitStore whose next armed round trips are applied by the database but
// answered with an error (the answer lost on the way).
type lossy struct {
	LimitStore
	armed atomic.Int64
}

func (s *lossy) TakeLimits(ctx context.Context, t []store.LimitTake) ([]store.LimitLevel, error) {
	lv, err := s.LimitStore.TakeLimits(ctx, t)
	if err == nil && s.armed.Add(-1) >= 0 {
		return nil, store.ErrUnavailable
	}
	return lv, err
}

// TestLostAnswersMakeNoRequests: a give-back the database applied but whose answer
// was lost is not used again here (another gateway gets those requests), and a grant
// whose answer was lost is not lost: the next round trip hands it over.
func TestLostAnswersMakeNoRequests(t *testing.T) {
	gw, p := sharedKeyOf(t, 160, 0) // a burst of 16, leases of 4
	now := time.Now()
	clock := func() time.Time { return now }
	la := &lossy{LimitStore: gw("a")}
	la.armed.Store(-1 << 40)
	a := &SharedLimiter{Store: la, Logger: quietLogger(), Now: clock}
	b := &SharedLimiter{Store: gw("b"), Logger: quietLogger(), Now: clock}
	ctx := context.Background()
	start := time.Now()
	admitted := 0
	for range 13 { // A holds 3 leased
		if _, err := a.Admit(ctx, p); err != nil {
			t.Fatal(err)
		}
		admitted++
	}
	now = now.Add(leaseIdle / 2)
	a.sync(ctx, false) // refreshes its lease
	now = now.Add(leaseIdle / 2)
	la.armed.Store(1)
	a.sync(ctx, false) // gives back its 3; the answer is lost
	now = now.Add(outageRetry)
	for _, l := range []*SharedLimiter{a, b, a, b, a, b, a, b} {
		if _, err := l.Admit(ctx, p); err == nil {
			admitted++
		}
	}
	refilled := int(time.Since(start).Seconds() * 160 / 60)
	if admitted > 16+refilled {
		t.Fatalf("%d admitted over two gateways for a burst of 16 (+%d refilled): a lost give-back was used again", admitted, refilled)
	}
	if admitted < 16 {
		t.Fatalf("%d admitted for a burst of 16: requests given back were lost", admitted)
	}

	// A grant whose answer is lost: the next round trip hands it over.
	gw2, p2 := sharedKeyOf(t, 160, 0)
	lc := &lossy{LimitStore: gw2("c")}
	lc.armed.Store(1)
	c := &SharedLimiter{Store: lc, Logger: quietLogger(), Now: clock}
	_, _ = c.Admit(ctx, p2) // granted 4, answer lost: the local buckets decide
	now = now.Add(outageRetry)
	c.sync(ctx, false)
	if k := c.keys[p2.KeyID]; k.lease != 4 {
		t.Fatalf("lease %d after a grant whose answer was lost, want the 4 granted", k.lease)
	}
}

// TestLeasesCountInTheBucket: requests that gateways leased and keep alive are part of
// the key's burst. The bucket, refilled meanwhile, does not add its whole burst on
// top of them: in any window, the gateways together get at most the burst and what
// refills.
func TestLeasesCountInTheBucket(t *testing.T) {
	const rpm = 6000 // a burst of 600, leases of 150, 100 requests a second
	gw, p := sharedKeyOf(t, rpm, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gateways := make([]*SharedLimiter, 4)
	for i := range gateways {
		gateways[i] = &SharedLimiter{Store: gw(string(rune('a' + i))), Logger: quietLogger()}
		go gateways[i].Run(ctx)
	}
	// Each gateway leases 150 and keeps 149 alive with a request a second, for as long
	// as the bucket takes to refill its burst (6 s).
	for range 7 {
		for _, g := range gateways {
			if _, err := g.Admit(ctx, p); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
	}
	// Then a burst through every gateway: what they held and what the bucket holds
	// together make one burst, and what refills while it lasts.
	start := time.Now()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for _, g := range gateways {
		wg.Go(func() {
			for range 1000 {
				if _, err := g.Admit(ctx, p); err == nil {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	most := int64(Burst(rpm)) + int64(time.Since(start).Seconds()*rpm/60) + 1
	if a := admitted.Load(); a > most || a < int64(Burst(rpm))/2 {
		t.Fatalf("a burst through 4 gateways holding leases admitted %d in %v, want at most %d (the burst and what refilled)",
			a, time.Since(start), most)
	}
}
