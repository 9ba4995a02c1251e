// Package apitest provides a scripted, in-memory stand-in for the workers,
// for tests of the HTTP and WebSocket layers (packages api and ws). It is
// not used outside tests.
package apitest
