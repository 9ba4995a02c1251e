package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/store"
)

// Store is what the service needs of the repository (*store.Store implements it).
type Store interface {
	UserCredentials(ctx context.Context, name string) (store.Credentials, error)
	SignUp(ctx context.Context, a store.NewAccount) (store.User, error)
	CreateAPIKey(ctx context.Context, k store.NewAPIKey) (store.APIKey, error)
	RevokeAPIKey(ctx context.Context, prefix string) (store.APIKey, error)
	RevokeSessions(ctx context.Context, userID string) (int, error)
	CreateInvite(ctx context.Context, in store.NewInvite) error
	ReserveAttempt(ctx context.Context, keys []string, limits []int) ([]int64, time.Duration, error)
	ForgetAttempts(ctx context.Context, ids []int64, forget ...string) error
	InviteUsable(ctx context.Context, hash []byte, name string) error
	UserKeys(ctx context.Context, userID, kind string) ([]store.APIKey, error)
	RevokeUserKey(ctx context.Context, userID, prefix string) (store.APIKey, error)
	// What the admin pages read across users.
	ListUsers(ctx context.Context, p store.Page) ([]store.UserSummary, error)
	UserByName(ctx context.Context, name string) (store.User, error)
	UsageTotals(ctx context.Context, since time.Time, limit int) ([]store.UsageTotal, error)
}

// Sign-up modes (web.signup).
const (
	SignupInvite = "invite"
	SignupOpen   = "open"
	SignupOff    = "off"
)

