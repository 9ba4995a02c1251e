package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestDefault(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	want := &Config{
		Listen:      "127.0.0.1:8080",
		VectorStore: VectorStore{Kind: "embedded"},
		Models: []Model{{
			Name:           "chat",
			Aliases:        []string{"default"},
			Backend:        "echo",
			Replicas:       1,
			MaxConcurrency: 4,
			MaxQueue:       64,
			HealthInterval: Duration(5 * time.Second),
			Options:        map[string]any{"delay_ms": 20},
		}},
		ModelsDir: ".data/models",
		RAG:       RAG{ChunkTokens: 800, ChunkOverlap: 120, TopK: 4, Fusion: "rrf", RRFK: 60, DenseWeight: 0.5, RerankCandidates: 20},
		Server: Server{
			MaxBodyBytes:      4 << 20,
			ShutdownGrace:     Duration(30 * time.Second),
			RequestTimeout:    Duration(10 * time.Minute),
			QueueTimeout:      Duration(30 * time.Second),
			HeartbeatInterval: Duration(5 * time.Second),
			HeaderTimeout:     Duration(10 * time.Second),
			BodyTimeout:       Duration(60 * time.Second),
			IdleTimeout:       Duration(2 * time.Minute),
			WriteTimeout:      Duration(60 * time.Second),

			MaxUnauthenticatedConns:      1024,
			MaxUnauthenticatedConnsPerIP: 64,
			CORSOrigins:                  []string{}, // CORS off
		},
		Web: Web{Signup: "invite", SessionTTL: Duration(720 * time.Hour), SecureCookies: "auto", TrustedProxies: []string{}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", c, want)
	}

	// Each call is a fresh copy.
	c.Models[0].Name = "changed"
	c.Models[0].Options["delay_ms"] = 0
	if d := Default(); d.Models[0].Name != "chat" || d.Models[0].Options["delay_ms"] != 20 {
		t.Errorf("Default() shares state between calls: %+v", d.Models[0])
	}

	// Load without a file, Parse of nothing and Parse of the embedded file are the defaults.
	for name, load := range map[string]func() (*Config, error){
		"Load no file":        func() (*Config, error) { return Load("", nil) },
		"Parse empty":         func() (*Config, error) { return Parse(nil, nil) },
		"Parse comments only": func() (*Config, error) { return Parse([]byte("# nothing\n"), nil) },
		"Parse default.yaml":  func() (*Config, error) { return Parse(DefaultYAML(), nil) },
	} {
		got, err := load()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !reflect.DeepEqual(got, Default()) {
			t.Errorf("%s = %+v, want the defaults", name, got)
		}
	}
}

// TestExampleFile loads ragway.example.yaml and checks that it shows every key, so the
// example stays the complete reference when keys are added.
func TestExampleFile(t *testing.T) {
	const path = "../../ragway.example.yaml"
	c, err := Load(path, nil)
	if err != nil {
		t.Fatalf("Load(%s): %v", path, err)
	}
	if len(c.Models) < 2 || c.RAG.EmbeddingModel == "" {
		t.Errorf("example should show several models and an embedding model, got %+v", c)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for p := range indexYAML(data, "").lines {
		// models[2].options → models[].options: any entry showing a key counts.
		for {
			i := strings.Index(p, "[")
			j := strings.Index(p, "]")
			if i < 0 || j < i {
				break
			}
			p = p[:i] + "{}" + p[j+1:]
		}
		set[strings.ReplaceAll(p, "{}", "[]")] = true
	}
	for _, p := range allKeyPaths(reflect.TypeFor[Config](), "") {
		if !set[p] {
			t.Errorf("ragway.example.yaml does not show key %s", p)
		}
	}
}

// allKeyPaths lists every key path of t ("models[].name", "rag.top_k").
func allKeyPaths(t reflect.Type, base string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		k := yamlKey(f)
		if k == "" {
			continue
		}
		p := joinPath(base, k)
		out = append(out, p)
		switch {
		case f.Type.Kind() == reflect.Struct:
			out = append(out, allKeyPaths(f.Type, p)...)
		case f.Type.Kind() == reflect.Slice && f.Type.Elem().Kind() == reflect.Struct:
			out = append(out, allKeyPaths(f.Type.Elem(), p+"[]")...)
		}
	}
	return out
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		env   []string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "keys left out keep defaults",
			yaml: "listen: 0.0.0.0:9000\nrag: {top_k: 8}\n",
			check: func(t *testing.T, c *Config) {
				want := Default()
				want.Listen = "0.0.0.0:9000"
				want.RAG.TopK = 8
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got %+v\nwant %+v", c, want)
				}
			},
		},
		{
			name: "a models list replaces the default model and gets model defaults",
			yaml: `
models:
  - name: a
    backend: echo
  - name: b
    backend: llamacpp
    replicas: 2
    idle_timeout: 90
    max_queue: 0
    sha256: ` + strings.Repeat("aB", 32) + `
    options: {model_path: ./m.gguf, threads: 2, nested: {list: [1, x]}}
`,
			check: func(t *testing.T, c *Config) {
				want := []Model{
					{Name: "a", Backend: "echo", Replicas: 1, MaxConcurrency: 4, MaxQueue: 64, HealthInterval: DefaultHealthInterval},
					{
						Name: "b", Backend: "llamacpp", Replicas: 2, MaxConcurrency: 4, MaxQueue: 0,
						IdleTimeout: Duration(90 * time.Second), SHA256: strings.Repeat("aB", 32), HealthInterval: DefaultHealthInterval,
						Options: map[string]any{"model_path": "./m.gguf", "threads": 2, "nested": map[string]any{"list": []any{1, "x"}}},
					},
				}
				if !reflect.DeepEqual(c.Models, want) {
					t.Errorf("models =\n%+v\nwant\n%+v", c.Models, want)
				}
			},
		},
		{
			name: "empty models list is allowed (models added through the admin API)",
			yaml: "models: []\n",
			check: func(t *testing.T, c *Config) {
				if len(c.Models) != 0 {
					t.Errorf("models = %+v, want none", c.Models)
				}
			},
		},
		{
			name: "qdrant with host:port and with URL",
			yaml: "vector_store: {kind: qdrant, url: \"qdrant:6334\", api_key: k}\n",
			check: func(t *testing.T, c *Config) {
				if c.VectorStore != (VectorStore{Kind: "qdrant", URL: "qdrant:6334", APIKey: "k"}) {
					t.Errorf("vector_store = %+v", c.VectorStore)
				}
			},
		},
		{
			name: "env overrides file and defaults",
			yaml: "listen: 127.0.0.1:1\nrag: {top_k: 2, chunk_tokens: 100}\n",
			env: []string{
				"PATH=/usr/bin",
				"RAGWAY_LISTEN=:9090",
				"RAGWAY_DATABASE_URL=postgres://u:p@h:5432/db",
				"RAGWAY_VECTOR_STORE_KIND=qdrant",
				"RAGWAY_VECTOR_STORE_URL=https://q.example:6334",
				"RAGWAY_PLUGINS_DIR=/opt/ragway",
				"RAGWAY_RAG_TOP_K=9",
				"RAGWAY_SERVER_REQUEST_TIMEOUT=90",
				"RAGWAY_SERVER_QUEUE_TIMEOUT=1m30s",
				"RAGWAY_SERVER_MAX_BODY_BYTES=1024",
				"RAGWAY_BIN_DIR=/somewhere", // not a key: ignored
			},
			check: func(t *testing.T, c *Config) {
				want := Default()
				want.Listen = ":9090"
				want.DatabaseURL = "postgres://u:p@h:5432/db"
				want.VectorStore = VectorStore{Kind: "qdrant", URL: "https://q.example:6334"}
				want.PluginsDir = "/opt/ragway"
				want.RAG.TopK = 9
				want.RAG.ChunkTokens = 100 // from the file
				want.RAG.ChunkOverlap = 15 // follows it (DefaultOverlapPercent) when not set
				want.Server.RequestTimeout = Duration(90 * time.Second)
				want.Server.QueueTimeout = Duration(90 * time.Second)
				want.Server.MaxBodyBytes = 1024
				if !reflect.DeepEqual(c, want) {
					t.Errorf("got %+v\nwant %+v", c, want)
				}
			},
		},
		{
			name: "the last env entry for a name wins",
			env:  []string{"RAGWAY_RAG_TOP_K=3", "RAGWAY_RAG_TOP_K=5"},
			check: func(t *testing.T, c *Config) {
				if c.RAG.TopK != 5 {
					t.Errorf("top_k = %d, want 5", c.RAG.TopK)
				}
			},
		},
		{
			name: "empty string env value sets the empty string",
			yaml: "database_url: postgres://x/y\n",
			env:  []string{"RAGWAY_DATABASE_URL="},
			check: func(t *testing.T, c *Config) {
				if c.DatabaseURL != "" {
					t.Errorf("database_url = %q, want empty", c.DatabaseURL)
				}
			},
		},
		{
			name: "RAGWAY_MODELS as JSON replaces the file's list",
			yaml: "models: [{name: fromfile, backend: echo}]\n",
			env:  []string{`RAGWAY_MODELS=[{"name":"e","backend":"echo","max_concurrency":2,"idle_timeout":"1m","replicas":3}]`},
			check: func(t *testing.T, c *Config) {
				want := []Model{{Name: "e", Backend: "echo", Replicas: 3, MaxConcurrency: 2, MaxQueue: 64, IdleTimeout: Duration(time.Minute), HealthInterval: DefaultHealthInterval}}
				if !reflect.DeepEqual(c.Models, want) {
					t.Errorf("models = %+v, want %+v", c.Models, want)
				}
			},
		},
		{
			name: "RAGWAY_MODELS as YAML",
			env:  []string{"RAGWAY_MODELS=- name: y\n  backend: echo\n  aliases: [why]\n"},
			check: func(t *testing.T, c *Config) {
				if len(c.Models) != 1 || c.Models[0].Name != "y" || !slices.Equal(c.Models[0].Aliases, []string{"why"}) {
					t.Errorf("models = %+v", c.Models)
				}
			},
		},
		{
			name: "rag.embedding_model may name an alias",
			yaml: "models: [{name: e, aliases: [emb], backend: echo, embedding: true}]\nrag: {embedding_model: emb}\n",
			check: func(t *testing.T, c *Config) {
				if m, ok := c.Model(c.RAG.EmbeddingModel); !ok || m.Name != "e" {
					t.Errorf("Model(%q) = %+v, %v", c.RAG.EmbeddingModel, m, ok)
				}
			},
		},
		{
			name: "null keeps a scalar's default",
			yaml: "listen: ~\n",
			check: func(t *testing.T, c *Config) {
				if c.Listen != "127.0.0.1:8080" {
					t.Errorf("listen = %q", c.Listen)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), tt.env)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseInvalid(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  []string
		want []string // every line of the error, in order
	}{
		{
			name: "unknown keys at every level",
			yaml: `
listn: x
vector_store: {kind: embedded, path: /x}
models:
  - name: a
    backend: echo
    opitons: {}
rag:
  topk: 3
`,
			want: []string{
				"config: line 2: listn: unknown key (known keys: listen, database_url, vector_store, plugins_dir, models_dir, models, rag, server, web)",
				"config: line 3: vector_store.path: unknown key (known keys: kind, url, api_key)",
				"config: line 7: models[0].opitons: unknown key (known keys: name, aliases, backend, command, replicas, max_concurrency, max_queue, idle_timeout, sha256, embedding, rerank, options, health_interval, dispatch)",
				"config: line 9: rag.topk: unknown key (known keys: embedding_model, chunk_tokens, chunk_overlap, top_k, fusion, rrf_k, dense_weight, rerank_model, rerank_candidates)",
			},
		},
		{
			name: "wrong types",
			yaml: `
models:
  - name: a
    backend: echo
    max_concurrency: four
    aliases: x
    idle_timeout: soon
    health_interval: {a: 1}
rag: {top_k: [1]}
server:
  max_body_bytes: 1.5
`,
			want: []string{
				"config: line 5: models[0].max_concurrency: expected an integer, got `four`",
				"config: line 6: models[0].aliases: expected a list of strings, got `x`",
				"config: line 7: models[0].idle_timeout: invalid duration `soon`: use a Go duration such as \"30s\" or \"2m\", or whole seconds",
				"config: line 8: models[0].health_interval: expected a duration, got a mapping",
				"config: line 9: rag.top_k: expected an integer, got a list",
				"config: line 11: server.max_body_bytes: expected an integer, got `1.5`",
			},
		},
		{
			name: "document is not a mapping",
			yaml: "- listen\n",
			want: []string{"config: line 1: expected a mapping, got a list"},
		},
		{
			name: "syntax error",
			yaml: "listen: [\n",
			want: []string{"config: line 1: did not find expected node content"},
		},
		{
			name: "duplicate key",
			yaml: "listen: :1\nlisten: :2\n",
			want: []string{"config: line 2: listen: duplicate key (first set at line 1)"},
		},
		{
			name: "two documents",
			yaml: "listen: :1\n---\nlisten: :2\n",
			want: []string{"config: line 2: a second YAML document; only one is allowed"},
		},
		{
			name: "every validation problem at once, with lines",
			yaml: `
listen: localhost
database_url: mysql://x
vector_store: {kind: x}
models:
  - name: chat
    aliases: [default]
    backend: Llama_cpp
    sha256: abc
  - name: other
    backend: echo
    max_concurrency: 0
    max_queue: -1
    idle_timeout: -5s
    health_interval: 0
  - name: chat
    aliases: [default, "two words"]
    backend: echo
    replicas: 0
  - backend: ""
    replicas: -1
rag: {embedding_model: chat, chunk_tokens: 50, chunk_overlap: 60, fusion: max, rrf_k: 0, dense_weight: 1.5, rerank_model: chat, rerank_candidates: 0}
server: {max_body_bytes: 0, shutdown_grace: -1, request_timeout: 0, queue_timeout: 0s, heartbeat_interval: -1s}
`,
			want: []string{
				`config: line 2: listen: must be host:port, got "localhost"`,
				`config: line 3: database_url: scheme must be "postgres" or "postgresql", got "mysql"`,
				`config: line 4: vector_store.kind: must be "embedded" or "qdrant", got "x"`,
				`config: line 8: models[0].backend: must match ^[a-z0-9][a-z0-9-]*$, got "Llama_cpp"`,
				`config: line 9: models[0].sha256: must be 64 hex characters, got 3 characters "abc"`,
				`config: line 12: models[1].max_concurrency: must be >= 1, got 0`,
				`config: line 13: models[1].max_queue: must be >= 0, got -1`,
				`config: line 14: models[1].idle_timeout: must be >= 0, got -5s`,
				`config: line 15: models[1].health_interval: must be > 0, got 0s`,
				`config: line 17: models[2].aliases[1]: must not contain spaces or control characters, got "two words"`,
				`config: line 19: models[2].replicas: must be >= 1, got 0 (to scale to zero when idle, set idle_timeout)`,
				`config: line 16: models[2].name: duplicate model name "chat" (already used by models[0].name)`,
				`config: line 17: models[2].aliases[0]: duplicate model name "default" (already used by models[0].aliases[0])`,
				`config: line 20: models[3].name: required`,
				`config: line 20: models[3].backend: required (the plugin ragway-<backend>, e.g. "echo" or "llamacpp")`,
				`config: line 21: models[3].replicas: must be >= 1, got -1 (to scale to zero when idle, set idle_timeout)`,
				`config: line 22: rag.embedding_model: model "chat" is not an embedding model (set embedding: true on it)`,
				`config: line 22: rag.rerank_model: model "chat" is not a rerank model (set rerank: true on it)`,
				`config: line 22: rag.chunk_overlap: must be at most half of rag.chunk_tokens (25), got 60`,
				`config: line 22: rag.rerank_candidates: must be 1 to 200, got 0`,
				`config: line 22: rag.fusion: must be "rrf" or "weighted", got "max"`,
				`config: line 22: rag.rrf_k: must be 1 to 100000, got 0`,
				`config: line 22: rag.dense_weight: must be 0 to 1, got 1.5`,
				`config: line 23: server.max_body_bytes: must be >= 1, got 0`,
				`config: line 23: server.shutdown_grace: must be >= 0, got -1s`,
				`config: line 23: server.request_timeout: must be > 0, got 0s`,
				`config: line 23: server.queue_timeout: must be > 0, got 0s`,
				`config: line 23: server.heartbeat_interval: must be > 0, got -1s`,
			},
		},
		{
			name: "name and alias share one namespace",
			yaml: "models: [{name: a, backend: echo}, {name: b, aliases: [a], backend: echo}, {name: c, aliases: [c], backend: echo}]\n",
			want: []string{
				`config: line 1: models[1].aliases[0]: duplicate model name "a" (already used by models[0].name)`,
				`config: line 1: models[2].aliases[0]: duplicate model name "c" (already used by models[2].name)`,
			},
		},
		{
			name: "qdrant needs a usable url",
			yaml: "vector_store: {kind: qdrant}\n",
			want: []string{`config: line 1: vector_store.url: required when vector_store.kind is "qdrant" (e.g. "127.0.0.1:6334")`},
		},
		{
			name: "qdrant url scheme",
			yaml: "vector_store: {kind: qdrant, url: \"ftp://q:1\"}\n",
			want: []string{`config: line 1: vector_store.url: scheme must be http or https, got "ftp"`},
		},
		{
			name: "embedding model that does not exist",
			yaml: "rag: {embedding_model: nope}\n",
			want: []string{`config: line 1: rag.embedding_model: no model or alias named "nope" in models`},
		},
		{
			name: "env values that do not parse",
			env: []string{
				"RAGWAY_RAG_TOP_K=many",
				"RAGWAY_SERVER_QUEUE_TIMEOUT=1.5",
				"RAGWAY_MODELS=[{name: a, backend: echo, bogus: 1}]",
			},
			want: []string{
				"config: env RAGWAY_MODELS: line 1: models[0].bogus: unknown key (known keys: name, aliases, backend, command, replicas, max_concurrency, max_queue, idle_timeout, sha256, embedding, rerank, options, health_interval, dispatch)",
				`config: env RAGWAY_RAG_TOP_K: rag.top_k: expected an integer, got "many"`,
				"config: env RAGWAY_SERVER_QUEUE_TIMEOUT: server.queue_timeout: invalid duration `1.5`: use a Go duration such as \"30s\" or \"2m\", or whole seconds",
			},
		},
		{
			name: "empty RAGWAY_MODELS",
			env:  []string{"RAGWAY_MODELS="},
			want: []string{`config: env RAGWAY_MODELS: models: empty value; give a YAML or JSON value ("[]" for an empty list)`},
		},
		{
			name: "RAGWAY_MODELS that is not a list",
			env:  []string{"RAGWAY_MODELS={name: a}"},
			want: []string{"config: env RAGWAY_MODELS: line 1: models: expected a list of models, got a mapping"},
		},
		{
			name: "validation problems from env name the variable",
			yaml: "rag: {top_k: 3}\n",
			env:  []string{"RAGWAY_RAG_TOP_K=0", "RAGWAY_MODELS=[{name: a, backend: echo, max_concurrency: 0}]", "RAGWAY_LISTEN="},
			want: []string{
				`config: env RAGWAY_LISTEN: listen: required, e.g. "127.0.0.1:8080"`,
				`config: env RAGWAY_MODELS: models[0].max_concurrency: must be >= 1, got 0`,
				`config: env RAGWAY_RAG_TOP_K: rag.top_k: must be >= 1, got 0`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), tt.env)
			if err == nil {
				t.Fatalf("Parse succeeded with %+v, want errors", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error: %+v", c)
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestCORSOrigins checks server.cors_origins: exact origins as browsers send them, from
// the file or RAGWAY_SERVER_CORS_ORIGINS, and a clear error naming the entry otherwise.
func TestCORSOrigins(t *testing.T) {
	valid := []struct {
		name string
		yaml string
		env  []string
		want []string
	}{
		{name: "off by default", want: []string{}},
		{
			name: "listed in the file",
			yaml: "server:\n  cors_origins:\n    - https://chat.example.com\n    - http://localhost:5173\n    - http://[::1]:8080\n    - app://obsidian.md\n",
			want: []string{"https://chat.example.com", "http://localhost:5173", "http://[::1]:8080", "app://obsidian.md"},
		},
		{
			name: "env as a comma-separated list replaces the file's",
			yaml: "server: {cors_origins: [https://a.example]}\n",
			env:  []string{"RAGWAY_SERVER_CORS_ORIGINS= https://b.example, http://localhost:3000 ,"},
			want: []string{"https://b.example", "http://localhost:3000"},
		},
		{
			name: "env as a YAML list",
			env:  []string{`RAGWAY_SERVER_CORS_ORIGINS=["https://b.example"]`},
			want: []string{"https://b.example"},
		},
		{
			name: "an empty env value turns CORS off",
			yaml: "server: {cors_origins: [https://a.example]}\n",
			env:  []string{"RAGWAY_SERVER_CORS_ORIGINS="},
			want: []string{},
		},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), tt.env)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(c.Server.CORSOrigins, tt.want) {
				t.Errorf("cors_origins = %#v, want %#v", c.Server.CORSOrigins, tt.want)
			}
		})
	}

	yml := `server:
  cors_origins:
    - ""
    - "*"
    - "null"
    - https://chat.example.com/
    - chat.example.com
    - https://chat.example.com/app?x=1
    - https://user@chat.example.com
    - https://Chat.Example.com
    - https://chat.example.com:443
    - http://localhost:80
    - http://localhost:99999
    - https://bücher.example
    - https://chat.example.com
    - https://chat.example.com
    - "https://"
    - http://[::1]:80
`
	want := []string{
		`config: line 3: server.cors_origins[0]: must not be empty`,
		`config: line 4: server.cors_origins[1]: "*" is not accepted: list the origin of each page that may call the gateway, e.g. "https://chat.example.com" (any origin could then ride on a browser's credentials, and WebSocket upgrades are checked against this list)`,
		`config: line 5: server.cors_origins[2]: "null" is not accepted: browsers send it for sandboxed and file:// pages, which any site can make`,
		`config: line 6: server.cors_origins[3]: must be an origin, scheme://host[:port] without a path, query or user, got "https://chat.example.com/" (did you mean "https://chat.example.com"?)`,
		`config: line 7: server.cors_origins[4]: must be an origin, scheme://host[:port], got "chat.example.com"`,
		`config: line 8: server.cors_origins[5]: must be an origin, scheme://host[:port] without a path, query or user, got "https://chat.example.com/app?x=1" (did you mean "https://chat.example.com"?)`,
		`config: line 9: server.cors_origins[6]: must be an origin, scheme://host[:port] without a path, query or user, got "https://user@chat.example.com" (did you mean "https://chat.example.com"?)`,
		`config: line 10: server.cors_origins[7]: browsers send origins in lower case: use "https://chat.example.com"`,
		`config: line 11: server.cors_origins[8]: browsers send origins without their scheme's default port: use "https://chat.example.com"`,
		`config: line 12: server.cors_origins[9]: browsers send origins without their scheme's default port: use "http://localhost"`,
		`config: line 13: server.cors_origins[10]: port must be a number from 1 to 65535, got "99999"`,
		`config: line 14: server.cors_origins[11]: browsers send a host name in its ASCII (punycode, xn--) form: got "https://bücher.example"`,
		`config: line 16: server.cors_origins[13]: duplicate origin "https://chat.example.com" (already server.cors_origins[12])`,
		`config: line 17: server.cors_origins[14]: must be an origin, scheme://host[:port], got "https://"`,
		`config: line 18: server.cors_origins[15]: browsers send origins without their scheme's default port: use "http://[::1]"`,
	}
	_, err := Parse([]byte(yml), nil)
	if err == nil {
		t.Fatal("Parse succeeded, want errors")
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	_, err = Parse(nil, []string{"RAGWAY_SERVER_CORS_ORIGINS=https://a.example,*"})
	if want := `config: env RAGWAY_SERVER_CORS_ORIGINS: server.cors_origins[1]: "*" is not accepted`; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("env with *: %v, want prefix %q", err, want)
	}
}

