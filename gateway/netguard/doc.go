// Package netguard bounds what a client that has not proved who it is can hold of the
// server: it wraps the gateway's listener so that every connection must deliver its
// first request's headers within a deadline, and so that connections that have not yet
// carried an authenticated request are limited in number, overall and per client IP.
//
// A connection counts as unauthenticated from its accept until the HTTP or WebSocket
// layer calls [Authenticated] on it (after a key was verified); it then stops counting
// against the limits for the rest of its life. A connection accepted beyond a limit is
// answered 503 in the OpenAI error shape and closed at once.
//
// It also closes connections gracefully (lingering close): the write side is shut down
// first and whatever the client is still sending is read and discarded for a short time,
// so that a client still sending when the server gives up on it reads the response
// instead of a connection reset.
//
// It is not a rate limiter for authenticated traffic (package auth has those) and knows
// nothing of HTTP beyond the one refusal it writes.
package netguard
