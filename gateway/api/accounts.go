package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/accounts"
	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/oai"
)

const (
	headerCSRF      = "X-CSRF-Token"
	localFromCookie = ctxKey(100) // the request's credential is the session cookie
)

// accountRoutes mounts /auth (signing up, in and out), /v1/keys (a user's own keys)
// and /admin/invites.
func (s *server) accountRoutes(app *fiber.App) {
	app.Post("/auth/signup", s.signUp)
	app.Post("/auth/signin", s.signIn)
	chat := s.requireScope(auth.ScopeChat)
	app.Get("/auth/session", chat, s.session)
	app.Post("/auth/signout", chat, s.signOut)
	app.Post("/auth/signout-everywhere", chat, s.signOutEverywhere)
	app.Get("/v1/keys", chat, s.listKeys)
	app.Post("/v1/keys", chat, s.createKey)
	app.Delete("/v1/keys/:prefix", chat, s.revokeKey)
	app.Post("/admin/invites", s.requireScope(auth.ScopeAdmin), s.createInvite)
}

// secureCookies reports whether the session cookie is Secure for this request.
func (s *server) secureCookies(c *fiber.Ctx) bool {
	return accounts.SecureCookies(s.opts.SecureCookies, c.Context().IsTLS())
}

// sessionCookie returns the session's secret from the request's cookie, "" if none.
func (s *server) sessionCookie(c *fiber.Ctx) string {
	return accounts.SessionCookie(s.secureCookies(c), func(name string) string { return c.Cookies(name) })
}

// setSession sets (key != "") or clears the session cookie.
func (s *server) setSession(c *fiber.Ctx, key string, expires time.Time) {
	secure := s.secureCookies(c)
	name := accounts.CookieName
	if secure {
		name = accounts.SecureCookieName
	}
	ck := &fiber.Cookie{Name: name, Value: key, Path: "/", HTTPOnly: true, Secure: secure, SameSite: fiber.CookieSameSiteLaxMode, Expires: expires}
	if key == "" {
		ck.Expires, ck.MaxAge = time.Unix(1, 0), -1
	}
	c.Cookie(ck)
}

// checkCookieRequest applies the cookie's rules to a request authenticated by it: a
// request that changes state carries the session's CSRF token and, when it sends
// Origin, comes from this origin.
func checkCookieRequest(c *fiber.Ctx, key string) error {
	switch c.Method() {
	case fiber.MethodGet, fiber.MethodHead, fiber.MethodOptions:
		return nil
	}
	if !sameOrigin(c) {
		return &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: "cross_origin",
			Message: "a request from another origin cannot use this site's session"}
	}
	if !accounts.CheckCSRF(key, c.Get(headerCSRF)) {
		return &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: "csrf_token", Param: headerCSRF,
			Message: "this request needs the session's CSRF token in " + headerCSRF + " (GET /auth/session gives it)"}
	}
	return nil
}

// sameOrigin reports whether the request's Origin (when it sends one) is this host.
func sameOrigin(c *fiber.Ctx) bool {
	origins := c.Request().Header.PeekAll(fiber.HeaderOrigin)
	switch len(origins) {
	case 0:
		return true
	case 1:
	default:
		return false
	}
	u, err := url.Parse(string(origins[0]))
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Host == string(c.Request().Host())
}

type userJSON struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Admin bool   `json:"admin"`
}

type sessionJSON struct {
	Object    string   `json:"object"`
	User      userJSON `json:"user"`
	Scopes    []string `json:"scopes"`
	CSRFToken string   `json:"csrf_token,omitempty"`
	ExpiresAt int64    `json:"expires_at,omitempty"`
}

// accountError maps the accounts service's errors to answers.
func accountError(err error) error {
	var fe *accounts.FieldError
	var th *accounts.ThrottledError
	switch {
	case errors.As(err, &fe):
		return oai.Invalid(fe.Field, oai.CodeInvalidValue, "invalid '%s': %s", fe.Field, fe.Reason)
	case errors.As(err, &th):
		return &oai.Error{Status: http.StatusTooManyRequests, Type: oai.TypeRateLimit, Code: "too_many_signins", RetryAfter: th.RetryAfter,
			Message: th.Error()}
	case errors.Is(err, accounts.ErrBadCredentials):
		return &oai.Error{Status: http.StatusUnauthorized, Type: oai.TypeAuthentication, Code: "invalid_credentials", Message: err.Error()}
	case errors.Is(err, accounts.ErrSignupClosed):
		return &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: "signup_closed", Message: err.Error()}
	case errors.Is(err, accounts.ErrNameTaken):
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: oai.CodeConflict, Param: "name", Message: "that name is taken"}
	case errors.Is(err, accounts.ErrBusy):
		return &oai.Error{Status: http.StatusServiceUnavailable, Type: oai.TypeServer, Code: "busy", RetryAfter: time.Second, Message: err.Error()}
	}
	return err
}