func TestValidateFieldErrors(t *testing.T) {
	c := Default()
	c.Models[0].MaxConcurrency = 0
	c.RAG.TopK = 0
	err := c.Validate()
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "models[0].max_concurrency" {
		t.Fatalf("errors.As(%v) = %+v, want the models[0].max_concurrency FieldError", err, fe)
	}
	var paths []string
	for _, f := range fieldErrors(err) {
		paths = append(paths, f.Path)
	}
	if want := []string{"models[0].max_concurrency", "rag.top_k"}; !slices.Equal(paths, want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}

	m := DefaultModel()
	m.Backend = "echo"
	if err := m.Validate(); err == nil || err.Error() != "name: required" {
		t.Errorf("Model.Validate() = %v, want name: required", err)
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := write("good.yaml", "listen: 127.0.0.1:9999\n")
	c, err := Load(good, []string{"RAGWAY_RAG_TOP_K=7"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.Listen != "127.0.0.1:9999" || c.RAG.TopK != 7 || c.Models[0].Name != "chat" {
		t.Errorf("Load = %+v", c)
	}

	bad := write("bad.yaml", "listen: x\nrag:\n  chunk_tokens: 0\n  nope: 1\n")
	_, err = Load(bad, nil)
	if want := "config " + bad + ": line 4: rag.nope: unknown key"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Load(bad) = %v, want prefix %q", err, want)
	}

	invalid := write("invalid.yaml", "listen: x\nrag:\n  chunk_tokens: 0\n")
	_, err = Load(invalid, nil)
	want := "config " + invalid + `: line 1: listen: must be host:port, got "x"` + "\n" +
		"config " + invalid + ": line 3: rag.chunk_tokens: must be >= 1, got 0"
	if err == nil || err.Error() != want {
		t.Errorf("Load(invalid) = %v, want %q", err, want)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "config "+dir) {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "30", want: 30 * time.Second},
		{in: `"30"`, want: 30 * time.Second},
		{in: "0", want: 0},
		{in: "-2", want: -2 * time.Second},
		{in: "1.5", wantErr: true},
		{in: "abc", wantErr: true},
		{in: "99999999999999999", wantErr: true},
		{in: "[1]", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var got struct {
				D Duration `yaml:"d"`
			}
			err := yaml.Unmarshal([]byte("d: "+tt.in), &got)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %v, want an error", got.D)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.D.Std() != tt.want {
				t.Errorf("got %v, want %v", got.D, tt.want)
			}
		})
	}

	// Durations are written back as strings, in YAML and JSON.
	out, err := yaml.Marshal(struct {
		D Duration `yaml:"d"`
	}{Duration(90 * time.Second)})
	if err != nil || string(out) != "d: 1m30s\n" {
		t.Errorf("yaml.Marshal = %q, %v", out, err)
	}
	j, err := json.Marshal(DefaultModel())
	if err != nil || !strings.Contains(string(j), `"health_interval":"5s"`) {
		t.Errorf("json.Marshal = %s, %v", j, err)
	}
	m := DefaultModel()
	if err := json.Unmarshal([]byte(`{"name":"x","backend":"echo","idle_timeout":"2m"}`), &m); err != nil {
		t.Fatal(err)
	}
	if m.IdleTimeout.Std() != 2*time.Minute || m.MaxQueue != DefaultMaxQueue {
		t.Errorf("json.Unmarshal over DefaultModel = %+v", m)
	}
}

