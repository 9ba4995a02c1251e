package api

import (
	"crypto/subtle"
	"errors"
	"net"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/netguard"
)

// Gate admits requests by API key (package auth's *Gate implements it).
type Gate = auth.Admitter

// Accountant accounts for served requests: rate-limit tokens and usage rows
// (package usage's *Recorder implements it).
type Accountant = chat.Accountant

const principalKey ctxKey = requestIDKey + 1

// requireScope authenticates the request's bearer key and requires scope; the
// principal is kept for the handler (principalOf). It then marks the connection
// authenticated (netguard) and decodes the body (decodeBody): nothing of a body is
// decoded or parsed before its key is checked.
func (s *server) requireScope(scope string) fiber.Handler {
	return func(c *fiber.Ctx) error {
		key, err := auth.BearerToken(c.Get(fiber.HeaderAuthorization))
		if err != nil && !errors.Is(err, auth.ErrNoKey) {
			return err
		}
		if key == "" && s.opts.Accounts != nil {
			// The website's session cookie: an ambient credential, so a request that
			// changes state must prove it comes from this site's page.
			if key = s.sessionCookie(c); key != "" {
				if err := checkCookieRequest(c, key); err != nil {
					return err
				}
				c.Locals(localFromCookie, key)
			}
		}
		// No key is the gate's to refuse (auth.ErrNoKey).
		p, err := s.opts.Gate.Check(c.UserContext(), key, scope)
		if err != nil {
			return err
		}
		if c.Get(headerWithheld) != "" {
			return withheld
		}
		c.Locals(principalKey, p)
		netguard.Authenticated(c.Context().Conn())
		if err := s.decodeBody(c); err != nil {
			return err
		}
		return c.Next()
	}
}

func principalOf(c *fiber.Ctx) auth.Principal {
	p, _ := c.Locals(principalKey).(auth.Principal)
	return p
}

// metricsAccess guards /metrics: open when the server listens on loopback only and no
// token is configured; with MetricsToken it takes that bearer token; otherwise it
// needs a key with the admin scope.
func (s *server) metricsAccess(c *fiber.Ctx) error {
	if s.opts.MetricsToken != "" {
		tok, err := auth.BearerToken(c.Get(fiber.HeaderAuthorization))
		if err != nil || subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.MetricsToken)) != 1 {
			return auth.ErrInvalidKey
		}
		return c.Next()
	}
	if s.opts.MetricsOpen {
		return c.Next()
	}
	return s.requireScope(auth.ScopeAdmin)(c)
}

// IsLoopback reports whether the listen address binds loopback interfaces only.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
