// Command ragway-vllm-proxy is ragway's proxy backend plugin: it serves a
// model by forwarding to one or more OpenAI-compatible upstreams — vLLM
// first, but also llama.cpp's llama-server, SGLang or another ragway
// gateway — for chat, completion, embedding and rerank models.
//
// Options (the model's `options:` in the gateway config):
//
//	upstreams        required; base URLs, e.g. ["http://10.0.0.5:8000"] (a
//	                 trailing /v1 is accepted and dropped); one URL may be
//	                 given as a plain string
//	upstream_model   the model id the upstreams serve (default: the model's
//	                 name in the gateway config)
//	api_key_env      the NAME of an environment variable holding the
//	                 upstreams' API key, read at Load and sent as
//	                 "Authorization: Bearer"; the key is never logged and is
//	                 redacted from anything an upstream sends back
//	timeout          a Go duration ("30s") or seconds (default 60s); bounds
//	                 connecting, waiting for response headers and every
//	                 silence between two reads of a response (between two SSE
//	                 chunks; time the gateway spends on an event does not
//	                 count), and also the time to find an upstream: a
//	                 generation with no first event (an embedding with no
//	                 answer) within timeout, over all its attempts, fails;
//	                 not a whole generation
//	max_idle_conns   keep-alive connections kept per upstream (default 64)
//	health_interval  a duration or seconds (default 5s): how often each
//	                 upstream's GET /health and GET /metrics are probed
//	extra_body       a map merged into every generation request body, for
//	                 upstream parameters the SDK's sampling has no field
//	                 for; the request's own sampling fields (including
//	                 vLLM's stop_token_ids, ignore_eos, min_tokens) take
//	                 precedence
//
// Generation always streams (stream: true, stream_options.include_usage):
// messages go to POST /v1/chat/completions, a raw prompt to POST
// /v1/completions. The SSE stream is read chunk by chunk and each content
// chunk becomes an event as it arrives; the usage chunk (choices: []) and
// the finish_reason make the one final event (stop → stop, length →
// length, abort → cancelled, error → error, anything else → stop). Stop
// sequences are sent upstream and also applied here, so a partial stop
// sequence never reaches the client even from an upstream that streams
// one. Errors the upstream sends in the stream ({"error": {...}} or the
// flat {"object": "error", ...}) end the generation with an error:
// sdk.ErrInvalidRequest when the upstream blames the request. HTTP errors
// map to sdk.ErrInvalidRequest (400, 404, 413, 422), an authorisation error
// (401, 403), sdk.ErrOverloaded (429, 503) or a plain error.
//
// Upstreams: each is probed every health_interval (GET /health: 200 is
// healthy; vLLM answers 503 when its engine is dead; a server without
// /health is probed with GET /v1/models) and its load read from the
// Prometheus gauges vllm:num_requests_running and vllm:num_requests_waiting
// (also llama-server's and SGLang's equivalents) summed over label sets;
// without them the plugin counts its own in-flight requests. A request goes
// to the healthy upstream with the least running + waiting requests; an
// upstream that cannot be reached is taken out until a probe answers; a
// request that fails before its first event (no connection, 5xx, 429, a
// broken stream) moves to the next healthy upstream, each upstream tried at
// most once and all within timeout; down upstreams are tried only when
// none is healthy. Health is OK while any upstream is
// healthy, reports the upstreams' summed load, and Slots = 256 (vLLM's
// default max_num_seqs) per healthy upstream.
//
// Embedding models report vLLM's max_model_len as ModelInfo.MaxInputTokens;
// EmbedRequest.Truncate sends truncate_prompt_tokens with that limit (-1,
// the model's own, when unknown). Tokenize asks vLLM's POST /tokenize for
// each input (special tokens added); an upstream without it (404) makes
// Tokenize sdk.ErrUnsupported.
//
// Rerank models (LoadRequest.Rerank: `rerank: true` in the gateway config)
// need an upstream serving vLLM's POST /v1/rerank, which vLLM has for score
// models (cross-encoders such as BAAI/bge-reranker-v2-m3); llama-server
// with --reranking speaks the same shape. Such a model answers Rerank and
// Tokenize only: Generate and Embed on it, Rerank on any other model, and a
// model marked both embedding and rerank are sdk.ErrInvalidRequest. Load
// reranks a probe document (an upstream without the endpoint, or a model
// without the score API, fails Load) and reports max_model_len as
// ModelInfo.MaxInputTokens, the limit on one query-document pair. Rerank
// sends
//
//	{"model": upstream_model, "query": ..., "documents": [...], "top_n": len(documents)}
//
// plus, with RerankRequest.Truncate, truncate_prompt_tokens as an embedding
// does (vLLM then cuts the pair with its tokenizer's longest-first
// truncation: the longer of query and document, normally the document,
// loses its end). It reads {"id", "model", "usage": {"total_tokens"},
// "results": [{"index", "document", "relevance_score"}]}, results sorted by
// score, back into the documents' order by index; usage.total_tokens (else
// usage.prompt_tokens) is PromptTokens. Every index must come exactly once
// with a score that is a finite float32 and the answer may be at most 1 MiB
// plus 6 bytes per byte of the documents (which vLLM echoes) plus 512 per
// document; anything else is the upstream's error, and the request moves
// to the next upstream as it does when one fails. A pair over the limit is
// the upstream's HTTP 400, sdk.ErrInvalidRequest with its message (vLLM's
// does not say which document); an upstream without POST /v1/rerank (404,
// 405) makes Rerank sdk.ErrUnsupported. No documents give no scores,
// without a request.
//
// Cancelling a generation closes its upstream connection at once, which
// makes vLLM abort the request. One keep-alive connection pool serves all
// requests.
package main
