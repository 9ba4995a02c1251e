// Package sdk is the ragway backend plugin SDK: the contract between the
// ragway gateway and a model backend running as a separate process.
//
// Plugin authors implement Backend (and optionally Embedder, Tokenizer and
// Reranker)
// and call Serve from main. The gateway calls Launch with the plugin
// binary's path and gets a *Plugin, which implements the same interface over gRPC (hashicorp
// go-plugin, automatic mutual TLS). Errors cross the process boundary as gRPC
// status codes and come back matching the sentinels of errors.go. Strings
// cross the wire as UTF-8: the host refuses a request holding invalid UTF-8
// with ErrInvalidRequest naming the field, and what a plugin sends back has
// each invalid sequence replaced with U+FFFD (see text.go).
//
// Versioning has two layers: ProtocolVersion is the go-plugin handshake
// version (it changes only when the wire contract breaks), APIVersion is the
// semantic version a plugin reports in Info (the host accepts equal majors).
//
// The package sdktest checks any plugin binary against this contract; the
// example in examples/echo is a complete plugin to start from.
//
// This package is not a model runtime: it carries requests and events, and
// leaves scheduling, batching and sampling to the plugin.
package sdk
