package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"net"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/netguard"
)

// Gate admits requests by API key (package auth's *Gate implements it, for the
// WebSocket protocol too).
type Gate interface {
	// Check authenticates key, requires scope and admits one request under the key's
	// rate limits.
	Check(ctx context.Context, key, scope string) (auth.Principal, error)
	// Verify authenticates key and requires scope, admitting no request (reading a
	// body is not one).
	Verify(ctx context.Context, key, scope string) (auth.Principal, error)
}

// Accountant accounts for served requests: rate-limit tokens and usage rows
// (package usage's *Recorder implements it).
type Accountant interface {
	Account(p auth.Principal, route, model string, promptTokens, completionTokens int)
}

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
