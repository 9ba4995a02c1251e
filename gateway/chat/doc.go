// Package chat is the gateway's chat core: one chat turn, end to end, for every
// transport (the OpenAI HTTP API in package api, the WebSocket protocol in package ws).
//
// A transport decodes its wire into a Request (messages or completion prompts, the
// model, sampling, n choices, a stored conversation, a knowledge base) and runs
// Service.Turn(r).Run(ctx, emit). The turn tells emit what happens, one Event at a
// time and in order: EventStart once a replica took it, EventSources with "rag",
// each choice's EventDelta and EventFinish, then one terminal event, EventDone or
// EventError. The transport translates events into its wire (SSE chunks or a JSON
// completion; frames) and nothing else.
//
// What a turn means, whatever the wire, lives here: grounding in a knowledge base
// (package rag), the fan-out of n choices with prompt tokens counted once per prompt,
// the stored turn (package conversation) begun only once a replica admitted the
// request (workers.Manager.Generate's admit hook: a request refused by a full queue
// or an unavailable model stores nothing) and ended before its end is told, the
// history fitted to the model's context, the backend's panics turned into errors,
// text cleaned once for the client and the store, cancellation (ctx, or a client
// gone when emit fails) and its real token counts (Turn.Usage), the key's
// accounting and the token metrics.
//
// It also owns the table that turns the domain's errors (of the workers and their
// plugins, of keys and rate limits, of the store, of retrieval) into the wire's
// (APIError; package oai knows only the wire).
package chat
