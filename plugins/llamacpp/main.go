// Command ragway-llamacpp is ragway's native llama.cpp backend plugin.
//
// It runs GGUF models in process through llama.cpp's shared libraries (via
// the purego binding yzma, no cgo) with continuous batching: one llama
// context with `parallel` sequence slots; requests join the running batch
// between decode steps, and a slot's cached prompt prefix is reused by the
// next request that shares it (multi-turn chat). Models loaded with
// `embedding: true` serve embeddings instead of generations.
//
// Options (the model's `options:` in the gateway config): model_path,
// context_length (per sequence), threads, threads_batch, parallel,
// batch_size, n_gpu_layers, pooling, chat_template, lib_path. See
// options.go.
package main

import sdk "github.com/ragway/ragway/plugin-sdk"

func main() {
	sdk.Serve(newBackend(sdk.Logger()))
}
