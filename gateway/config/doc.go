// Package config loads, defaults and validates the ragway configuration: one YAML file
// (ragway.example.yaml documents every key) plus RAGWAY_* environment variables.
//
// # Sources and precedence
//
// A configuration is built in three layers, each overriding the one before:
//
//  1. The built-in defaults, the embedded file default.yaml. It is a complete, usable
//     configuration: it serves one model, "chat" (alias "default"), on the deterministic
//     echo backend (ragway-echo), so `ragway serve` without -c works on a machine that has
//     no model files. [Default] returns it.
//  2. The YAML file given to [Load] (or the bytes given to [Parse]). Keys it leaves out keep
//     their defaults; nested blocks (vector_store, rag, server) are merged key by key. A
//     list is replaced as a whole: a file with a models: list serves exactly those models,
//     a file without one serves the default echo model. Unknown keys are errors, and so are
//     values of the wrong type; both are reported with the line number and key path.
//  3. Environment variables, described below.
//
// # Environment variables
//
// Every key is settable as RAGWAY_ followed by its path in upper case, the levels joined
// by underscores; models is one variable holding a whole YAML or JSON list, which
// replaces the list of the file and of the defaults:
//
//	RAGWAY_LISTEN                     listen
//	RAGWAY_DATABASE_URL               database_url
//	RAGWAY_VECTOR_STORE_KIND          vector_store.kind
//	RAGWAY_VECTOR_STORE_URL           vector_store.url
//	RAGWAY_VECTOR_STORE_API_KEY       vector_store.api_key
//	RAGWAY_PLUGINS_DIR                plugins_dir
//	RAGWAY_MODELS_DIR                 models_dir (plugins are told it, made absolute, by the same name)
//	RAGWAY_MODELS                     models, e.g. '[{"name":"chat","backend":"echo"}]'
//	RAGWAY_RAG_EMBEDDING_MODEL        rag.embedding_model
//	RAGWAY_RAG_CHUNK_TOKENS           rag.chunk_tokens
//	RAGWAY_RAG_CHUNK_OVERLAP          rag.chunk_overlap
//	RAGWAY_RAG_TOP_K                  rag.top_k
//	RAGWAY_RAG_FUSION                 rag.fusion
//	RAGWAY_RAG_RRF_K                  rag.rrf_k
//	RAGWAY_RAG_DENSE_WEIGHT           rag.dense_weight
//	RAGWAY_RAG_RERANK_MODEL           rag.rerank_model
//	RAGWAY_RAG_RERANK_CANDIDATES      rag.rerank_candidates
//	RAGWAY_SERVER_MAX_BODY_BYTES      server.max_body_bytes
//	RAGWAY_SERVER_SHUTDOWN_GRACE      server.shutdown_grace
//	RAGWAY_SERVER_REQUEST_TIMEOUT     server.request_timeout
//	RAGWAY_SERVER_QUEUE_TIMEOUT       server.queue_timeout
//	RAGWAY_SERVER_HEARTBEAT_INTERVAL  server.heartbeat_interval
//	RAGWAY_SERVER_METRICS_TOKEN       server.metrics_token
//	RAGWAY_SERVER_HEADER_TIMEOUT      server.header_timeout
//	RAGWAY_SERVER_BODY_TIMEOUT        server.body_timeout
//	RAGWAY_SERVER_IDLE_TIMEOUT        server.idle_timeout
//	RAGWAY_SERVER_WRITE_TIMEOUT       server.write_timeout
//	RAGWAY_SERVER_MAX_UNAUTHENTICATED_CONNS         server.max_unauthenticated_conns
//	RAGWAY_SERVER_MAX_UNAUTHENTICATED_CONNS_PER_IP  server.max_unauthenticated_conns_per_ip
//	RAGWAY_SERVER_CORS_ORIGINS        server.cors_origins, e.g. 'https://chat.example.com,http://localhost:5173'
//	RAGWAY_WEB_SIGNUP                 web.signup
//	RAGWAY_WEB_SESSION_TTL            web.session_ttl
//	RAGWAY_WEB_SECURE_COOKIES         web.secure_cookies
//	RAGWAY_WEB_TRUSTED_PROXIES        web.trusted_proxies, e.g. '10.0.0.0/8,192.168.1.5'
//
// String values are taken literally (an empty value sets the empty string); numbers,
// durations and lists are parsed like their YAML counterparts. A list of strings
// (server.cors_origins) may also be given comma-separated, and an empty value sets an
// empty list. RAGWAY_* variables that
// name no key (RAGWAY_BIN_DIR, which tests use, for instance) are ignored. [EnvVars]
// returns this table.
//
// # Values
//
// Durations ([Duration]) are Go duration strings ("30s", "1m30s") or whole numbers of
// seconds (30).
//
// After the layers are applied, [Config.Validate] checks the result and reports every
// problem at once, each naming the key path ("models[1].max_concurrency: must be >= 1,
// got 0"), so an invalid configuration fails at start with messages the operator can act
// on. ragway.example.yaml at the repository root documents every key.
//
// This package only describes configuration. It does not start processes, open
// connections or watch the file for changes; the caller decides when to (re)load.
package config
