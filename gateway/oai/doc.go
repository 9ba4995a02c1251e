// Package oai holds the pieces of the OpenAI wire format that the HTTP API
// (package api) and the WebSocket chat protocol (package ws) share: the
// error shape, request decoding that names the offending parameter,
// validation of sampling parameters and chat messages, the refusal of
// OpenAI fields the gateway does not implement ([Unhonoured]), and an
// allocation-light JSON string appender for the streaming hot paths. It
// knows only the wire: it imports no domain package of the gateway
// (internal/importcheck enforces it); the chat core, package chat, maps the
// domain's errors onto the wire's.
//
// Honest errors. chat.APIError gives every error a fixed message for humans
// and the status of whoever is at fault: the client's input is a 4xx naming
// the param where one applies; a failure of the server (the database, a
// model's process) is a 5xx server_error. An error's own text — Postgres's
// words and constraint names, a plugin's stderr, Go's "store: …" prefixes —
// never reaches a client: it is [Error.Cause], which the server logs.
//
// An answer that was generated but could not be stored (chat.NotStored) is a
// 5xx server_error (database_error, or database_unavailable when Postgres is
// unreachable), never a client error, and the client still gets the answer:
// over SSE and WebSocket its tokens went out before the error event or frame;
// over plain HTTP the response is that 5xx whose body is the OpenAI error
// shape plus the whole chat completion beside it,
// {"error":{…},"completion":{…"choices":[{"message":{"content":…}}]…}}, with
// X-Should-Retry: false (the question is stored; a retry would ask it again).
//
// Text. Postgres text cannot hold NUL (U+0000) nor invalid UTF-8. Client
// text that is stored is checked with [CheckText] before any write (a 400
// naming the field); generated text follows one rule, [CleanText] (NUL and
// invalid UTF-8 become U+FFFD), applied where events come out of the backend
// ([CleanEmit]), so the client and the store always see the same text.
//
// It is not an OpenAI client and it defines no routes.
package oai
