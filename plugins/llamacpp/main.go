// Command ragway-llamacpp is ragway's native llama.cpp backend plugin.
//
// It runs GGUF models in process through llama.cpp's shared libraries (via
// the purego binding yzma, no cgo) with continuous batching: one llama
// context with `parallel` sequence slots; requests join the running batch
// between decode steps, and a slot's cached prompt prefix is reused by the
// next request that shares it (multi-turn chat). Models loaded with
// `embedding: true` serve embeddings instead of generations; one input may
// have min(context per sequence, batch_size) tokens (ModelInfo.MaxInputTokens;
// EmbedRequest.Truncate cuts a longer one to its start). Tokenize counts with
// the model's own tokenizer.
//
// Models loaded with `rerank: true` rerank instead (Rerank; they refuse
// Generate and Embed, and other models refuse Rerank): a cross-encoder
// reranker GGUF — one with a classification head, cls.output.weight or
// cls.weight, such as bge-reranker, jina-reranker or Qwen3-Reranker — runs
// under llama.cpp's rank pooling, and each query-document pair is one
// sequence whose score is the head's first output (a logit; P(yes) for
// Qwen3-Reranker). A pair is the model's rerank prompt
// (tokenizer.chat_template.rerank) with the query and the document put in,
// or else [BOS] query [EOS] [SEP] document [EOS], as llama.cpp's server
// forms it; one pair may have min(context per sequence, batch_size) tokens
// (ModelInfo.MaxInputTokens; RerankRequest.Truncate cuts the document's end
// to fit). Pairs are batched through the `parallel` sequences. See rerank.go.
//
// No input crashes the process. A NUL byte is the vocabulary's token for the
// byte 0x00, one token per NUL, in prompts, chat messages, embedding inputs
// and rerank queries and documents (text holding NUL is refused with
// ErrInvalidRequest by a model without such a token); invalid UTF-8 never
// reaches the plugin (the SDK host refuses it); empty, whitespace-only and
// over-long inputs are tokenized and checked against the context and the
// batch before anything is decoded (an empty rerank query is refused; an
// empty document is scored). See tokenize.go.
//
// Options (the model's `options:` in the gateway config): model_path,
// context_length (per sequence), threads, threads_batch, parallel,
// batch_size, n_gpu_layers, pooling (embedding models; "rank", the only
// one, for rerank models), chat_template, lib_path. See options.go.
package main

import sdk "github.com/ragway/ragway/plugin-sdk"

func main() {
	sdk.Serve(newBackend(sdk.Logger()))
}
