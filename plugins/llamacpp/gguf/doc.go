// Package gguf writes GGUF v3 model files, and generates small llama-architecture
// chat models with seeded random weights for tests and benchmarks.
//
// No model can be downloaded on the machines ragway is tested on, so the project
// generates its own: [Llama] describes a llama-architecture model (metadata, an
// SPM tokenizer with a byte vocabulary, merged English word pieces, ChatML
// special tokens and chat template, and F32/F16/Q8_0 tensors) and [File.WriteTo]
// streams it out row by row, so a file of any size is written in memory
// proportional to one tensor row. The same configuration and seed always give
// the same bytes. Random weights make meaningless but deterministic text under
// greedy sampling: enough to test loading, tokenization, chat templates,
// batching and streaming, not answer quality.
//
// [Read] parses the header of any GGUF v2/v3 file (metadata and tensor
// descriptions, not tensor data); [DecodeRow] turns F32, F16 and Q8_0 rows back
// into float32.
//
// With [Config.Rerank] (preset "rerank") [Llama] generates a reranker instead:
// a qwen3-architecture model with a two-output classification head
// (cls.output.weight, labels "yes" and "no"), rank pooling and a rerank prompt
// (tokenizer.chat_template.rerank), which llama.cpp scores query-document pairs
// with; the scores are meaningless but deterministic.
//
// It is not a converter from other formats, does not quantise beyond Q8_0, and
// does not run models: llama.cpp does that (see plugins/llamacpp).
//
// The command plugins/llamacpp/cmd/ragway-mkgguf writes the project's demo,
// bench and rerank models (task models:demo, task models:bench).
package gguf