// plainBody checks a sign-up's or sign-in's request, read before any credential: a
// plain JSON body of a few hundred bytes, from a page of this origin. A form of
// another site (which can post text/plain that parses as JSON) cannot sign the
// browser into an account of the attacker's.
func plainBody(c *fiber.Ctx) error {
	if ct, _, _ := strings.Cut(c.Get(fiber.HeaderContentType), ";"); !strings.EqualFold(strings.TrimSpace(ct), fiber.MIMEApplicationJSON) {
		return &oai.Error{Status: http.StatusUnsupportedMediaType, Type: oai.TypeInvalidRequest, Code: "unsupported_media_type",
			Param: fiber.HeaderContentType, Message: "send the body as application/json"}
	}
	if !sameOrigin(c) || c.Get("Sec-Fetch-Site") == "cross-site" {
		return &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: "cross_origin",
			Message: "signing in or up is done from this site's own page"}
	}
	for _, v := range c.Request().Header.PeekAll(fiber.HeaderContentEncoding) {
		if s := string(v); s != "" && s != "identity" {
			return &oai.Error{Status: http.StatusUnsupportedMediaType, Type: oai.TypeInvalidRequest, Code: "unsupported_encoding",
				Param: fiber.HeaderContentEncoding, Message: "send this body plain"}
		}
	}
	if c.Get(headerWithheld) != "" || len(c.Body()) > authBodyBytes {
		// Not read (over authBodyBytes, or sent chunked): said, not mistaken for empty.
		return &oai.Error{Status: http.StatusRequestEntityTooLarge, Type: oai.TypeInvalidRequest, Code: oai.CodeTooLarge,
			Message: "this body is at most 16 KiB, sent with a Content-Length"}
	}
	return nil
}

func (s *server) startSession(c *fiber.Ctx, status int, sess accounts.Session) error {
	// The session this browser had (another account's, or the same one's) ends.
	if old := s.sessionCookie(c); old != "" {
		if prefix, ok := auth.PrefixOf(old); ok {
			_ = s.opts.Accounts.SignOut(c.UserContext(), prefix)
		}
	}
	s.setSession(c, sess.Key, sess.ExpiresAt)
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.Status(status).JSON(sessionJSON{Object: "session", User: userJSON{ID: sess.User.ID, Name: sess.User.Name, Admin: sess.User.Admin},
		Scopes: sess.Scopes, CSRFToken: sess.CSRFToken(), ExpiresAt: sess.ExpiresAt.Unix()})
}

