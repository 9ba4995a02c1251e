// Package accounts is the website's accounts: signing up (open, by invitation, or
// not at all), signing in with a password (argon2id), sessions, which are API keys of
// kind session so that they authenticate, scope, limit and revoke through package
// auth like every key, the CSRF token a session's cookie needs on requests that change
// state, invitations, and the throttle on failed sign-ins (counted in Postgres, for
// every gateway). docs/web.md is its contract.
//
// What it is not: it sets no cookie and reads no request (package api does), and it
// does not decide what a scope allows (package auth and the routes do).
package accounts
