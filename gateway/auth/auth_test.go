package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// fakeStore is a KeyStore in memory.
type fakeStore struct {
	mu          sync.Mutex
	keys        map[string]store.APIKey // by prefix
	unavailable bool
	lookups     int
	touches     []string // key ids
	touchErr    error
}

func newFakeStore() *fakeStore { return &fakeStore{keys: map[string]store.APIKey{}} }

func (f *fakeStore) APIKeyByPrefix(ctx context.Context, prefix string) (store.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.unavailable {
		return store.APIKey{}, fmt.Errorf("%w: dial tcp 127.0.0.1:5432: connection refused", store.ErrUnavailable)
	}
	k, ok := f.keys[prefix]
	if !ok {
		return store.APIKey{}, store.ErrNotFound
	}
	return k, nil
}

func (f *fakeStore) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touches = append(f.touches, id)
	return f.touchErr
}

// add stores a new key for user and returns it.
func (f *fakeStore) add(t *testing.T, user string, scopes ...string) (string, store.APIKey) {
	t.Helper()
	key, prefix, hash, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	k := store.APIKey{ID: "id-" + prefix, UserID: "uid-" + user, UserName: user, Prefix: prefix,
		Hash: hash, Scopes: scopes, RPMLimit: 10, TPMLimit: 1000}
	f.mu.Lock()
	f.keys[prefix] = k
	f.mu.Unlock()
	return key, k
}

func (f *fakeStore) revoke(prefix string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.keys[prefix]
	k.RevokedAt = at
	f.keys[prefix] = k
}

func (f *fakeStore) setUnavailable(v bool) {
	f.mu.Lock()
	f.unavailable = v
	f.mu.Unlock()
}

func (f *fakeStore) stats() (lookups int, touches []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups, append([]string(nil), f.touches...)
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestNewKey(t *testing.T) {
	seenKeys, seenPrefixes := map[string]bool{}, map[string]bool{}
	counts := map[rune]int{}
	const n = 2000
	for range n {
		key, prefix, hash, err := NewKey()
		if err != nil {
			t.Fatal(err)
		}
		if len(key) != 53 || len(prefix) != 12 || !strings.HasPrefix(key, prefix+"_") || !strings.HasPrefix(prefix, "rgw_") {
			t.Fatalf("NewKey() = %q, %q: wrong shape", key, prefix)
		}
		if p, ok := PrefixOf(key); !ok || p != prefix {
			t.Fatalf("PrefixOf(%q) = %q, %v; want %q, true", key, p, ok, prefix)
		}
		if string(hash) != string(Hash(key)) || len(hash) != 32 {
			t.Fatalf("hash of %q is not its SHA-256", key)
		}
		if seenKeys[key] || seenPrefixes[prefix] {
			t.Fatalf("NewKey repeated %q", key)
		}
		seenKeys[key], seenPrefixes[prefix] = true, true
		for _, c := range key[13:] {
			counts[c]++
		}
	}
	// Every base62 character appears about n*40/62 ≈ 1290 times (σ ≈ 35).
	if len(counts) != 62 {
		t.Fatalf("the secrets use %d distinct characters, want 62", len(counts))
	}
	for c, k := range counts {
		if k < 1000 || k > 1600 {
			t.Errorf("character %q appears %d times in %d secrets: the draw looks biased", c, k, n)
		}
	}
}

func TestHash(t *testing.T) {
	// sha256("abc")
	const want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := fmt.Sprintf("%x", Hash("abc")); got != want {
		t.Fatalf("Hash(abc) = %s, want %s", got, want)
	}
}

func TestPrefixOf(t *testing.T) {
	secret := strings.Repeat("aZ9", 13) + "x" // 40 base62 characters
	tests := []struct {
		name, key, want string
	}{
		{"good", "rgw_abcd1234_" + secret, "rgw_abcd1234"},
		{"all digits", "rgw_00000000_" + secret, "rgw_00000000"},
		{"empty", "", ""},
		{"prefix only", "rgw_abcd1234", ""},
		{"short secret", "rgw_abcd1234_" + secret[1:], ""},
		{"long secret", "rgw_abcd1234_" + secret + "a", ""},
		{"wrong scheme", "rgx_abcd1234_" + secret, ""},
		{"upper-case prefix", "rgw_ABCD1234_" + secret, ""},
		{"short prefix", "rgw_abcd123_a" + secret, ""},
		{"no separator", "rgw_abcd1234x" + secret, ""},
		{"dash in secret", "rgw_abcd1234_" + secret[:39] + "-", ""},
		{"underscore in secret", "rgw_abcd1234_" + secret[:39] + "_", ""},
		{"space", "rgw_abcd1234_" + secret[:39] + " ", ""},
		{"non-ASCII", "rgw_abcd1234_" + secret[:38] + "é", ""},
		{"openai key", "sk-" + strings.Repeat("a", 48), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := PrefixOf(tt.key)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("PrefixOf(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.want != "")
			}
		})
	}
}

