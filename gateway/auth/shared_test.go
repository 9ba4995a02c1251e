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

// sharedKeyOf creates a key with limits in a fresh database and returns its store and
// the key's principal.
func sharedKeyOf(t *testing.T, rpm, tpm int) (*store.Store, Principal) {
	t.Helper()
	st, err := store.Open(pgtest.Database(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
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
	return st, Principal{KeyID: k.ID, UserID: u.ID, RPMLimit: rpm, TPMLimit: tpm}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestSharedLimitHoldsAcrossGateways: three gateways' limiters on one database admit,
// together, no more requests than the key's bucket holds, however the requests are
// spread: 90 requests in a second for a key of 30 per minute (a burst of 3), while the
// limiters sync.
func TestSharedLimitHoldsAcrossGateways(t *testing.T) {
	st, p := sharedKeyOf(t, 30, 0)
	gateways := make([]*SharedLimiter, 3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range gateways {
		gateways[i] = &SharedLimiter{Store: st, Logger: quietLogger()}
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
	st, p := sharedKeyOf(t, 160, 0) // a burst of 16, leases of 4
	now := time.Now()
	clock := func() time.Time { return now }
	a := &SharedLimiter{Store: st, Logger: quietLogger(), Now: clock}
	b := &SharedLimiter{Store: st, Logger: quietLogger(), Now: clock}
	ctx := context.Background()
	for range 13 { // A leases the last 4 and uses one: 3 stay leased
		if _, err := a.Admit(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Admit(ctx, p); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("B while A holds the last request: %v, want refused", err)
	}
	now = now.Add(leaseIdle)
	a.sync(ctx, false) // A gives back its idle lease
	if _, err := b.Admit(ctx, p); err != nil {
		t.Fatalf("B once A gave back its lease: %v", err)
	}
}

// TestSharedTokensLimit: tokens spent through one gateway count against the key on
// another once synced.
func TestSharedTokensLimit(t *testing.T) {
	st, p := sharedKeyOf(t, 0, 1000)
	a := &SharedLimiter{Store: st, Logger: quietLogger()}
	b := &SharedLimiter{Store: st, Logger: quietLogger()}
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
	st, p := sharedKeyOf(t, 0, 0)
	if err := st.SetUserQuotas(context.Background(), "alice", store.QuotaChange{Daily: new(int64(1000))}); err != nil {
		t.Fatal(err)
	}
	p.DailyTokenQuota = 1000
	a := &SharedLimiter{Store: st, Logger: quietLogger()}
	b := &SharedLimiter{Store: st, Logger: quietLogger()}
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
	restarted := &SharedLimiter{Store: st, Logger: quietLogger()}
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
	st, p := sharedKeyOf(t, 20, 0) // a burst of 2
	c := &counting{LimitStore: st}
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

// TestDroppedEntryIsNotUsed: a key's entry forgotten by a sync is not the one a
// request then counts in (what it counted would never reach the database).
func TestDroppedEntryIsNotUsed(t *testing.T) {
	st, p := sharedKeyOf(t, 0, 1000)
	now := time.Now()
	l := &SharedLimiter{Store: st, Logger: quietLogger(), Now: func() time.Time { return now }}
	ctx := context.Background()
	if _, err := l.Admit(ctx, p); err != nil {
		t.Fatal(err)
	}
	old := l.keys[p.KeyID] // what a request holds when the sync drops it
	now = now.Add(sharedIdleDrop)
	l.sync(ctx, false)
	if _, ok := l.keys[p.KeyID]; ok || !old.dropped {
		t.Fatal("the idle key was not dropped")
	}
	l.Spend(p, 300)
	if k := l.keys[p.KeyID]; k == nil || k == old || k.spent != 300 {
		t.Fatalf("tokens spent after the drop went to %p (the dropped entry is %p)", k, old)
	}
}
