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
// together, no more requests than the key's limit, however the requests are spread:
// 90 requests in a second for a key of 30 per minute, while the limiters sync.
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
	most := 30 + int64(time.Since(start)/(2*time.Second)) + 1
	if a := admitted.Load(); a < 30 || a > most || a+refused.Load() != 90 {
		t.Fatalf("admitted %d, refused %d of 90 in %v for a limit of 30 per minute over 3 gateways (at most %d)", a, refused.Load(), time.Since(start), most)
	}
}

// TestSharedLimitGivesBackIdleLeases: requests leased by one gateway and not used go
// back to the shared bucket, for another gateway to use.
func TestSharedLimitGivesBackIdleLeases(t *testing.T) {
	st, p := sharedKeyOf(t, 40, 0) // leases of 2
	now := time.Now()
	clock := func() time.Time { return now }
	a := &SharedLimiter{Store: st, Logger: quietLogger(), Now: clock}
	b := &SharedLimiter{Store: st, Logger: quietLogger(), Now: clock}
	ctx := context.Background()
	for range 39 { // A leases the 2nd-to-last pair and uses one: one stays leased
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
	p := Principal{KeyID: "k", RPMLimit: 3}
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
	if err := st.SetUserQuotas(context.Background(), "alice", 1000, 0); err != nil {
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
	st, p := sharedKeyOf(t, 2, 0)
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