func TestEnvVars(t *testing.T) {
	vars := EnvVars()
	for name, path := range map[string]string{
		"RAGWAY_LISTEN":                    "listen",
		"RAGWAY_DATABASE_URL":              "database_url",
		"RAGWAY_PLUGINS_DIR":               "plugins_dir",
		"RAGWAY_VECTOR_STORE_KIND":         "vector_store.kind",
		"RAGWAY_RAG_TOP_K":                 "rag.top_k",
		"RAGWAY_MODELS":                    "models",
		"RAGWAY_SERVER_HEARTBEAT_INTERVAL": "server.heartbeat_interval",
	} {
		if vars[name] != path {
			t.Errorf("EnvVars()[%s] = %q, want %q", name, vars[name], path)
		}
	}
	// No two keys map to one variable.
	if n := len(envBindings()); len(vars) != n {
		t.Errorf("%d variables for %d keys: names collide", len(vars), n)
	}
	// Every variable is listed in the package documentation.
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for name := range vars {
		if !strings.Contains(string(doc), name+" ") {
			t.Errorf("doc.go does not list %s", name)
		}
	}
}

func TestPluginPath(t *testing.T) {
	tests := []struct {
		name string
		m    Model
		dir  string
		want string
	}{
		{"backend in plugins dir", Model{Backend: "llamacpp"}, "/opt/ragway/bin", "/opt/ragway/bin/ragway-llamacpp"},
		{"dashed backend", Model{Backend: "vllm-proxy"}, "bin", "bin/ragway-vllm-proxy"},
		{"command as given", Model{Backend: "echo", Command: "./my/plugin"}, "/opt", "./my/plugin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.m.PluginPath(tt.dir); got != tt.want {
				t.Errorf("PluginPath(%q) = %q, want %q", tt.dir, got, tt.want)
			}
		})
	}
}