// Options configures a Service. Zero values take the defaults.
type Options struct {
	// Signup is SignupInvite (default), SignupOpen or SignupOff.
	Signup string
	// SessionTTL is how long a session lasts from sign-in (default 30 days).
	SessionTTL time.Duration
	// InviteTTL is how long an invitation is valid (default 7 days).
	InviteTTL time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Throttles, within the store's 15-minute window: failed sign-ins per name and per
// address, sign-ups per address.
const (
	MaxFailuresPerNameAddr = 10  // one name from one address
	MaxFailuresPerAddr     = 30  // any names from one address
	MaxFailuresPerName     = 100 // one name from anywhere
	MaxSignupsPerAddr      = 10
)

// Bounds of names and passwords.
const (
	MaxNameRunes      = 64
	MinPasswordBytes  = 10
	MaxPasswordBytes  = 256
	concurrentHashing = 2
	// maxHashWaiting bounds the requests waiting to hash a password: more are
	// refused at once (ErrBusy) instead of queueing without end.
	maxHashWaiting = 16
)

// Service signs people up, in and out. Its methods are safe for concurrent use.
type Service struct {
	st      Store
	opts    Options
	hashing chan struct{} // one token per password hash being computed
	waiting atomic.Int32  // requests waiting for a token
	dummy   string        // a hash to check unknown names against, in the same time
}

// New returns a Service over st.
func New(st Store, opts Options) (*Service, error) {
	if opts.Signup == "" {
		opts.Signup = SignupInvite
	}
	if opts.SessionTTL <= 0 {
		opts.SessionTTL = 30 * 24 * time.Hour
	}
	if opts.InviteTTL <= 0 {
		opts.InviteTTL = 7 * 24 * time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	dummy, err := hashPassword("not anyone's password")
	if err != nil {
		return nil, err
	}
	return &Service{st: st, opts: opts, hashing: make(chan struct{}, concurrentHashing), dummy: dummy}, nil
}

// FieldError is input that is not valid: Field names it ("name", "password",
// "invite").
type FieldError struct{ Field, Reason string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Errors the routes map to answers.
var (
	// ErrBadCredentials: wrong name or password (which one is not said).
	ErrBadCredentials = errors.New("wrong name or password")
	// ErrSignupClosed: this site does not let people sign up (web.signup: off).
	ErrSignupClosed = errors.New("signing up is closed on this site")
	// ErrNameTaken: the name belongs to someone.
	ErrNameTaken = errors.New("the name is taken")
	// ErrBusy: too many passwords are being checked now; try again shortly.
	ErrBusy = errors.New("the server is checking too many passwords at once; try again in a moment")
)

// ThrottledError: too many failed sign-ins; try again after RetryAfter.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed sign-ins: try again in %s", e.RetryAfter.Round(time.Second))
}

// Session is a signed-in session.
type Session struct {
	User   store.User
	Scopes []string
	// Key is the session's secret, the cookie's value: shown once, never stored.
	Key       string
	ExpiresAt time.Time
}

// The session cookie's names: __Host- when it is Secure (browsers then take it only
// from this exact origin over TLS).
const (
	CookieName       = "ragway_session"
	SecureCookieName = "__Host-ragway_session"
)

// SecureCookies reports whether the session cookie is Secure for a request, by
// web.secure_cookies (mode): "always", "never", or "auto" (when it came over TLS).
func SecureCookies(mode string, tls bool) bool {
	switch mode {
	case "always":
		return true
	case "never":
		return false
	}
	return tls
}

// SessionCookie returns the session secret among a request's cookies (cookie gives
// a cookie's value by name), "" if there is none. When secure (the site's cookies are
// Secure for this request) only the __Host- cookie counts: a cookie without the
// prefix may have been planted by a sibling subdomain or a plain-HTTP answer.
func SessionCookie(secure bool, cookie func(name string) string) string {
	if v := cookie(SecureCookieName); v != "" || secure {
		return v
	}
	return cookie(CookieName)
}

// CSRFToken is the session's CSRF token: what a request that changes state must
// carry beside the cookie.
func (s Session) CSRFToken() string { return CSRFToken(s.Key) }

// CSRFToken derives the CSRF token of the session whose secret is key.
func CSRFToken(key string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte("ragway csrf v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF reports whether token is the CSRF token of the session key.
func CheckCSRF(key, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(CSRFToken(key)), []byte(token)) == 1
}

// Scopes are the scopes of a signed-in user's sessions.
func Scopes(u store.User) []string {
	if u.Admin {
		return []string{store.ScopeChat, store.ScopeIngest, store.ScopeAdmin}
	}
	return []string{store.ScopeChat, store.ScopeIngest}
}

// CheckName reports whether name can be an account's: 1 to MaxNameRunes letters,
// digits, '.', '_' or '-', not only dots (a path segment of dots is not a name: a URL
// naming the user would lose it).
func CheckName(name string) error {
	n := utf8.RuneCountInString(name)
	switch {
	case !utf8.ValidString(name) || n == 0 || n > MaxNameRunes:
		return &FieldError{"name", fmt.Sprintf("a name is 1 to %d characters", MaxNameRunes)}
	case strings.IndexFunc(name, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '.' && r != '_' && r != '-'
	}) >= 0:
		return &FieldError{"name", "a name has only letters, digits, '.', '_' and '-'"}
	case strings.Trim(name, ".") == "":
		return &FieldError{"name", "a name is not only dots"}
	}
	return nil
}

// CheckPassword reports whether password can be one: MinPasswordBytes to
// MaxPasswordBytes of UTF-8 text without NUL.
func CheckPassword(password string) error {
	switch {
	case len(password) < MinPasswordBytes:
		return &FieldError{"password", fmt.Sprintf("a password has at least %d characters", MinPasswordBytes)}
	case len(password) > MaxPasswordBytes:
		return &FieldError{"password", fmt.Sprintf("a password has at most %d bytes", MaxPasswordBytes)}
	case !utf8.ValidString(password) || strings.IndexByte(password, 0) >= 0:
		return &FieldError{"password", "a password is text (UTF-8, no NUL)"}
	}
	return nil
}

// HashPassword returns password's hash, at most concurrentHashing at once.
func (s *Service) HashPassword(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer s.release()
	return hashPassword(password)
}

func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.hashing <- struct{}{}:
		return nil
	default:
	}
	if s.waiting.Add(1) > maxHashWaiting {
		s.waiting.Add(-1)
		return ErrBusy
	}
	defer s.waiting.Add(-1)
	select {
	case s.hashing <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) release() { <-s.hashing }

// SignUp creates an account (with invite, an invitation code, when the site asks
// for one) and signs it in. addr is the client's address, for the throttle.
func (s *Service) SignUp(ctx context.Context, name, password, invite, addr string) (Session, error) {
	if s.opts.Signup == SignupOff {
		return Session{}, ErrSignupClosed
	}
	if err := CheckName(name); err != nil {
		return Session{}, err
	}
	if err := CheckPassword(password); err != nil {
		return Session{}, err
	}
	var inviteHash []byte
	switch {
	case invite != "":
		h := sha256.Sum256([]byte(invite))
		inviteHash = h[:]
	case s.opts.Signup == SignupInvite:
		return Session{}, &FieldError{"invite", "this site signs people up by invitation: ask an admin for a code"}
	}
	if _, err := s.reserve(ctx, []string{"signup:" + addressKey(addr)}, []int{MaxSignupsPerAddr}); err != nil {
		return Session{}, err
	}
	// What can be refused is refused before a password is hashed.
	if inviteHash != nil {
		if err := s.st.InviteUsable(ctx, inviteHash, name); errors.Is(err, store.ErrInviteInvalid) {
			return Session{}, errInvite
		} else if err != nil {
			return Session{}, fmt.Errorf("accounts: sign up: %w", err)
		}
	}
	if _, err := s.st.UserCredentials(ctx, name); err == nil {
		return Session{}, ErrNameTaken
	} else if !errors.Is(err, store.ErrNotFound) {
		return Session{}, fmt.Errorf("accounts: sign up: %w", err)
	}
	hash, err := s.HashPassword(ctx, password)
	if err != nil {
		return Session{}, err
	}
	u, err := s.st.SignUp(ctx, store.NewAccount{Name: name, PasswordHash: hash, InviteHash: inviteHash})
	switch {
	case errors.Is(err, store.ErrInviteInvalid):
		return Session{}, errInvite
	case errors.Is(err, store.ErrConflict):
		return Session{}, ErrNameTaken
	case err != nil:
		return Session{}, fmt.Errorf("accounts: sign up: %w", err)
	}
	return s.newSession(ctx, u)
}

var errInvite = &FieldError{"invite", "the invitation is not valid (unknown, used, lapsed, or for another name)"}

// reserve counts an attempt for keys under limits, or returns a *ThrottledError.
func (s *Service) reserve(ctx context.Context, keys []string, limits []int) ([]int64, error) {
	ids, retry, err := s.st.ReserveAttempt(ctx, keys, limits)
	if err != nil {
		return nil, fmt.Errorf("accounts: %w", err)
	}
	if retry > 0 {
		return nil, &ThrottledError{RetryAfter: retry}
	}
	return ids, nil
}

// addressKey is the throttle's key of a client address: an IPv6 address by its /64
// (one subscriber's), anything else as it is.
func addressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || !ip.Is6() || ip.Is4In6() {
		return truncate(addr, 64)
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// truncate cuts s to at most n bytes, at a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// SignIn checks name and password and opens a session. addr is the client's
// address, for the throttle: an attempt is counted before the password is checked
// (concurrent attempts cannot outrun it) and taken back when it succeeds.
func (s *Service) SignIn(ctx context.Context, name, password, addr string) (Session, error) {
	name200, addrKey := truncate(strings.ToLower(name), 200), addressKey(addr)
	nameKey := "name:" + name200
	ids, err := s.reserve(ctx, []string{"name@addr:" + name200 + "@" + addrKey, "addr:" + addrKey, nameKey},
		[]int{MaxFailuresPerNameAddr, MaxFailuresPerAddr, MaxFailuresPerName})
	if err != nil {
		return Session{}, err
	}
	var cred store.Credentials
	if CheckName(name) == nil && utf8.ValidString(password) {
		cred, err = s.st.UserCredentials(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return Session{}, fmt.Errorf("accounts: sign in: %w", err)
		}
	}
	hash := cred.PasswordHash
	if hash == "" {
		hash = s.dummy // the same work for an unknown name, or one without a password
	}
	if err := s.acquire(ctx); err != nil {
		return Session{}, err
	}
	ok := checkPassword(hash, password) && cred.PasswordHash != ""
	s.release()
	if !ok {
		return Session{}, ErrBadCredentials // the attempt stays counted
	}
	if err := s.st.ForgetAttempts(context.WithoutCancel(ctx), ids, nameKey, "name@addr:"+name200+"@"+addrKey); err != nil {
		return Session{}, fmt.Errorf("accounts: sign in: %w", err)
	}
	return s.newSession(ctx, cred.User)
}

// newSession makes a session of u: an API key of kind session.
func (s *Service) newSession(ctx context.Context, u store.User) (Session, error) {
	key, prefix, hash, err := auth.NewKey()
	if err != nil {
		return Session{}, fmt.Errorf("accounts: new session: %w", err)
	}
	expires := s.opts.Now().Add(s.opts.SessionTTL)
	scopes := Scopes(u)
	if _, err := s.st.CreateAPIKey(ctx, store.NewAPIKey{UserID: u.ID, Prefix: prefix, Hash: hash, Name: "website session",
		Scopes: scopes, Kind: store.KindSession, ExpiresAt: expires}); err != nil {
		return Session{}, fmt.Errorf("accounts: new session: %w", err)
	}
	return Session{User: u, Scopes: scopes, Key: key, ExpiresAt: expires}, nil
}

// SignOut revokes the session with that prefix (on every gateway).
func (s *Service) SignOut(ctx context.Context, prefix string) error {
	if !auth.ValidPrefix(prefix) {
		return nil
	}
	if _, err := s.st.RevokeAPIKey(ctx, prefix); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("accounts: sign out: %w", err)
	}
	return nil
}

// SignOutEverywhere revokes every session of user userID (its API keys stay).
func (s *Service) SignOutEverywhere(ctx context.Context, userID string) error {
	if _, err := s.st.RevokeSessions(ctx, userID); err != nil {
		return fmt.Errorf("accounts: sign out everywhere: %w", err)
	}
	return nil
}

// Invite makes an invitation code (shown once) for name ("": any free name), an admin
// of the site when admin; createdBy is the inviting user's id ("": the operator).
func (s *Service) Invite(ctx context.Context, createdBy, name string, admin bool) (code string, expires time.Time, err error) {
	if name != "" {
		if err := CheckName(name); err != nil {
			return "", time.Time{}, err
		}
	}
	raw := make([]byte, 18)
	if _, err := rand.Read(raw); err != nil {
		return "", time.Time{}, fmt.Errorf("accounts: invite: %w", err)
	}
	code = "inv_" + base64.RawURLEncoding.EncodeToString(raw)
	h := sha256.Sum256([]byte(code))
	expires = s.opts.Now().Add(s.opts.InviteTTL)
	if err := s.st.CreateInvite(ctx, store.NewInvite{Hash: h[:], Name: name, Admin: admin, CreatedBy: createdBy, ExpiresAt: expires}); err != nil {
		return "", time.Time{}, fmt.Errorf("accounts: invite: %w", err)
	}
	return code, expires, nil
}

// Key is an API key as its owner sees it.
type Key struct {
	Prefix, Name string
	Scopes       []string
	CreatedAt    time.Time
	LastUsedAt   time.Time // zero: never
	RevokedAt    time.Time // zero: active
}

func toKey(k store.APIKey) Key {
	return Key{Prefix: k.Prefix, Name: k.Name, Scopes: k.Scopes, CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt}
}

// Keys lists user userID's API keys (not its sessions), oldest first.
func (s *Service) Keys(ctx context.Context, userID string) ([]Key, error) {
	ks, err := s.st.UserKeys(ctx, userID, store.KindKey)
	if err != nil {
		return nil, fmt.Errorf("accounts: keys: %w", err)
	}
	out := make([]Key, len(ks))
	for i, k := range ks {
		out[i] = toKey(k)
	}
	return out, nil
}

// MaxKeyName bounds a key's name, in characters.
const MaxKeyName = 200

// CreateKey makes an API key of user userID named name with scopes, which must be
// among have (the scopes of the credential asking): nobody makes a key stronger than
// their own. It returns the key (its secret shown once).
func (s *Service) CreateKey(ctx context.Context, userID, name string, scopes, have []string) (string, Key, error) {
	if utf8.RuneCountInString(name) > MaxKeyName || !utf8.ValidString(name) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return "", Key{}, &FieldError{"name", fmt.Sprintf("a key's name is at most %d characters of text", MaxKeyName)}
	}
	if len(scopes) == 0 {
		return "", Key{}, &FieldError{"scopes", "give at least one scope"}
	}
	for _, sc := range scopes {
		if !slices.Contains(have, sc) {
			return "", Key{}, &FieldError{"scopes", fmt.Sprintf("the scope %q is not yours to give (yours: %s)", sc, strings.Join(have, ", "))}
		}
	}
	key, prefix, hash, err := auth.NewKey()
	if err != nil {
		return "", Key{}, fmt.Errorf("accounts: new key: %w", err)
	}
	k, err := s.st.CreateAPIKey(ctx, store.NewAPIKey{UserID: userID, Prefix: prefix, Hash: hash, Name: name, Scopes: slices.Clone(scopes)})
	if err != nil {
		return "", Key{}, fmt.Errorf("accounts: new key: %w", err)
	}
	return key, toKey(k), nil
}

// RevokeKey revokes user userID's API key with that prefix: another user's key, or a
// session, is store.ErrNotFound.
func (s *Service) RevokeKey(ctx context.Context, userID, prefix string) (Key, error) {
	k, err := s.st.RevokeUserKey(ctx, userID, prefix)
	if err != nil {
		return Key{}, fmt.Errorf("accounts: revoke key: %w", err)
	}
	return toKey(k), nil
}

// ErrNotFound: no such key of the user.
var ErrNotFound = store.ErrNotFound
