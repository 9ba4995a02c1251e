// Package e2e holds the end-to-end tests: they run the real ragway binary
// with real plugin processes and talk to it as users do, with the official
// OpenAI Go SDK, raw HTTP/SSE and WebSocket clients. It has no non-test code.
package e2e
