// Package chat is the gateway's chat core: what a chat turn means, once, for every
// transport (the OpenAI HTTP API in package api, the WebSocket protocol in package ws).
//
// It owns what a turn means whatever the wire: Service.Begin grounds the turn in its
// knowledge base and begins its stored part (the user's message and an in-progress
// answer, the history fitted to what the sources leave of the model's context);
// Turn.Generate runs a generation with the backend's panic turned into an error and
// its text cleaned once for the client and the store; Turn.Observe and Turn.End keep
// the stored answer. It also owns the table that turns the domain's errors (of the
// workers and their plugins, of keys and rate limits, of the store, of retrieval)
// into the wire's (package oai, which knows only the wire).
//
// Still in the transports, and next to move here (issue 12): the fan-out of n
// choices, accounting and metrics, and events out of the core in one shape (start,
// sources, deltas, usage, finish, error) that api turns into SSE or JSON and ws into
// frames.
package chat
