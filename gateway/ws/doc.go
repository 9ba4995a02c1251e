// Package ws serves the gateway's WebSocket chat protocol at GET /v1/ws (Mount, on
// the API's app, by cmd/ragway). One socket carries several concurrent chats, told
// apart by a client-chosen id. Each chat is a turn of the chat core (package chat),
// whose events the socket translates into frames.
//
// docs/websocket.md is the protocol's reference: every frame both ways, with
// authentication (a key with the upgrade or a first auth frame), stored chats
// (`content`: the history is kept server side), grounding
// in a knowledge base (a sources frame), ordering, cancellation and limits.
//
// Every accepted chat gets start, then tokens, then exactly one done or error,
// and nothing after it. Frames the server cannot accept are answered with an error
// frame in the OpenAI error shape and the socket stays usable.
//
// Each socket has one writer goroutine fed by bounded queues: when the client reads
// slowly, generations block (backpressure) instead of the server buffering. Protocol
// pings every PingInterval and a read deadline of two intervals drop dead peers;
// closing the socket cancels all its chats.
package ws
