package auth

import (
	"errors"
	"fmt"
	"math"
	"time"
)

var (
	// ErrNoKey: the request carries no API key.
	ErrNoKey = errors.New("no API key given")
	// ErrInvalidKey: the key is malformed, unknown, or its secret is wrong.
	ErrInvalidKey = errors.New("invalid API key")
	// ErrRevokedKey: the key was revoked.
	ErrRevokedKey = errors.New("API key revoked")
	// ErrExpiredKey: the key (a website session) has expired; it is an
	// ErrRevokedKey too.
	ErrExpiredKey = fmt.Errorf("%w: expired", ErrRevokedKey)
	// ErrMissingScope: the key lacks the scope the operation needs (see [ScopeError]).
	ErrMissingScope = errors.New("API key lacks a required scope")
	// ErrRateLimited: the key is over one of its limits (see [RateLimitError]).
	ErrRateLimited = errors.New("rate limit exceeded")
)

// ScopeError is the error of [RequireScope]: the key lacks Scope. It satisfies
// errors.Is(err, ErrMissingScope).
type ScopeError struct {
	Scope string
}

func (e ScopeError) Error() string {
	return fmt.Sprintf("the API key lacks the %q scope", e.Scope)
}

// Unwrap returns ErrMissingScope.
func (e ScopeError) Unwrap() error { return ErrMissingScope }

// RequireScope returns nil if p carries scope, else a [ScopeError].
func RequireScope(p Principal, scope string) error {
	if p.Has(scope) {
		return nil
	}
	return ScopeError{Scope: scope}
}

// Limits a [RateLimitError] names.
const (
	LimitRequests = "requests"
	LimitTokens   = "tokens"
)

// RateLimitError is the error of [Limiter.Admit]: the key is over its requests or
// tokens per minute. It satisfies errors.Is(err, ErrRateLimited).
type RateLimitError struct {
	// Limit is LimitRequests or LimitTokens.
	Limit string
	// RetryAfter is how long until the key may make its next request.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("rate limit exceeded: too many %s per minute for this API key; retry in %ds",
		e.Limit, RetryAfterSeconds(e.RetryAfter))
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// QuotaError is the error of [SharedLimiter.Admit] for a user whose token quota is
// used up. It satisfies errors.Is(err, ErrRateLimited).
type QuotaError struct {
	// Period is "daily" or "monthly".
	Period string
	// Quota is the quota, in tokens.
	Quota int64
	// ResetAt is when the period ends (UTC midnight, the first of a month).
	ResetAt time.Time
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("the %s token quota of %d tokens of this key's user is used up; it resets at %s",
		e.Period, e.Quota, e.ResetAt.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrRateLimited.
func (e *QuotaError) Unwrap() error { return ErrRateLimited }

// RetryAfterSeconds rounds d up to whole seconds, at least 1: the value of a
// Retry-After header.
func RetryAfterSeconds(d time.Duration) int {
	s := math.Ceil(d.Seconds())
	if s < 1 {
		return 1
	}
	return int(s)
}
