// Package api is the gateway's HTTP surface on Fiber: the OpenAI API
// (/v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings, with
// SSE streaming), knowledge bases and conversations, and the operational routes
// /healthz, /readyz and /metrics. The WebSocket protocol (package ws) is mounted
// on the same app by cmd/ragway.
//
// A chat or completion request is decoded here into a chat.Request and run by the
// chat core (package chat), whose events this package writes as SSE chunks
// (stream.go) or gathers into one JSON completion (collect.go). The resource routes
// call services (packages knowledge, conversations, health); nothing here reaches
// the store (enforced by internal/importcheck).
//
// Every error leaving any route, including Fiber's own (unknown route,
// wrong method, body too large) and recovered panics, has the OpenAI shape
// {"error":{"message","type","param","code"}}; package oai maps gateway and
// backend errors onto it.
//
// Streaming responses do not commit to 200 until the backend produced its
// first event or a heartbeat is due (for a stored turn, not before its start:
// its headers name the conversation), so errors that happen before that
// (unknown model, full queue, backend failure) are ordinary HTTP errors.
// Fasthttp cannot see a client go away on its own: a stream learns it when
// a write fails, which heartbeats make happen while the backend is quiet,
// and then cancels the generation at once.
//
// fasthttp rejects an oversize body as soon as it has read the headers
// and closes the socket; closing with the body unread would make the
// kernel reset the connection and the client would see "connection reset"
// instead of the 413. The 413 path therefore drains the body first;
// netguard.Listen's connections do the same for every connection the server
// closes.
//
// Subpackage apitest is a scripted fake of the workers for tests. The package does
// not run models, queue requests or retry them: that is package workers, reached by
// the chat core; admin routes are not built yet.
package api
