package store_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

// TestTakeLimits: a key's shared bucket grants requests while it holds them, takes
// back what a gateway returns, refills with time up to its burst less what gateways
// hold leased, lets a lease lapse when its gateway stops refreshing it, and keeps a
// token debt whole.
func TestTakeLimits(t *testing.T) {
	url := pgtest.Database(t)
	s := openURL(t, url, store.Options{Origin: "a"})
	b := openURL(t, url, store.Options{Origin: "b"})
	c := openURL(t, url, store.Options{Origin: "c"})
	alice := user(t, s, "alice")
	key, err := s.CreateAPIKey(ctx(t), store.NewAPIKey{UserID: alice.ID, Prefix: "rgw_limits", Hash: hash("k"), Name: "k", Scopes: []string{store.ScopeChat}, RPMLimit: 10, TPMLimit: 100})
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateAPIKey(ctx(t), store.NewAPIKey{UserID: alice.ID, Prefix: "rgw_other", Hash: hash("o"), Name: "o", Scopes: []string{store.ScopeChat}})
	if err != nil {
		t.Fatal(err)
	}
	take := func(gw *store.Store, req, used int, tok int64) store.LimitLevel {
		t.Helper()
		// Two keys in one round trip, given in an order that is not the keys' order.
		got, err := gw.TakeLimits(ctx(t), []store.LimitTake{
			{KeyID: other.ID, Requests: 1},
			{KeyID: key.ID, RPM: 10, RPMBurst: 10, TPM: 100, TPMBurst: 100, Requests: req, Used: used, Tokens: tok},
		})
		if err != nil {
			t.Fatal(err)
		}
		if got[0].Granted != 1 {
			t.Fatalf("a key without limits: granted %d of 1", got[0].Granted)
		}
		return got[1]
	}
	ago := func(d string) {
		t.Helper()
		if _, err := s.DB().Exec(`UPDATE limit_buckets SET updated_at = updated_at - $2::interval WHERE key_id = $1`, key.ID, d); err != nil {
			t.Fatal(err)
		}
	}
	// Refilling is continuous, so a level may have gained a fraction meanwhile: compare
	// what is granted (whole requests) and tokens to a tolerance.
	for i, step := range []struct {
		gw        *store.Store
		ago       string // the bucket's last change moved back by this much first
		req, used int
		tok       int64
		granted   int
		tokens    float64
	}{
		{s, "", 4, 0, 0, 4, 100},
		{s, "", 10, 0, 0, 6, 100},      // only 6 left
		{s, "", 1, 0, 150, 0, -50},     // none left; tokens go into debt
		{s, "", -3, 0, 0, 0, -50},      // 3 given back
		{s, "", 5, 0, 100, 3, -150},    // the 3; a debt is kept whole
		{s, "30 s", 10, 0, 0, 0, -100}, // A holds the whole burst leased: nothing refilled
		{s, "", 0, 10, 0, 0, -100},     // A used its 10
		{b, "30 s", 10, 0, 0, 5, -50},  // half a minute's refill, to B
		{b, "", 0, 1, 0, 0, -50},       // B used 1 and holds 4
		{s, "1 h", 10, 0, 0, 6, 100},   // an hour later: the burst, less B's 4
	} {
		if step.ago != "" {
			ago(step.ago)
		}
		l := take(step.gw, step.req, step.used, step.tok)
		if l.Granted != step.granted || math.Abs(l.TokensLeft-step.tokens) > 1 {
			t.Fatalf("step %d: take %d requests (%d used), %d tokens: %+v, want granted %d and ~%v tokens",
				i, step.req, step.used, step.tok, l, step.granted, step.tokens)
		}
	}
	// B stops refreshing its lease (it died): once the lease lapses, it is the bucket's
	// again.
	if _, err := s.DB().Exec(`UPDATE limit_leases SET expires = now() - interval '1 s' WHERE gateway = 'b'`); err != nil {
		t.Fatal(err)
	}
	take(s, 0, 6, 0) // A used its 6
	ago("1 h")
	if l := take(s, 10, 0, 0); l.Granted != 10 {
		t.Fatalf("B's lease lapsed: %+v, want the whole burst for A", l)
	}
	take(s, 0, 10, 0)

	// A bucket holds its burst, however long it waited.
	burst := func(gw *store.Store, req int) store.LimitLevel {
		t.Helper()
		got, err := gw.TakeLimits(ctx(t), []store.LimitTake{{KeyID: key.ID, RPM: 10, RPMBurst: 2, TPM: 100, TPMBurst: 20, Requests: req}})
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	ago("1 h")
	if l := burst(s, 10); l.Granted != 2 || math.Abs(l.TokensLeft-20) > 1 {
		t.Fatalf("after an hour, with a burst of 2 requests and 20 tokens: %+v", l)
	}
	// Reading a bucket (nothing asked, used or debited, by a gateway without a lease)
	// writes nothing.
	var before, after string
	if err := s.DB().QueryRow(`SELECT updated_at::text FROM limit_buckets WHERE key_id = $1`, key.ID).Scan(&before); err != nil {
		t.Fatal(err)
	}
	if l := burst(c, 0); l.Granted != 0 || math.Abs(l.TokensLeft-20) > 1 {
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
	if err := s.DB().QueryRow(`SELECT (SELECT count(*) FROM limit_buckets WHERE key_id = $1) + (SELECT count(*) FROM limit_leases WHERE key_id = $1)`, key.ID).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("%d buckets and leases for a deleted key (%v)", rows, err)
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
