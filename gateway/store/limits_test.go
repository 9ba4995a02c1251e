package store_test

import (
	"math"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

// TestTakeLimits: a key's shared bucket grants requests while it holds them, takes
// back what a gateway returns, refills with time, and keeps a bounded token debt.
func TestTakeLimits(t *testing.T) {
	s := open(t)
	alice := user(t, s, "alice")
	key, err := s.CreateAPIKey(ctx(t), store.NewAPIKey{UserID: alice.ID, Prefix: "rgw_limits", Hash: hash("k"), Name: "k", Scopes: []string{store.ScopeChat}, RPMLimit: 10, TPMLimit: 100})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateAPIKey(ctx(t), store.NewAPIKey{UserID: alice.ID, Prefix: "rgw_other", Hash: hash("o"), Name: "o", Scopes: []string{store.ScopeChat}})
	if err != nil {
		t.Fatal(err)
	}
	take := func(req int, tok int64) store.LimitLevel {
		t.Helper()
		// Two keys in one round trip, given in an order that is not the keys' order.
		got, err := s.TakeLimits(ctx(t), []store.LimitTake{
			{KeyID: other.ID, Requests: 1},
			{KeyID: key.ID, RPM: 10, TPM: 100, Requests: req, Tokens: tok},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Granted != 1 {
			t.Fatalf("a key without limits: granted %d of 1", got[0].Granted)
		}
		return got[1]
	}
	// Refilling is continuous, so a level may have gained a fraction meanwhile: compare
	// what is granted (whole requests) and tokens to a tolerance.
	for _, step := range []struct {
		req     int
		tok     int64
		granted int
		tokens  float64
	}{
		{4, 0, 4, 100},
		{10, 0, 6, 100},   // only 6 left
		{1, 150, 0, -50},  // none left; tokens go into debt
		{-3, 0, 0, -50},   // 3 given back
		{5, 100, 3, -100}, // the 3, and the debt is bounded by a minute's allowance
	} {
		l := take(step.req, step.tok)
		if l.Granted != step.granted || math.Abs(l.TokensLeft-step.tokens) > 1 {
			t.Fatalf("take %d requests, %d tokens: %+v, want granted %d and ~%v tokens", step.req, step.tok, l, step.granted, step.tokens)
		}
	}
	// Half a minute later: half the allowance is back.
	if _, err := s.DB().Exec(`UPDATE limit_buckets SET updated_at = updated_at - interval '30 seconds' WHERE key_id = $1`, key.ID); err != nil {
		t.Fatal(err)
	}
	if l := take(10, 0); l.Granted != 5 || math.Abs(l.TokensLeft-(-50)) > 1 {
		t.Fatalf("after 30 s: %+v, want 5 granted and ~-50 tokens", l)
	}
}