func TestValidPrefix(t *testing.T) {
	for s, want := range map[string]bool{
		"rgw_abcd1234": true, "rgw_abcd123": false, "rgw_abcd12345": false, "rgw_abcD1234": false,
		"xyz_abcd1234": false, "": false, "rgw_abcd-234": false,
	} {
		if got := ValidPrefix(s); got != want {
			t.Errorf("ValidPrefix(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	key, _, _, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, header string
		want         string
		err          error
	}{
		{"bearer", "Bearer " + key, key, nil},
		{"lower-case scheme", "bearer " + key, key, nil},
		{"upper-case scheme", "BEARER " + key, key, nil},
		{"surrounding space", "  Bearer   " + key + "  ", key, nil},
		{"tab", "Bearer\t" + key, key, nil},
		{"empty", "", "", ErrNoKey},
		{"blank", "   ", "", ErrNoKey},
		{"scheme only", "Bearer", "", ErrNoKey},
		{"scheme and space", "Bearer   ", "", ErrNoKey},
		{"basic", "Basic dXNlcjpwYXNz", "", ErrInvalidKey},
		{"no scheme", key, "", ErrInvalidKey},
		{"any token shape (the Authenticator judges it)", "Bearer sk-abc", "sk-abc", nil},
		{"two tokens", "Bearer " + key + " " + key, "", ErrInvalidKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := BearerToken(tt.header)
			if got != tt.want || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("BearerToken(%q) = %q, %v; want %q, %v", tt.header, got, err, tt.want, tt.err)
			}
			if err != nil && strings.Contains(err.Error(), key) {
				t.Fatalf("the error %q contains the key", err)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	fs := newFakeStore()
	clk := newClock()
	a := New(fs, Options{Now: clk.Now})
	defer a.Wait()
	good, goodRow := fs.add(t, "alice", store.ScopeChat, store.ScopeIngest)
	revoked, revokedRow := fs.add(t, "bob", store.ScopeChat)
	fs.revoke(revokedRow.Prefix, clk.Now())
	wrongSecret := goodRow.Prefix + "_" + strings.Repeat("A", SecretLen)
	unknown, _, _, _ := NewKey()

	tests := []struct {
		name     string
		key      string
		err      error
		dbLookup bool
	}{
		{"good", good, nil, true},
		{"wrong secret, same prefix", wrongSecret, ErrInvalidKey, true},
		{"unknown prefix", unknown, ErrInvalidKey, true},
		{"revoked", revoked, ErrRevokedKey, true},
		{"malformed", "rgw_short", ErrInvalidKey, false},
		{"no key", "", ErrNoKey, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := fs.stats()
			p, err := a.Authenticate(context.Background(), tt.key)
			after, _ := fs.stats()
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Authenticate = %+v, %v; want error %v", p, err, tt.err)
			}
			if (after > before) != tt.dbLookup {
				t.Errorf("store lookups went %d → %d; want a lookup: %v", before, after, tt.dbLookup)
			}
			if err != nil {
				if tt.key != "" && strings.Contains(err.Error(), tt.key) {
					t.Errorf("the error %q contains the key", err)
				}
				if p.KeyID != "" {
					t.Errorf("a failed Authenticate returned principal %+v", p)
				}
				return
			}
			want := Principal{KeyID: goodRow.ID, Prefix: goodRow.Prefix, UserID: "uid-alice", UserName: "alice",
				Scopes: []string{"chat", "ingest"}, RPMLimit: 10, TPMLimit: 1000}
			if fmt.Sprint(p) != fmt.Sprint(want) {
				t.Fatalf("Authenticate = %+v, want %+v", p, want)
			}
		})
	}
}

func TestPrincipalScopes(t *testing.T) {
	p := Principal{Scopes: []string{"chat", "ingest"}}
	if !p.Has("chat") || !p.Has("ingest") || p.Has("admin") {
		t.Fatalf("Has is wrong for %v", p.Scopes)
	}
	if err := RequireScope(p, "chat"); err != nil {
		t.Fatalf("RequireScope(chat) = %v", err)
	}
	err := RequireScope(p, "admin")
	if !errors.Is(err, ErrMissingScope) {
		t.Fatalf("RequireScope(admin) = %v, want ErrMissingScope", err)
	}
	var se ScopeError
	if !errors.As(err, &se) || se.Scope != "admin" || !strings.Contains(err.Error(), `"admin"`) {
		t.Fatalf("RequireScope(admin) = %#v", err)
	}
}

func TestRevocationTakesEffectAtOnce(t *testing.T) {
	fs := newFakeStore()
	clk := newClock()
	a := New(fs, Options{Now: clk.Now})
	defer a.Wait()
	key, row := fs.add(t, "alice", "chat")
	if _, err := a.Authenticate(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	fs.revoke(row.Prefix, clk.Now())
	if _, err := a.Authenticate(context.Background(), key); !errors.Is(err, ErrRevokedKey) {
		t.Fatalf("the call right after the revocation: %v, want ErrRevokedKey", err)
	}
	// A revoked key is forgotten: an outage right after does not bring it back.
	fs.setUnavailable(true)
	if _, err := a.Authenticate(context.Background(), key); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a revoked key during an outage: %v, want ErrUnavailable", err)
	}
}

func TestStaleIfError(t *testing.T) {
	setup := func(t *testing.T) (*fakeStore, *clock, *Authenticator, string, store.APIKey) {
		fs := newFakeStore()
		clk := newClock()
		a := New(fs, Options{Now: clk.Now, StaleFor: 5 * time.Minute})
		t.Cleanup(a.Wait)
		key, row := fs.add(t, "alice", "chat")
		if _, err := a.Authenticate(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		return fs, clk, a, key, row
	}

	t.Run("recently validated key accepted", func(t *testing.T) {
		fs, clk, a, key, row := setup(t)
		fs.setUnavailable(true)
		clk.Advance(5*time.Minute - time.Second)
		p, err := a.Authenticate(context.Background(), key)
		if err != nil {
			t.Fatalf("during the outage: %v", err)
		}
		if p.KeyID != row.ID || p.UserName != "alice" || !p.Has("chat") {
			t.Fatalf("during the outage: principal %+v", p)
		}
	})
	t.Run("the database is still asked", func(t *testing.T) {
		fs, _, a, key, _ := setup(t)
		fs.setUnavailable(true)
		before, _ := fs.stats()
		if _, err := a.Authenticate(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		fs.setUnavailable(false)
		if after, _ := fs.stats(); after != before+1 {
			t.Fatalf("lookups %d → %d, want one more", before, after)
		}
	})
	t.Run("never-seen key", func(t *testing.T) {
		fs, _, a, _, _ := setup(t)
		other, _ := fs.add(t, "bob", "chat")
		fs.setUnavailable(true)
		_, err := a.Authenticate(context.Background(), other)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
		if strings.Contains(err.Error(), other) {
			t.Fatalf("the error %q contains the key", err)
		}
	})
	t.Run("validated longer than StaleFor ago", func(t *testing.T) {
		fs, clk, a, key, _ := setup(t)
		fs.setUnavailable(true)
		clk.Advance(5 * time.Minute)
		if _, err := a.Authenticate(context.Background(), key); !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
	})
	t.Run("revalidation renews", func(t *testing.T) {
		fs, clk, a, key, _ := setup(t)
		clk.Advance(4 * time.Minute)
		if _, err := a.Authenticate(context.Background(), key); err != nil {
			t.Fatal(err)
		}
		fs.setUnavailable(true)
		clk.Advance(4 * time.Minute) // 8 minutes after the first validation, 4 after the last
		if _, err := a.Authenticate(context.Background(), key); err != nil {
			t.Fatalf("got %v, want the remembered principal", err)
		}
	})
	t.Run("different secret for a remembered prefix", func(t *testing.T) {
		fs, _, a, _, row := setup(t)
		fs.setUnavailable(true)
		forged := row.Prefix + "_" + strings.Repeat("A", SecretLen)
		if _, err := a.Authenticate(context.Background(), forged); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("got %v, want ErrInvalidKey", err)
		}
	})
	t.Run("other store errors are not masked", func(t *testing.T) {
		_, _, a, key, _ := setup(t)
		a.Wait() // the first validation's touch reads a.ks
		a.ks = errStore{err: context.DeadlineExceeded}
		if _, err := a.Authenticate(context.Background(), key); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want the store's error", err)
		}
	})
}

type errStore struct{ err error }

func (s errStore) APIKeyByPrefix(context.Context, string) (store.APIKey, error) {
	return store.APIKey{}, s.err
}
func (s errStore) TouchAPIKey(context.Context, string, time.Time) error { return s.err }

func TestRememberedKeysAreBounded(t *testing.T) {
	fs := newFakeStore()
	clk := newClock()
	a := New(fs, Options{Now: clk.Now})
	defer a.Wait()
	a.maxEntries = 3
	var keys []string
	for i := range 5 {
		k, _ := fs.add(t, fmt.Sprint("user", i), "chat")
		keys = append(keys, k)
		if _, err := a.Authenticate(context.Background(), k); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
	}
	// Revalidating keys[2] makes keys[3] the oldest.
	if _, err := a.Authenticate(context.Background(), keys[2]); err != nil {
		t.Fatal(err)
	}
	k5, _ := fs.add(t, "user5", "chat")
	if _, err := a.Authenticate(context.Background(), k5); err != nil {
		t.Fatal(err)
	}
	if len(a.known) != 3 || a.order.Len() != 3 {
		t.Fatalf("%d keys remembered (%d in order), want 3", len(a.known), a.order.Len())
	}
	fs.setUnavailable(true)
	for i, k := range append(keys, k5) {
		_, err := a.Authenticate(context.Background(), k)
		want := i == 2 || i == 4 || i == 5
		if (err == nil) != want {
			t.Errorf("key %d during the outage: %v; want remembered: %v", i, err, want)
		}
	}
}

func TestTouchThrottled(t *testing.T) {
	fs := newFakeStore()
	clk := newClock()
	a := New(fs, Options{Now: clk.Now, TouchEvery: time.Minute})
	key, row := fs.add(t, "alice", "chat")
	other, otherRow := fs.add(t, "bob", "chat")
	auth := func(k string) {
		t.Helper()
		if _, err := a.Authenticate(context.Background(), k); err != nil {
			t.Fatal(err)
		}
	}
	auth(key)
	auth(key)
	clk.Advance(59 * time.Second)
	auth(key)
	auth(other)
	a.Wait()
	if _, touches := fs.stats(); len(touches) != 2 || !slices.Contains(touches, row.ID) || !slices.Contains(touches, otherRow.ID) {
		t.Fatalf("touches %v, want one per key", touches)
	}
	clk.Advance(time.Second)
	auth(key)
	auth(key)
	a.Wait()
	if _, touches := fs.stats(); len(touches) != 3 || touches[2] != row.ID {
		t.Fatalf("touches %v, want a second one for %s after a minute", touches, row.ID)
	}
	// A failing touch is not retried before TouchEvery either, and is not an error
	// of Authenticate.
	fs.mu.Lock()
	fs.touchErr = store.ErrUnavailable
	fs.mu.Unlock()
	clk.Advance(time.Minute)
	auth(key)
	auth(key)
	a.Wait()
	if _, touches := fs.stats(); len(touches) != 4 {
		t.Fatalf("touches %v, want 4", touches)
	}
}

// blockingStore blocks TouchAPIKey until released.
type blockingStore struct {
	*fakeStore
	release chan struct{}
}

func (b blockingStore) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	<-b.release
	return b.fakeStore.TouchAPIKey(ctx, id, at)
}

func TestTouchIsNotOnTheRequestPath(t *testing.T) {
	bs := blockingStore{fakeStore: newFakeStore(), release: make(chan struct{})}
	a := New(bs, Options{})
	key, _ := bs.add(t, "alice", "chat")
	done := make(chan error, 1)
	go func() {
		_, err := a.Authenticate(context.Background(), key)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Authenticate waited for TouchAPIKey")
	}
	close(bs.release)
	a.Wait()
	if _, touches := bs.stats(); len(touches) != 1 {
		t.Fatalf("touches %v, want 1", touches)
	}
}

func TestConcurrentUse(t *testing.T) {
	fs := newFakeStore()
	a := New(fs, Options{TouchEvery: time.Nanosecond})
	l := NewLimiter(nil)
	var keys []string
	for i := range 4 {
		k, _ := fs.add(t, fmt.Sprint("user", i), "chat")
		keys = append(keys, k)
	}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				k := keys[(g+i)%len(keys)]
				if i%50 == 25 {
					fs.setUnavailable(g%2 == 0)
				}
				p, err := a.Authenticate(context.Background(), k)
				if err != nil {
					if !errors.Is(err, store.ErrUnavailable) {
						t.Error(err)
					}
					continue
				}
				if _, err := l.Admit(context.Background(), p); err != nil && !errors.Is(err, ErrRateLimited) {
					t.Error(err)
				}
				l.Spend(p, 3)
			}
		})
	}
	wg.Wait()
	a.Wait()
}
