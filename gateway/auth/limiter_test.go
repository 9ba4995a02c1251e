package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// admit calls l.Admit(context.Background(), p) and checks the outcome: admitted, or refused for limit with
// retryAfter.
func admit(t *testing.T, l *Limiter, p Principal, limit string, retryAfter time.Duration) {
	t.Helper()
	got, err := l.Admit(context.Background(), p)
	if limit == "" {
		if err != nil || got != 0 {
			t.Fatalf("Admit = %v, %v; want admitted", got, err)
		}
		return
	}
	var rle *RateLimitError
	if !errors.As(err, &rle) || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("Admit = %v, %v; want a RateLimitError for %s", got, err, limit)
	}
	if rle.Limit != limit || rle.RetryAfter != retryAfter || got != retryAfter {
		t.Fatalf("Admit = %v, %+v; want limit %s, retry after %v", got, rle, limit, retryAfter)
	}
}

func TestLimiterRequests(t *testing.T) {
	clk := newClock()
	l := NewLimiter(clk.Now)
	p := Principal{KeyID: "k1", RPMLimit: 3}
	for range 3 {
		admit(t, l, p, "", 0)
	}
	admit(t, l, p, LimitRequests, 20*time.Second) // one request per 20s
	clk.Advance(19 * time.Second)
	admit(t, l, p, LimitRequests, time.Second)
	clk.Advance(time.Second)
	admit(t, l, p, "", 0)
	admit(t, l, p, LimitRequests, 20*time.Second)

	// Half a request's time, then a full refill capped at the capacity.
	clk.Advance(10 * time.Second)
	admit(t, l, p, LimitRequests, 10*time.Second)
	clk.Advance(time.Hour)
	for range 3 {
		admit(t, l, p, "", 0)
	}
	admit(t, l, p, LimitRequests, 20*time.Second)

	// Another key has its own buckets.
	admit(t, l, Principal{KeyID: "k2", RPMLimit: 1}, "", 0)
	admit(t, l, Principal{KeyID: "k2", RPMLimit: 1}, LimitRequests, time.Minute)
}

func TestLimiterTokens(t *testing.T) {
	clk := newClock()
	l := NewLimiter(clk.Now)
	p := Principal{KeyID: "k1", TPMLimit: 100}
	admit(t, l, p, "", 0)
	l.Spend(p, 60)
	admit(t, l, p, "", 0) // 40 left: the next request may overdraw
	l.Spend(p, 190)       // balance -150
	// 150 tokens at 100 per minute: 90s until the balance is 0, and a request needs a
	// positive balance.
	admit(t, l, p, LimitTokens, 90*time.Second+1)
	clk.Advance(90 * time.Second)
	admit(t, l, p, LimitTokens, 1)
	clk.Advance(1)
	admit(t, l, p, "", 0)

	// Spending exactly the whole balance blocks too (≤ 0).
	clk.Advance(time.Hour)
	l.Spend(p, 100)
	admit(t, l, p, LimitTokens, 1)
	clk.Advance(600 * time.Millisecond) // +1 token
	admit(t, l, p, "", 0)

	if RetryAfterSeconds(90*time.Second+1) != 91 || RetryAfterSeconds(1) != 1 || RetryAfterSeconds(20*time.Second) != 20 {
		t.Fatal("RetryAfterSeconds rounds wrong")
	}
}

func TestLimiterBothLimits(t *testing.T) {
	clk := newClock()
	l := NewLimiter(clk.Now)
	p := Principal{KeyID: "k1", RPMLimit: 60, TPMLimit: 60}
	admit(t, l, p, "", 0)
	l.Spend(p, 120) // balance -60: a minute to 0
	// Requests are available, tokens are not.
	admit(t, l, p, LimitTokens, time.Minute+1)
	clk.Advance(time.Minute + 1)
	// The refused request did not use a request token.
	for range 60 {
		admit(t, l, p, "", 0)
	}
	// Both limits are hit: the longer wait is reported.
	l.Spend(p, 10)
	admit(t, l, p, LimitTokens, 10*time.Second) // requests: 1s
	clk.Advance(10 * time.Second)
	for range 10 {
		admit(t, l, p, "", 0)
	}
	admit(t, l, p, LimitRequests, time.Second)
}

func TestLimiterUnlimited(t *testing.T) {
	clk := newClock()
	l := NewLimiter(clk.Now)
	p := Principal{KeyID: "k1"}
	for range 10_000 {
		admit(t, l, p, "", 0)
		l.Spend(p, 1_000_000)
	}
	if len(l.keys) != 0 {
		t.Fatalf("%d buckets for an unlimited key", len(l.keys))
	}
	// Only one of the two limits set: the other is not enforced.
	rpmOnly := Principal{KeyID: "k2", RPMLimit: 1000}
	l.Spend(rpmOnly, 1_000_000)
	admit(t, l, rpmOnly, "", 0)
	tpmOnly := Principal{KeyID: "k3", TPMLimit: 1_000_000}
	for range 5000 {
		admit(t, l, tpmOnly, "", 0)
	}
}

func TestLimiterDropsIdleBuckets(t *testing.T) {
	clk := newClock()
	l := NewLimiter(clk.Now)
	idle := Principal{KeyID: "idle", RPMLimit: 1}
	indebted := Principal{KeyID: "indebted", TPMLimit: 1}
	admit(t, l, idle, "", 0)
	admit(t, l, indebted, "", 0)
	l.Spend(indebted, 100) // 100 minutes to repay
	clk.Advance(11 * time.Minute)
	admit(t, l, Principal{KeyID: "busy", RPMLimit: 10}, "", 0)
	if _, ok := l.keys["idle"]; ok {
		t.Fatal("the idle key's buckets were kept")
	}
	if _, ok := l.keys["indebted"]; !ok {
		t.Fatal("an idle key still in debt was forgotten")
	}
	// A dropped key starts again with full buckets.
	admit(t, l, idle, "", 0)
	admit(t, l, idle, LimitRequests, time.Minute)
	admit(t, l, indebted, LimitTokens, 88*time.Minute+1) // 99 tokens owed, 11 minutes repaid
}

func TestLimiterExtremeValues(t *testing.T) {
	clk := newClock()
	l := NewLimiter(clk.Now)
	p := Principal{KeyID: "k1", RPMLimit: 1 << 40, TPMLimit: 1 << 40} // counted as MaxLimit
	for range 1000 {
		admit(t, l, p, "", 0)
	}
	l.Spend(p, 1<<62)
	// The debt is capped at MaxLimit/2 tokens: half a minute at MaxLimit per minute.
	admit(t, l, p, LimitTokens, 30*time.Second+1)
	clk.Advance(1000 * time.Hour)
	admit(t, l, p, "", 0)

	small := Principal{KeyID: "k2", TPMLimit: 1}
	admit(t, l, small, "", 0)
	l.Spend(small, 1<<62)
	clk.Advance(100_000 * time.Hour)
	admit(t, l, small, LimitTokens, time.Duration(-minLevel/unit)*time.Minute-100_000*time.Hour+1)
}
