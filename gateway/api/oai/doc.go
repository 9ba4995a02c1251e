// Package oai holds the pieces of the OpenAI wire format that the HTTP API
// (package api) and the WebSocket chat protocol (package ws) share: the
// error shape and the mapping of gateway and backend errors onto it,
// request decoding that names the offending parameter, validation of
// sampling parameters and chat messages, and an allocation-light JSON
// string appender for the streaming hot paths.
//
// It is not an OpenAI client and it defines no routes.
package oai
