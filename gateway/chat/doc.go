// Package chat is the gateway's chat core: what a chat turn means, once, for every
// transport (the OpenAI HTTP API in package api, the WebSocket protocol in package ws).
//
// So far it owns the table that turns the domain's errors (of the workers and their
// plugins, of keys and rate limits, of the store, of retrieval) into the wire's
// errors (package oai), so that the wire package knows only the wire; and the
// checks of a chat's "rag" object. The turn itself (grounding, the stored turn, the
// history budget, generation, accounting, cancellation) still runs in api and ws and
// moves here next (issue 12).
package chat