// signUp serves POST /auth/signup {"name", "password", "invite"?}.
func (s *server) signUp(c *fiber.Ctx) error {
	if err := plainBody(c); err != nil {
		return err
	}
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Invite   string `json:"invite"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	sess, err := s.opts.Accounts.SignUp(c.UserContext(), req.Name, req.Password, req.Invite, s.clientAddrOf(c))
	if err != nil {
		return accountError(err)
	}
	return s.startSession(c, fiber.StatusCreated, sess)
}

// signIn serves POST /auth/signin {"name", "password"}.
func (s *server) signIn(c *fiber.Ctx) error {
	if err := plainBody(c); err != nil {
		return err
	}
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	if req.Name == "" {
		return oai.Missing("name")
	}
	if req.Password == "" {
		return oai.Missing("password")
	}
	sess, err := s.opts.Accounts.SignIn(c.UserContext(), req.Name, req.Password, s.clientAddrOf(c))
	if err != nil {
		return accountError(err)
	}
	return s.startSession(c, fiber.StatusOK, sess)
}

// session serves GET /auth/session: who the credential is, and, for the session
// cookie, its CSRF token.
func (s *server) session(c *fiber.Ctx) error {
	p := principalOf(c)
	out := sessionJSON{Object: "session", User: userJSON{ID: p.UserID, Name: p.UserName, Admin: p.Has(auth.ScopeAdmin)}, Scopes: p.Scopes}
	if key, ok := c.Locals(localFromCookie).(string); ok {
		out.CSRFToken = accounts.CSRFToken(key)
	}
	if !p.ExpiresAt.IsZero() {
		out.ExpiresAt = p.ExpiresAt.Unix()
	}
	c.Set(fiber.HeaderCacheControl, "no-store")
	return c.JSON(out)
}

// signOut serves POST /auth/signout: the session (or key) the request came with is
// revoked, the cookie cleared.
func (s *server) signOut(c *fiber.Ctx) error {
	p := principalOf(c)
	if err := requireSession(p); err != nil {
		return err
	}
	if err := s.opts.Accounts.SignOut(c.UserContext(), p.Prefix); err != nil {
		return err
	}
	s.setSession(c, "", time.Time{})
	return c.JSON(fiber.Map{"object": "session.signed_out"})
}

// signOutEverywhere serves POST /auth/signout-everywhere: every session of the user.
func (s *server) signOutEverywhere(c *fiber.Ctx) error {
	if err := requireSession(principalOf(c)); err != nil {
		return err
	}
	if err := s.opts.Accounts.SignOutEverywhere(c.UserContext(), principalOf(c).UserID); err != nil {
		return err
	}
	s.setSession(c, "", time.Time{})
	return c.JSON(fiber.Map{"object": "session.signed_out_everywhere"})
}

// requireSession refuses a request whose credential is not a website session: what
// manages the account (its keys, its sessions) needs the person, not a program's key
// (a leaked key could otherwise mint keys that outlive it).
func requireSession(p auth.Principal) error {
	if p.Session {
		return nil
	}
	return &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: "session_required",
		Message: "this is done signed in on the website, not with an API key"}
}

type keyJSON struct {
	Object     string   `json:"object"`
	Prefix     string   `json:"prefix"`
	Name       string   `json:"name"`
	Scopes     []string `json:"scopes"`
	CreatedAt  int64    `json:"created_at"`
	LastUsedAt int64    `json:"last_used_at,omitempty"`
	RevokedAt  int64    `json:"revoked_at,omitempty"`
	Key        string   `json:"key,omitempty"`
}

func toKeyJSON(k accounts.Key) keyJSON {
	out := keyJSON{Object: "api_key", Prefix: k.Prefix, Name: k.Name, Scopes: k.Scopes, CreatedAt: k.CreatedAt.Unix()}
	if !k.LastUsedAt.IsZero() {
		out.LastUsedAt = k.LastUsedAt.Unix()
	}
	if !k.RevokedAt.IsZero() {
		out.RevokedAt = k.RevokedAt.Unix()
	}
	return out
}

func (s *server) listKeys(c *fiber.Ctx) error {
	ks, err := s.opts.Accounts.Keys(c.UserContext(), principalOf(c).UserID)
	if err != nil {
		return err
	}
	return c.JSON(list(ks, toKeyJSON))
}

// createKey serves POST /v1/keys {"name", "scopes"?}: a key of the caller's, with at
// most the caller's scopes (default: chat).
func (s *server) createKey(c *fiber.Ctx) error {
	var req struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	if req.Scopes == nil {
		req.Scopes = []string{auth.ScopeChat}
	}
	p := principalOf(c)
	if err := requireSession(p); err != nil {
		return err
	}
	key, k, err := s.opts.Accounts.CreateKey(c.UserContext(), p.UserID, req.Name, slices.Compact(slices.Sorted(slices.Values(req.Scopes))), p.Scopes)
	if err != nil {
		return accountError(err)
	}
	out := toKeyJSON(k)
	out.Key = key
	return c.Status(fiber.StatusCreated).JSON(out)
}

func (s *server) revokeKey(c *fiber.Ctx) error {
	if err := requireSession(principalOf(c)); err != nil {
		return err
	}
	prefix := c.Params("prefix")
	if !auth.ValidPrefix(prefix) {
		return oai.Invalid("prefix", oai.CodeInvalidValue, "a key's prefix looks like rgw_xxxxxxxx")
	}
	k, err := s.opts.Accounts.RevokeKey(c.UserContext(), principalOf(c).UserID, prefix)
	if err != nil {
		return notFound(err, accounts.ErrNotFound, "API key", prefix)
	}
	return c.JSON(toKeyJSON(k))
}

// createInvite serves POST /admin/invites {"name"?, "admin"?}.
func (s *server) createInvite(c *fiber.Ctx) error {
	var req struct {
		Name  string `json:"name"`
		Admin bool   `json:"admin"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	code, expires, err := s.opts.Accounts.Invite(c.UserContext(), principalOf(c).UserID, req.Name, req.Admin)
	if err != nil {
		return accountError(err)
	}
	return c.Status(fiber.StatusCreated).JSON(fiber.Map{"object": "invite", "code": code, "name": req.Name, "admin": req.Admin,
		"expires_at": expires.Unix(), "note": fmt.Sprintf("shown once; valid until %s", expires.UTC().Format(time.RFC3339))})
}
