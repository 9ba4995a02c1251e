package store_test

import (
	"bytes"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

func TestUsers(t *testing.T) {
	s := open(t)
	if n, err := s.CountUsers(ctx(t)); err != nil || n != 0 {
		t.Fatalf("CountUsers of a fresh database = %d, %v", n, err)
	}
	a := user(t, s, "alice")
	if a.ID == "" || a.Name != "alice" || a.CreatedAt.IsZero() {
		t.Fatalf("EnsureUser = %+v", a)
	}
	if again := user(t, s, "alice"); again != a {
		t.Errorf("EnsureUser of an existing user = %+v, want %+v", again, a)
	}
	got, err := s.UserByName(ctx(t), "alice")
	if err != nil || got != a {
		t.Errorf("UserByName = %+v, %v; want %+v", got, err, a)
	}
	_, err = s.UserByName(ctx(t), "nobody")
	wantErr(t, "UserByName of an unknown user", err, store.ErrNotFound)
	_, err = s.EnsureUser(ctx(t), "")
	wantErr(t, "EnsureUser with an empty name", err, store.ErrInvalid)

	// Racing creators of one name all get the one user.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, err := s.EnsureUser(ctx(t), "bob")
			if err != nil {
				t.Error(err)
			}
			ids[i] = u.ID
		}()
	}
	wg.Wait()
	if ids[0] == "" || slices.ContainsFunc(ids, func(id string) bool { return id != ids[0] }) {
		t.Errorf("concurrent EnsureUser returned ids %v", ids)
	}
	if n, err := s.CountUsers(ctx(t)); err != nil || n != 2 {
		t.Errorf("CountUsers = %d, %v; want 2", n, err)
	}
}

func newKey(userID, prefix string, scopes ...string) store.NewAPIKey {
	return store.NewAPIKey{UserID: userID, Prefix: prefix, Hash: hash(prefix), Name: "key " + prefix, Scopes: scopes}
}

