package accounts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

func open(t *testing.T, opts Options) (*Service, *store.Store, *auth.Authenticator) {
	t.Helper()
	st, err := store.Open(pgtest.Database(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, st, auth.New(st, auth.Options{Now: opts.Now})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestPasswordHash(t *testing.T) {
	h, err := hashPassword("correct horse battery")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q, %v", h, err)
	}
	h2, _ := hashPassword("correct horse battery")
	if h == h2 {
		t.Error("two hashes of one password are equal: no salt")
	}
	if !checkPassword(h, "correct horse battery") || checkPassword(h, "correct horse batterY") {
		t.Error("checkPassword does not tell the password apart")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", h[:len(h)-3],
		"$argon2id$v=19$m=999999999,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"} {
		if checkPassword(bad, "x") {
			t.Errorf("the hash %q matches", bad)
		}
	}
}

func TestCSRF(t *testing.T) {
	a, b := CSRFToken("rgw_aaaaaaaa_secret1"), CSRFToken("rgw_aaaaaaaa_secret2")
	if a == b || !CheckCSRF("rgw_aaaaaaaa_secret1", a) || CheckCSRF("rgw_aaaaaaaa_secret1", b) || CheckCSRF("rgw_aaaaaaaa_secret1", "") {
		t.Error("CSRF tokens are not bound to their session")
	}
}

// TestSignUpAndIn: by invitation (used once, for its name, admin when it says), a
// session that authenticates through package auth with the user's scopes, sign-in
// with the right password only, sign-out (that session), sign-out everywhere (every
// session, not the keys), and an expired session refused.
func TestSignUpAndIn(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, st, authn := open(t, Options{Now: clock})
	c := ctx(t)

	if _, err := s.SignUp(c, "alice", "long enough password", "", "10.0.0.9"); !isField(err, "invite") {
		t.Fatalf("sign up without an invitation on an invite-only site: %v", err)
	}
	code, _, err := s.Invite(c, "", "alice", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignUp(c, "mallory", "long enough password", code, "10.0.0.9"); !isField(err, "invite") {
		t.Fatalf("someone else with alice's invitation: %v", err)
	}
	for _, tc := range []struct{ name, password, field string }{
		{"a b", "long enough password", "name"}, {"..", "long enough password", "name"}, {".", "long enough password", "name"}, {"", "long enough password", "name"}, {strings.Repeat("n", 65), "long enough password", "name"},
		{"alice", "short", "password"}, {"alice", "nul \x00 in a password", "password"}, {"alice", strings.Repeat("p", 257), "password"},
	} {
		if _, err := s.SignUp(c, tc.name, tc.password, code, "10.0.0.9"); !isField(err, tc.field) {
			t.Errorf("sign up %q/%q: %v, want a field error on %s", tc.name, tc.password, err, tc.field)
		}
	}
	sess, err := s.SignUp(c, "alice", "long enough password", code, "10.0.0.9")
	if err != nil || sess.User.Name != "alice" || !sess.User.Admin || len(sess.Scopes) != 3 {
		t.Fatalf("sign up: %+v, %v", sess, err)
	}
	if _, err := s.SignUp(c, "alice", "long enough password", code, "10.0.0.9"); !isField(err, "invite") {
		t.Fatalf("an invitation used twice: %v", err)
	}
	p, err := authn.Authenticate(c, sess.Key)
	if err != nil || !p.Session || p.UserName != "alice" || !p.Has(store.ScopeAdmin) {
		t.Fatalf("the session authenticates as %+v, %v", p, err)
	}

	if _, err := s.SignIn(c, "alice", "wrong password!!", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a wrong password: %v", err)
	}
	if _, err := s.SignIn(c, "nobody", "long enough password", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("an unknown name: %v", err)
	}
	second, err := s.SignIn(c, "alice", "long enough password", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SignOut(c, strings.Join(strings.SplitN(sess.Key, "_", 3)[:2], "_")); err != nil {
		t.Fatal(err)
	}
	if _, err := authn.Authenticate(c, sess.Key); !errors.Is(err, auth.ErrRevokedKey) {
		t.Fatalf("a signed-out session: %v", err)
	}
	if _, err := authn.Authenticate(c, second.Key); err != nil {
		t.Fatalf("the other session after signing one out: %v", err)
	}
	u, _ := st.UserByName(c, "alice")
	key, prefix, hash, _ := auth.NewKey()
	if _, err := st.CreateAPIKey(c, store.NewAPIKey{UserID: u.ID, Prefix: prefix, Hash: hash, Scopes: []string{"chat"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.SignOutEverywhere(c, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := authn.Authenticate(c, second.Key); !errors.Is(err, auth.ErrRevokedKey) {
		t.Fatalf("a session after signing out everywhere: %v", err)
	}
	if _, err := authn.Authenticate(c, key); err != nil {
		t.Fatalf("an API key after signing out everywhere: %v", err)
	}

	third, _ := s.SignIn(c, "alice", "long enough password", "10.0.0.1")
	now = now.Add(31 * 24 * time.Hour)
	if _, err := authn.Authenticate(c, third.Key); !errors.Is(err, auth.ErrExpiredKey) {
		t.Fatalf("a session past its expiry: %v", err)
	}
	if keys, err := st.UserKeys(c, u.ID, store.KindKey); err != nil || len(keys) != 1 {
		t.Fatalf("the user's keys: %d, %v; want the one key, no sessions", len(keys), err)
	}
}

// TestSignupModes: open lets anyone in, off no one.
func TestSignupModes(t *testing.T) {
	open1, _, _ := open(t, Options{Signup: SignupOpen})
	if _, err := open1.SignUp(ctx(t), "bob", "long enough password", "", "10.0.0.9"); err != nil {
		t.Fatalf("open sign-up: %v", err)
	}
	if _, err := open1.SignUp(ctx(t), "bob", "another long password", "", "10.0.0.9"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("a taken name: %v", err)
	}
	off, _, _ := open(t, Options{Signup: SignupOff})
	if _, err := off.SignUp(ctx(t), "bob", "long enough password", "", "10.0.0.9"); !errors.Is(err, ErrSignupClosed) {
		t.Fatalf("sign-up off: %v", err)
	}
}

// TestSignInThrottle: 10 failures for a name from one address hold that name there
// for the window, whatever the password then, while the right password from another
// address still works; 30 guesses at once are no more than 10 password checks; a new
// password ends the user's sessions.
func TestSignInThrottle(t *testing.T) {
	s, st, authn := open(t, Options{Signup: SignupOpen})
	c := ctx(t)
	sess, err := s.SignUp(c, "carol", "long enough password", "", "10.0.0.9")
	if err != nil {
		t.Fatal(err)
	}
	for i := range MaxFailuresPerNameAddr {
		if _, err := s.SignIn(c, "carol", "wrong password!!", "10.0.0.1"); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	var th *ThrottledError
	if _, err := s.SignIn(c, "Carol", "long enough password", "10.0.0.1"); !errors.As(err, &th) || th.RetryAfter <= 0 || th.RetryAfter > 15*time.Minute {
		t.Fatalf("the right password after 10 failures from that address: %v", err)
	}
	if _, err := s.SignIn(c, "carol", "long enough password", "10.0.0.2"); err != nil {
		t.Fatalf("the right password from another address: %v", err)
	}

	// Guesses in parallel from one address of a /64: at most 10 are checked.
	var wg sync.WaitGroup
	var checked, throttled atomic.Int32
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.SignIn(c, "dave", "wrong password!!", fmt.Sprintf("2001:db8::%x", i+1))
			switch {
			case errors.Is(err, ErrBadCredentials):
				checked.Add(1)
			case errors.As(err, new(*ThrottledError)), errors.Is(err, ErrBusy):
				throttled.Add(1)
			default:
				t.Errorf("guess: %v", err)
			}
		}()
	}
	wg.Wait()
	if checked.Load() > MaxFailuresPerNameAddr {
		t.Errorf("%d guesses were checked at once, want at most %d", checked.Load(), MaxFailuresPerNameAddr)
	}

	// A new password ends the sessions of the old one.
	newHash, _ := s.HashPassword(c, "another long password")
	if _, err := st.SetPassword(c, "carol", newHash, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := authn.Authenticate(c, sess.Key); !errors.Is(err, auth.ErrRevokedKey) {
		t.Fatalf("a session after the password changed: %v", err)
	}
}

func isField(err error, field string) bool {
	var fe *FieldError
	return errors.As(err, &fe) && fe.Field == field
}
