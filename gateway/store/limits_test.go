package store_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

// TestTakeLimits: a key's shared bucket grants requests while it holds them, takes
// back what a gateway returns, refills with time up to its burst, and keeps a bounded
// token debt.
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
			{KeyID: key.ID, RPM: 10, RPMBurst: 10, TPM: 100, TPMBurst: 100, Requests: req, Tokens: tok},
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
		{5, 100, 3, -150}, // the 3; a debt is kept whole
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
	if l := take(10, 0); l.Granted != 5 || math.Abs(l.TokensLeft-(-100)) > 1 {
		t.Fatalf("after 30 s: %+v, want 5 granted and ~-100 tokens", l)
	}

	// A bucket holds its burst, however long it waited.
	burst := func(req int) store.LimitLevel {
		t.Helper()
		got, err := s.TakeLimits(ctx(t), []store.LimitTake{{KeyID: key.ID, RPM: 10, RPMBurst: 2, TPM: 100, TPMBurst: 20, Requests: req}})
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	if _, err := s.DB().Exec(`UPDATE limit_buckets SET updated_at = updated_at - interval '1 hour' WHERE key_id = $1`, key.ID); err != nil {
		t.Fatal(err)
	}
	if l := burst(10); l.Granted != 2 || math.Abs(l.TokensLeft-20) > 1 {
		t.Fatalf("after an hour, with a burst of 2 requests and 20 tokens: %+v", l)
	}
	// Reading a bucket (nothing asked, nothing debited) writes nothing.
	var before, after string
	if err := s.DB().QueryRow(`SELECT updated_at::text FROM limit_buckets WHERE key_id = $1`, key.ID).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if l := burst(0); l.Granted != 0 || math.Abs(l.TokensLeft-20) > 1 {
		t.Fatalf("a read: %+v", l)
	}
	if err := s.DB().QueryRow(`SELECT updated_at::text FROM limit_buckets WHERE key_id = $1`, key.ID).Scan(&after); err != nil || after != before {
		t.Fatalf("a read wrote the bucket: updated_at %s → %s (%v)", before, after, err)
	}

	// A key deleted while a gateway still counts for it gets nothing, and does not
	// fail the others in its batch.
	if _, err := s.DB().Exec(`DELETE FROM api_keys WHERE id = $1`, key.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakeLimits(ctx(t), []store.LimitTake{
		{KeyID: key.ID, RPM: 10, RPMBurst: 10, TPM: 100, TPMBurst: 100, Requests: 1, Tokens: 5},
		{KeyID: other.ID, Requests: 1},
	})
	if err != nil || got[0].Granted != 0 || got[0].TokensLeft != 0 || got[1].Granted != 1 {
		t.Fatalf("a deleted key in a batch: %+v, %v; want nothing for it and 1 for the other", got, err)
	}
	var rows int
	if err := s.DB().QueryRow(`SELECT count(*) FROM limit_buckets WHERE key_id = $1`, key.ID).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d buckets for a deleted key (%v)", rows, err)
	}
}

// TestQuotaUsage: a user's quotas come with their keys; usage adds up per UTC day and
// month over every caller.
func TestQuotaUsage(t *testing.T) {
	s := open(t)
	alice, bob := user(t, s, "alice"), user(t, s, "bob")
	// Quotas beyond 32 bits (a monthly budget of billions of tokens) are stored whole.
	if err := s.SetUserQuotas(ctx(t), "alice", store.QuotaChange{Daily: new(int64(1000)), Monthly: new(int64(5_000_000_000))}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "unknown user", s.SetUserQuotas(ctx(t), "nobody", store.QuotaChange{Daily: new(int64(1))}), store.ErrNotFound)
	wantErr(t, "negative quota", s.SetUserQuotas(ctx(t), "alice", store.QuotaChange{Monthly: new(int64(-1))}), store.ErrInvalid)
	k, err := s.CreateAPIKey(ctx(t), store.NewAPIKey{UserID: alice.ID, Prefix: "rgw_quotas", Hash: hash("q"), Name: "q", Scopes: []string{store.ScopeChat}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.APIKeyByPrefix(ctx(t), k.Prefix)
	if err != nil || got.DailyTokenQuota != 1000 || got.MonthlyTokenQuota != 5_000_000_000 {
		t.Fatalf("the key's user's quotas: %d/%d, %v", got.DailyTokenQuota, got.MonthlyTokenQuota, err)
	}
	for _, step := range []struct {
		adds []store.QuotaAdd
		want []store.QuotaUsage
	}{
		{[]store.QuotaAdd{{alice.ID, 300}, {bob.ID, 5}}, []store.QuotaUsage{{300, 300}, {5, 5}}},
		{[]store.QuotaAdd{{alice.ID, 0}}, []store.QuotaUsage{{300, 300}}},
		{[]store.QuotaAdd{{alice.ID, 800}}, []store.QuotaUsage{{1100, 1100}}},
	} {
		got, err := s.AddQuotaUsage(ctx(t), step.adds)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(step.want) {
			t.Fatalf("AddQuotaUsage(%v) = %v, %v; want %v", step.adds, got, err, step.want)
		}
	}
	// Yesterday's usage is not today's, though it is this month's.
	if _, err := s.DB().Exec(`UPDATE quota_usage SET starts = starts - 1 WHERE period = 'day'`); err != nil {
		t.Fatal(err)
	}
	got2, err := s.AddQuotaUsage(ctx(t), []store.QuotaAdd{{alice.ID, 10}})
	if err != nil || got2[0].Day != 10 || got2[0].Month != 1110 {
		t.Fatalf("the next day: %+v, %v; want day 10, month 1110", got2, err)
	}
	// A user deleted while a gateway still counts for them: nothing, and the others in
	// the batch are counted.
	if _, err := s.DB().Exec(`DELETE FROM users WHERE id = $1`, bob.ID); err != nil {
		t.Fatal(err)
	}
	got3, err := s.AddQuotaUsage(ctx(t), []store.QuotaAdd{{bob.ID, 7}, {alice.ID, 1}})
	if err != nil || fmt.Sprint(got3) != fmt.Sprint([]store.QuotaUsage{{0, 0}, {11, 1111}}) {
		t.Fatalf("a deleted user in a batch: %v, %v", got3, err)
	}
	// The usage and quotas as a person reads them.
	if q, err := s.UserQuota(ctx(t), "alice"); err != nil || q != (store.UserQuota{Daily: 1000, Monthly: 5_000_000_000, QuotaUsage: store.QuotaUsage{Day: 11, Month: 1111}}) {
		t.Fatalf("UserQuota = %+v, %v", q, err)
	}
	if _, err := s.UserQuota(ctx(t), "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UserQuota of nobody: %v", err)
	}
	// A change names what it changes: the other quota stays; 0 removes one.
	if err := s.SetUserQuotas(ctx(t), "alice", store.QuotaChange{Daily: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.APIKeyByPrefix(ctx(t), k.Prefix); got.DailyTokenQuota != 0 || got.MonthlyTokenQuota != 5_000_000_000 {
		t.Fatalf("daily quota removed: %d/%d", got.DailyTokenQuota, got.MonthlyTokenQuota)
	}
	if err := s.SetUserQuotas(ctx(t), "alice", store.QuotaChange{Monthly: new(int64(0))}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.APIKeyByPrefix(ctx(t), k.Prefix); got.DailyTokenQuota != 0 || got.MonthlyTokenQuota != 0 {
		t.Fatalf("quotas removed: %d/%d", got.DailyTokenQuota, got.MonthlyTokenQuota)
	}
}
