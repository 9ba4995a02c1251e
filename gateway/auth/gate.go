package auth

import (
	"context"
	"time"
)

// Gate admits requests: it authenticates the key, requires a scope and applies the
// key's rate limits, in that order. The HTTP and WebSocket layers call Check once per
// request (per chat on a socket).
type Gate struct {
	Auth *Authenticator
	// Limiter applies keys' limits: a *Limiter (this gateway's own buckets) or a
	// *SharedLimiter (every gateway's, on one database); nil: no limits.
	Limiter RateLimiter
}

// RateLimiter applies keys' requests-per-minute and tokens-per-minute limits.
type RateLimiter interface {
	// Admit takes one request of p's allowance, or returns a *RateLimitError and the
	// time until the key may make its next request.
	Admit(ctx context.Context, p Principal) (retryAfter time.Duration, err error)
	// Spend charges the tokens a request of p used.
	Spend(p Principal, tokens int)
}

// Admitter admits requests by API key (*Gate implements it): what a transport needs
// of keys.
type Admitter interface {
	// Check authenticates key, requires scope and admits one request under the
	// key's rate limits.
	Check(ctx context.Context, key, scope string) (Principal, error)
	// Verify authenticates key and requires scope, admitting no request (opening a
	// socket, reading a body before its route runs).
	Verify(ctx context.Context, key, scope string) (Principal, error)
}

// Check authenticates key ("" is ErrNoKey), requires scope and admits one request
// under the key's requests-per-minute and tokens-per-minute limits.
func (g *Gate) Check(ctx context.Context, key, scope string) (Principal, error) {
	p, err := g.Verify(ctx, key, scope)
	if err != nil {
		return Principal{}, err
	}
	if g.Limiter != nil {
		if _, err := g.Limiter.Admit(ctx, p); err != nil {
			return Principal{}, err
		}
	}
	return p, nil
}

// Verify authenticates key ("" is ErrNoKey) and requires scope, without admitting a
// request: for credentials that are not a request themselves (opening a WebSocket).
func (g *Gate) Verify(ctx context.Context, key, scope string) (Principal, error) {
	if key == "" {
		return Principal{}, ErrNoKey
	}
	p, err := g.Auth.Authenticate(ctx, key)
	if err != nil {
		return Principal{}, err
	}
	if err := RequireScope(p, scope); err != nil {
		return Principal{}, err
	}
	return p, nil
}

// Spend charges tokens to the key's tokens-per-minute limit.
func (g *Gate) Spend(p Principal, tokens int) {
	if g.Limiter != nil {
		g.Limiter.Spend(p, tokens)
	}
}