func TestResolvePluginsDir(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	got, err := ResolvePluginsDir("")
	if err != nil || got != filepath.Dir(exe) {
		t.Errorf(`ResolvePluginsDir("") = %q, %v; want %q`, got, err, filepath.Dir(exe))
	}

	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	got, err = ResolvePluginsDir("bin")
	if err != nil || got != filepath.Join(wd, "bin") {
		t.Errorf(`ResolvePluginsDir("bin") = %q, %v; want %q`, got, err, filepath.Join(wd, "bin"))
	}
	got, err = ResolvePluginsDir("/abs/dir")
	if err != nil || got != "/abs/dir" {
		t.Errorf(`ResolvePluginsDir("/abs/dir") = %q, %v`, got, err)
	}
}

func TestModelLookup(t *testing.T) {
	c := Default()
	for _, name := range []string{"chat", "default"} {
		if m, ok := c.Model(name); !ok || m.Name != "chat" {
			t.Errorf("Model(%q) = %+v, %v", name, m, ok)
		}
	}
	if _, ok := c.Model("missing"); ok {
		t.Error(`Model("missing") found a model`)
	}
}

// TestTrustedProxies: addresses and prefixes are read (an address is a prefix of its
// full length, IPv4-mapped IPv6 as IPv4); anything else is refused naming the entry.
func TestTrustedProxies(t *testing.T) {
	c := Default()
	c.Web.TrustedProxies = []string{"10.0.0.5", "192.168.0.0/16", "fd00::/8", "::ffff:172.16.0.0/108"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range c.Web.TrustedPrefixes() {
		got = append(got, p.String())
	}
	if want := "10.0.0.5/32 192.168.0.0/16 fd00::/8 172.16.0.0/12"; strings.Join(got, " ") != want {
		t.Fatalf("prefixes %q, want %q", got, want)
	}
	for _, bad := range []string{"", "10.0.0", "example.com", "10.0.0.0/33", "fe80::1%eth0", "0.0.0.0/0", "::/0"} {
		c.Web.TrustedProxies = []string{"10.0.0.5", bad}
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), "web.trusted_proxies[1]") {
			t.Errorf("trusted proxy %q: %v", bad, err)
		}
	}
}