func TestAPIKeys(t *testing.T) {
	s := open(t)
	alice, bob := user(t, s, "alice"), user(t, s, "bob")

	k := newKey(alice.ID, "rgw_aaaaaaaa", store.ScopeChat, store.ScopeIngest)
	k.RPMLimit = 60
	created, err := s.CreateAPIKey(ctx(t), k)
	if err != nil {
		t.Fatal(err)
	}
	if created.ID == "" || created.UserID != alice.ID || created.UserName != "alice" || created.Prefix != k.Prefix ||
		!bytes.Equal(created.Hash, k.Hash) || created.Name != k.Name || !slices.Equal(created.Scopes, k.Scopes) ||
		created.RPMLimit != 60 || created.TPMLimit != 0 || created.CreatedAt.IsZero() ||
		!created.LastUsedAt.IsZero() || created.Revoked() {
		t.Fatalf("CreateAPIKey = %+v", created)
	}
	if !created.HasScope(store.ScopeIngest) || created.HasScope(store.ScopeAdmin) {
		t.Errorf("scopes %v", created.Scopes)
	}
	got, err := s.APIKeyByPrefix(ctx(t), k.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != created.ID || got.UserName != "alice" || !bytes.Equal(got.Hash, k.Hash) || got.RPMLimit != 60 {
		t.Errorf("APIKeyByPrefix = %+v, want %+v", got, created)
	}
	_, err = s.APIKeyByPrefix(ctx(t), "rgw_nothere")
	wantErr(t, "APIKeyByPrefix of an unknown prefix", err, store.ErrNotFound)

	for name, bad := range map[string]store.NewAPIKey{
		"no scopes":     newKey(alice.ID, "rgw_bad00001"),
		"unknown scope": newKey(alice.ID, "rgw_bad00002", store.ScopeChat, "root"),
		"short hash":    {UserID: alice.ID, Prefix: "rgw_bad00003", Hash: []byte("short"), Scopes: []string{store.ScopeChat}},
		"negative rpm":  {UserID: alice.ID, Prefix: "rgw_bad00004", Hash: hash("x"), Scopes: []string{store.ScopeChat}, RPMLimit: -1},
	} {
		_, err := s.CreateAPIKey(ctx(t), bad)
		wantErr(t, "CreateAPIKey with "+name, err, store.ErrInvalid)
	}
	_, err = s.CreateAPIKey(ctx(t), newKey(bob.ID, k.Prefix, store.ScopeChat))
	wantErr(t, "CreateAPIKey with a prefix in use", err, store.ErrConflict)
	for _, id := range []string{"abc", "00000000-0000-0000-0000-000000000000"} {
		_, err = s.CreateAPIKey(ctx(t), newKey(id, "rgw_nouser00", store.ScopeChat))
		wantErr(t, "CreateAPIKey for user "+id, err, store.ErrNotFound)
	}

	b1, err := s.CreateAPIKey(ctx(t), newKey(bob.ID, "rgw_bbbbbbb1", store.ScopeAdmin))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := s.CreateAPIKey(ctx(t), newKey(bob.ID, "rgw_bbbbbbb2", store.ScopeChat))
	if err != nil {
		t.Fatal(err)
	}
	prefixes := func(ks []store.APIKey) []string {
		var out []string
		for _, k := range ks {
			out = append(out, k.Prefix)
		}
		return out
	}
	all, err := s.ListAPIKeys(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{created.Prefix, b1.Prefix, b2.Prefix}; !slices.Equal(prefixes(all), want) {
		t.Errorf("ListAPIKeys(all) = %v, want %v (oldest first)", prefixes(all), want)
	}
	bobs, err := s.ListAPIKeys(ctx(t), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{b1.Prefix, b2.Prefix}; !slices.Equal(prefixes(bobs), want) || bobs[0].UserName != "bob" {
		t.Errorf("ListAPIKeys(bob) = %+v, want %v", bobs, want)
	}
	carol := user(t, s, "carol")
	if none, err := s.ListAPIKeys(ctx(t), carol.Name); err != nil || len(none) != 0 {
		t.Errorf("ListAPIKeys of a user without keys = %v, %v", none, err)
	}
	_, err = s.ListAPIKeys(ctx(t), "nobody")
	wantErr(t, "ListAPIKeys of an unknown user", err, store.ErrNotFound)

	// Touch.
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	if err := s.TouchAPIKey(ctx(t), b1.ID, at); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.APIKeyByPrefix(ctx(t), b1.Prefix); !got.LastUsedAt.Equal(at) {
		t.Errorf("LastUsedAt = %v, want %v", got.LastUsedAt, at)
	}
	wantErr(t, "TouchAPIKey of an unknown key", s.TouchAPIKey(ctx(t), "00000000-0000-0000-0000-000000000000", at), store.ErrNotFound)
	wantErr(t, "TouchAPIKey of a malformed id", s.TouchAPIKey(ctx(t), "abc", at), store.ErrNotFound)

	// Revoke: the first revocation time stays.
	r1, err := s.RevokeAPIKey(ctx(t), b1.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if !r1.Revoked() || r1.ID != b1.ID || r1.UserName != "bob" {
		t.Fatalf("RevokeAPIKey = %+v", r1)
	}
	r2, err := s.RevokeAPIKey(ctx(t), b1.Prefix)
	if err != nil || !r2.RevokedAt.Equal(r1.RevokedAt) {
		t.Errorf("revoking again: %v, %v; want the first revocation time %v", r2.RevokedAt, err, r1.RevokedAt)
	}
	if got, _ := s.APIKeyByPrefix(ctx(t), b1.Prefix); !got.Revoked() {
		t.Errorf("APIKeyByPrefix of a revoked key = %+v", got)
	}
	if got, _ := s.APIKeyByPrefix(ctx(t), b2.Prefix); got.Revoked() {
		t.Errorf("revoking %s revoked %s too", b1.Prefix, b2.Prefix)
	}
	_, err = s.RevokeAPIKey(ctx(t), "rgw_nothere")
	wantErr(t, "RevokeAPIKey of an unknown prefix", err, store.ErrNotFound)
}

func TestRecordUsage(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	k, err := s.CreateAPIKey(ctx(t), newKey(u.ID, "rgw_usage001", store.ScopeChat))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(ctx(t)); err != nil {
		t.Fatalf("RecordUsage of no rows: %v", err)
	}
	if err := s.RecordUsage(ctx(t), store.Usage{UserID: u.ID, APIKeyID: k.ID, Model: "m1", Route: "/v1/chat/completions", PromptTokens: 10, CompletionTokens: 5}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordUsage(ctx(t),
		store.Usage{UserID: u.ID, Model: "m1", Route: "/v1/ws"},
		store.Usage{UserID: u.ID, APIKeyID: k.ID, Model: "m2", Route: "/v1/embeddings", PromptTokens: 7},
	); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM usage WHERE user_id = $1 AND api_key_id = $2 AND model = 'm1' AND route = '/v1/chat/completions' AND prompt_tokens = 10 AND completion_tokens = 5`, u.ID, k.ID); n != 1 {
		t.Errorf("%d usage rows of the first request", n)
	}
	if n := count(t, s, `SELECT count(*) FROM usage WHERE user_id = $1 AND api_key_id = $2 AND model = 'm2' AND route = '/v1/embeddings' AND prompt_tokens = 7 AND completion_tokens = 0`, u.ID, k.ID); n != 1 {
		t.Errorf("%d usage rows of the batch's second request", n)
	}
	if n := count(t, s, `SELECT count(*) FROM usage WHERE user_id = $1 AND api_key_id IS NULL AND route = '/v1/ws'`, u.ID); n != 1 {
		t.Errorf("%d usage rows without a key", n)
	}
	// A batch with a row Postgres rejects stores none of its rows.
	err = s.RecordUsage(ctx(t), store.Usage{UserID: u.ID, Model: "m3", Route: "r"},
		store.Usage{UserID: "00000000-0000-0000-0000-000000000000", Model: "m3", Route: "r"})
	wantErr(t, "RecordUsage of a batch with an unknown user", err, store.ErrNotFound)
	if n := count(t, s, `SELECT count(*) FROM usage WHERE model = 'm3'`); n != 0 {
		t.Errorf("a failed batch stored %d rows", n)
	}
	err = s.RecordUsage(ctx(t), store.Usage{UserID: "00000000-0000-0000-0000-000000000000", Model: "m", Route: "r"})
	wantErr(t, "RecordUsage of an unknown user", err, store.ErrNotFound)
	err = s.RecordUsage(ctx(t), store.Usage{UserID: u.ID, APIKeyID: "abc", Model: "m", Route: "r"})
	wantErr(t, "RecordUsage of a malformed key id", err, store.ErrNotFound)
}
