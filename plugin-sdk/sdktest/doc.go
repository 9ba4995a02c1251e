// Package sdktest is the conformance kit for ragway backend plugins: it
// launches a plugin binary the way the gateway does and checks that it keeps
// the contract of sdk.Backend. Plugin authors call it from their own tests:
//
//	func TestConformance(t *testing.T) {
//		sdktest.Run(t, sdktest.Config{
//			Path:    "./bin/my-plugin",
//			Options: map[string]any{"model_path": "testdata/tiny.gguf"},
//		})
//	}
//
// Run runs one subtest per check, each with fresh plugin processes that are
// killed when the subtest ends: Handshake, Info, GenerateBeforeLoad,
// LoadErrors, EventOrder, Greedy, MaxTokens, StopSequence, Cancellation,
// Concurrency, Embeddings, Tokenize, HostileInputs and Crash. HostileInputs
// sends NUL bytes, invalid UTF-8, empty and whitespace-only text and 1 MiB of
// text through every path (raw prompt, chat messages, embedding inputs,
// Tokenize) and wants each call to succeed or fail with
// sdk.ErrInvalidRequest, and the same process to serve a normal request
// afterwards. Tokenize checks the counts of a plugin declaring
// sdk.CapabilityTokenize and, for an embedding model reporting
// ModelInfo.MaxInputTokens, that the limit is exact and EmbedRequest.Truncate
// honoured. Every generation a check runs is also
// checked for the event contract (deltas, then exactly one final event with a
// valid finish reason and usage whose completion tokens add up to the
// events' tokens). Generations are capped at 64 tokens, but those Cancellation
// and Crash interrupt at 1024 (greedy, so that a fast model is still generating
// when the interruption lands).
//
// The model given by Config.Options must generate slowly enough that a
// generation can be cancelled or killed after its first event (a real model
// does; the echo example needs delay_ms). Greedy decoding (temperature 0,
// seed 1) must be deterministic, also under concurrency.
//
// sdktest checks behaviour at the process boundary; it is not a benchmark
// and says nothing about the quality of a model's output.
package sdktest
