// Package ws serves the gateway's WebSocket chat protocol at GET /v1/ws
// (mounted by package api). One socket carries several concurrent chats,
// told apart by a client-chosen id.
//
// Client frames (JSON text):
//
//	{"type":"chat","id":"c1","model":"chat","messages":[{"role":"user","content":"hi"}],"params":{"temperature":0.7,"max_tokens":64}}
//	{"type":"chat","id":"c2","model":"chat","content":"hi"}   (a single user message)
//	{"type":"cancel","id":"c1"}
//	{"type":"ping"}
//
// Server frames:
//
//	{"type":"start","id":"c1","model":"chat"}
//	{"type":"token","id":"c1","text":"Hel"}
//	{"type":"done","id":"c1","finish_reason":"stop"|"length"|"cancelled","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}
//	{"type":"error","id":"c1","error":{"message":"…","type":"…","param":null,"code":"…"}}   (id omitted when unknown)
//	{"type":"pong"}
//
// Every accepted chat gets start, then tokens, then exactly one done or
// error, and nothing after it. A cancel is answered with done
// "cancelled" at once, without waiting for the backend to stop. Frames the
// server cannot accept (malformed JSON, unknown type, missing or invalid
// fields, a duplicate active id, too many chats) are answered with an
// error frame and the socket stays usable. Errors use the same types and
// codes as the HTTP API (package oai).
//
// Each socket has one writer goroutine fed by bounded queues: when the
// client reads slowly, generations block (backpressure) instead of the
// server buffering. Protocol pings every PingInterval and a read deadline
// of two intervals drop dead peers; closing the socket cancels all its
// chats.
//
// Chats are stateless here: messages carries the history. Server-side
// conversations, persistence, RAG sources and authentication are not
// part of this package yet.
package ws
