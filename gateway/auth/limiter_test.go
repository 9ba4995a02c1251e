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
	p := Principal{KeyID: "k1", RPMLimit: 30} // a burst of 3, then one per 2 s
	for range 3 {
		admit(t, l, p, "", 0)
	}
	admit(t, l, p, LimitRequests, 2*time.Second)
	clk.Advance(time.Second)
	admit(t, l, p, LimitRequests, time.Second)
	clk.Advance(time.Second)
	admit(t, l, p, "", 0)
	admit(t, l, p, LimitRequests, 2*time.Second)

	// However long a key waits, it gets its burst at once, no more.
	clk.Advance(time.Hour)
	for range 3 {
		admit(t, l, p, "", 0)
	}
	admit(t, l, p, LimitRequests, 2*time.Second)

	// Another key has its own buckets; a limit below 10 has a burst of 1.
	admit(t, l, Principal{KeyID: "k2", RPMLimit: 1}, "", 0)
	admit(t, l, Principal{KeyID: "k2", RPMLimit: 1}, LimitRequests, time.Minute)
}

// TestLimiterHoldsOverAnyMinute: a key asking ten times a second for a minute, from a
// full bucket, gets its burst and what refills: 3 + 29 for 30 a minute, within the
// limit plus a tenth.
func TestLimiterHoldsOverAnyMinute(t *testing.T) {
	clk := newClock()
	l := NewLimiter(clk.Now)
	p := Principal{KeyID: "k1", RPMLimit: 30}
	admitted := 0
	for range 600 {
		if _, err := l.Admit(context.Background(), p); err == nil {
			admitted++
		}
		clk.Advance(100 * time.Millisecond)
	}
	if admitted != 32 {
		t.Fatalf("%d requests admitted in a minute for 30 a minute, want 32 (a burst of 3, 29 refilled)", admitted)
	}
}

func TestLimiterTokens(t *testing.T) {
	clk := newClock()
	l := NewLimiter(clk.Now)
	p := Principal{KeyID: "k1", TPMLimit: 100} // holds 10 tokens
	admit(t, l, p, "", 0)
	l.Spend(p, 60) // balance -50: a request may overdraw it
	// 50 tokens at 100 per minute: 30 s until the balance is 0, and a request needs a
	// positive balance.
	admit(t, l, p, LimitTokens, 30*time.Second+1)
	clk.Advance(30 * time.Second)
	admit(t, l, p, LimitTokens, 1)
	clk.Advance(1)
	admit(t, l, p, "", 0)

	// Spending exactly the whole balance blocks too (≤ 0).
	clk.Advance(time.Hour)
	l.Spend(p, 10)
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
	p := Principal{KeyID: "k1", RPMLimit: 60, TPMLimit: 60} // bursts of 6, one a second
	for range 6 {
		admit(t, l, p, "", 0)
	}
	admit(t, l, p, LimitRequests, time.Second)
	// Both limits are hit: the longer wait is reported.
	l.Spend(p, 12) // balance -6
	admit(t, l, p, LimitTokens, 6*time.Second+1)
	clk.Advance(time.Second)
	// A request is available, tokens are not; the refused request does not use it.
	admit(t, l, p, LimitTokens, 5*time.Second+1)
	if lv := l.keys["k1"].requests.level; lv != unit {
		t.Fatalf("requests level %d after a request refused for tokens, want %d (one request)", lv, unit)
	}
	clk.Advance(5*time.Second + 1)
	for range 6 {
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
