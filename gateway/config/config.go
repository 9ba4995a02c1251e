package config

import (
	"bytes"
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole gateway configuration. The zero value is not useful: start from
// [Default], [Parse] or [Load].
type Config struct {
	// Listen is the host:port the HTTP/WebSocket server binds. Default "127.0.0.1:8080".
	// An empty host (":8080") listens on all interfaces.
	Listen string `yaml:"listen"`
	// DatabaseURL is the Postgres connection string (postgres://... URL or key=value
	// form). Empty means the project-local Postgres that `task run` starts.
	DatabaseURL string `yaml:"database_url"`
	// VectorStore selects where chunk vectors are indexed.
	VectorStore VectorStore `yaml:"vector_store"`
	// PluginsDir is where backend binaries (ragway-<backend>) are looked up. Empty means
	// the directory of the running ragway binary; see [ResolvePluginsDir]. A relative
	// path is relative to the working directory.
	PluginsDir string `yaml:"plugins_dir"`
	// ModelsDir is where `ragway models pull` (and POST /admin/models/pull) put model
	// files, and where backends find a model named without a path (llamacpp's
	// model_path: NAME or NAME.gguf). A relative path is relative to the working
	// directory. Default ".data/models".
	ModelsDir string `yaml:"models_dir"`
	// Models are the models served at start. Names and aliases share one namespace.
	Models []Model `yaml:"models"`
	// RAG tunes chunking and retrieval.
	RAG RAG `yaml:"rag"`
	// Server holds the HTTP server's limits and timeouts.
	Server Server `yaml:"server"`
	// Web is the website's accounts and sessions.
	Web Web `yaml:"web"`
}

// Web is the web block: the website's accounts and sessions (docs/web.md).
type Web struct {
	// Signup is who may sign up: "invite" (default: with an admin's invitation),
	// "open" (anyone) or "off" (accounts come from the CLI).
	Signup string `yaml:"signup"`
	// SessionTTL is how long a session lasts from sign-in. Default 720h (30 days).
	SessionTTL Duration `yaml:"session_ttl"`
	// SecureCookies is "auto" (default: the session cookie is Secure when the request
	// came over TLS), "always" (behind a proxy that terminates TLS) or "never".
	SecureCookies string `yaml:"secure_cookies"`
	// TrustedProxies are the reverse proxies (addresses or CIDR prefixes) whose
	// X-Forwarded-For is believed: a request from one of them is counted, by the
	// per-address sign-in and sign-up limits, against the rightmost address of that
	// header that is not itself a trusted proxy. Empty (default): the connection's
	// address counts, and forwarded headers are ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TrustedPrefixes returns TrustedProxies as prefixes (an address is a prefix of its
// full length); entries that do not parse (Validate reports them) are left out.
func (w Web) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range w.TrustedProxies {
		if p, ok := parseTrustedProxy(s); ok {
			out = append(out, p)
		}
	}
	return out
}

func parseTrustedProxy(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Bits() == 0 {
			return netip.Prefix{}, false // every address: any client could name itself
		}
		p = p.Masked()
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p, true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	return netip.Prefix{}, false
}

// VectorStore is the vector_store block.
type VectorStore struct {
	// Kind is "embedded" (default: an in-process index rebuilt from Postgres) or "qdrant".
	Kind string `yaml:"kind"`
	// URL is the Qdrant gRPC address, "host:port" or "http(s)://host:port" (e.g.
	// "127.0.0.1:6334"). Required when Kind is "qdrant".
	URL string `yaml:"url"`
	// APIKey is sent to Qdrant when non-empty.
	APIKey string `yaml:"api_key"`
}

// Vector store kinds.
const (
	VectorStoreEmbedded = "embedded"
	VectorStoreQdrant   = "qdrant"
)

// Model is one entry of the models list: a model served by a pool of plugin replicas.
type Model struct {
	// Name is what clients put in "model". Required.
	Name string `yaml:"name" json:"name"`
	// Aliases are further names for the same model.
	Aliases []string `yaml:"aliases" json:"aliases,omitempty"`
	// Backend names the plugin: backend X runs the binary ragway-X from the plugins
	// directory. Lower-case letters, digits and dashes. Required.
	Backend string `yaml:"backend" json:"backend"`
	// Command, if set, is the plugin binary's path, used as given instead of
	// plugins_dir/ragway-<backend>.
	Command string `yaml:"command" json:"command,omitempty"`
	// Replicas is the number of plugin processes. Default 1.
	Replicas int `yaml:"replicas" json:"replicas"`
	// MaxConcurrency is the number of requests one replica runs at once. Default 4.
	MaxConcurrency int `yaml:"max_concurrency" json:"max_concurrency"`
	// MaxQueue bounds the requests waiting for a free slot across the model's replicas;
	// beyond it requests fail with 429 and Retry-After. Default 64; 0 means no waiting.
	MaxQueue int `yaml:"max_queue" json:"max_queue"`
	// IdleTimeout > 0 stops replicas idle that long (scale to zero); a request
	// that finds no free replica starts a stopped one. 0 (default) keeps them running.
	IdleTimeout Duration `yaml:"idle_timeout" json:"idle_timeout"`
	// SHA256, if set, pins the plugin binary's checksum (64 hex characters).
	SHA256 string `yaml:"sha256" json:"sha256,omitempty"`
	// Embedding marks a model that serves /v1/embeddings (and can be rag.embedding_model).
	Embedding bool `yaml:"embedding" json:"embedding,omitempty"`
	// Rerank marks a model that serves /v1/rerank, scoring query-document pairs (and
	// can be rag.rerank_model): a cross-encoder such as a llama.cpp model with rank
	// pooling, or one vLLM serves for /v1/rerank.
	Rerank bool `yaml:"rerank" json:"rerank,omitempty"`
	// Options is passed to the plugin's Load as is; its meaning belongs to the backend.
	// Nested values decode as map[string]any, []any, string, int, float64 and bool.
	Options map[string]any `yaml:"options" json:"options,omitempty"`
	// HealthInterval is how often a ready replica is probed. Default 5s.
	HealthInterval Duration `yaml:"health_interval" json:"health_interval"`
	// Dispatch is how a request picks among the replicas: DispatchAffinity (the
	// default, ""), the replica that was sent the longest beginning of its prompt
	// unless it is much busier than the least busy one; DispatchLeastLoaded, the
	// one with the fewest outstanding requests.
	Dispatch string `yaml:"dispatch" json:"dispatch,omitempty"`
}

// Dispatch policies (Model.Dispatch).
const (
	DispatchAffinity    = "affinity"
	DispatchLeastLoaded = "least_loaded"
)

// DefaultOverlapPercent is rag.chunk_overlap when not set, in percent of
// rag.chunk_tokens.
const DefaultOverlapPercent = 15

// MaxRRFK bounds rag.rrf_k (gateway/vectorstore.MaxRRFK).
const MaxRRFK = 100000

// RAG is the rag block.
type RAG struct {
	// EmbeddingModel names (or aliases) a model with embedding: true used for dense
	// retrieval. Empty: retrieval uses sparse lexical vectors only.
	EmbeddingModel string `yaml:"embedding_model"`
	// ChunkTokens is the target chunk size in tokens. Default 800.
	ChunkTokens int `yaml:"chunk_tokens"`
	// ChunkOverlap is the number of tokens consecutive chunks share. Default
	// DefaultOverlapPercent of ChunkTokens (120 for 800); at most half of
	// ChunkTokens.
	ChunkOverlap int `yaml:"chunk_overlap"`
	// TopK is the number of chunks retrieved per question. Default 4.
	TopK int `yaml:"top_k"`
	// Fusion is how hybrid search (with an embedding model) fuses the dense and the
	// sparse lists: "rrf" (reciprocal rank fusion, the default) or "weighted" (a
	// weighted sum of min-max normalised scores). A knowledge base may set its own.
	Fusion string `yaml:"fusion"`
	// RRFK is rrf's rank constant k: a hit at rank r scores 1/(k + r). Default 60.
	RRFK int `yaml:"rrf_k"`
	// DenseWeight is weighted's share of the dense list, 0 to 1 (the sparse list has
	// the rest). Default 0.5.
	DenseWeight float64 `yaml:"dense_weight"`
	// RerankModel names (or aliases) a model with rerank: true that re-scores the
	// best RerankCandidates hits of every retrieval before the top_k are cited. Empty:
	// no reranking. A knowledge base may turn it off for itself.
	RerankModel string `yaml:"rerank_model"`
	// RerankCandidates is how many hits the reranker re-scores, 1 to
	// MaxRerankCandidates. Default 20.
	RerankCandidates int `yaml:"rerank_candidates"`
}

// MaxRerankCandidates bounds rag.rerank_candidates (gateway/rag.MaxRerankCandidates).
const MaxRerankCandidates = 200

// Server is the server block: limits and timeouts of the HTTP/WebSocket server.
type Server struct {
	// MaxBodyBytes caps a request body (ingest uploads included). Default 4 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// ShutdownGrace is how long shutdown waits for in-flight requests before stopping
	// plugins. Default 30s.
	ShutdownGrace Duration `yaml:"shutdown_grace"`
	// RequestTimeout is the deadline of one generation, queueing included. Default 10m.
	RequestTimeout Duration `yaml:"request_timeout"`
	// QueueTimeout is the longest a request waits in a model's queue for a free slot.
	// Default 30s.
	QueueTimeout Duration `yaml:"queue_timeout"`
	// HeartbeatInterval is the period of SSE comment heartbeats sent while a streaming
	// request waits for its first token. Default 5s.
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// MetricsToken, when set, is the bearer token GET /metrics requires. Empty:
	// /metrics is open when listen is a loopback address, and otherwise needs an API
	// key with the admin scope.
	MetricsToken string `yaml:"metrics_token"`
	// HeaderTimeout is how long a request's headers may take to arrive, counted from
	// a new connection's accept or a request's first byte. Default 10s.
	HeaderTimeout Duration `yaml:"header_timeout"`
	// BodyTimeout is how long a request's body may take to arrive after its headers.
	// Default 60s.
	BodyTimeout Duration `yaml:"body_timeout"`
	// IdleTimeout closes keep-alive connections idle for that long. Default 2m.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// WriteTimeout bounds each write to a client: one that does not read what it asked
	// for is cut. Default 60s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// MaxUnauthenticatedConns bounds the connections that have not yet carried a
	// request with a valid key, over all clients; beyond it new connections get 503.
	// Default 1024; 0: no limit.
	MaxUnauthenticatedConns int `yaml:"max_unauthenticated_conns"`
	// MaxUnauthenticatedConnsPerIP bounds them per client IP address. Default 64; 0:
	// no limit (behind a proxy every client has the proxy's address).
	MaxUnauthenticatedConnsPerIP int `yaml:"max_unauthenticated_conns_per_ip"`
	// CORSOrigins are the origins (scheme://host[:port], exactly as browsers send them
	// in Origin: lower case, no default port, no path) of the web pages that may call
	// the API from a browser: preflights from them are answered and their responses
	// carry CORS headers. WebSocket upgrades whose Origin is neither the gateway's own
	// nor listed here are refused. Empty (the default): CORS off. "*" and "null" are not
	// accepted: any page could then ride on a browser's credentials.
	CORSOrigins []string `yaml:"cors_origins"`
}

// Default model knobs, applied to every models entry before the keys it sets.
const (
	DefaultReplicas       = 1
	DefaultMaxConcurrency = 4
	DefaultMaxQueue       = 64
	DefaultHealthInterval = Duration(5 * time.Second)
)

// DefaultModel returns a Model with the defaults every models entry starts from. Decode
// a model from another format (an admin API body) into it to get the same defaults.
func DefaultModel() Model {
	return Model{
		Replicas:       DefaultReplicas,
		MaxConcurrency: DefaultMaxConcurrency,
		MaxQueue:       DefaultMaxQueue,
		HealthInterval: DefaultHealthInterval,
	}
}

// modelFields has Model's fields without its UnmarshalYAML method.
type modelFields Model

// UnmarshalYAML decodes a models entry on top of [DefaultModel]. It uses yaml.v3's
// function-style interface on purpose: that one keeps the decoder's KnownFields setting,
// so unknown keys inside a model are still errors.
func (m *Model) UnmarshalYAML(unmarshal func(any) error) error {
	f := modelFields(DefaultModel())
	if err := unmarshal(&f); err != nil {
		return err
	}
	*m = Model(f)
	return nil
}

// PluginPath returns the plugin binary for m: Command as given if set, else
// pluginsDir/ragway-<backend>. pluginsDir should already be resolved
// ([ResolvePluginsDir]).
func (m Model) PluginPath(pluginsDir string) string {
	if m.Command != "" {
		return m.Command
	}
	return filepath.Join(pluginsDir, "ragway-"+m.Backend)
}

// Names returns the model's name followed by its aliases.
func (m Model) Names() []string {
	return append([]string{m.Name}, m.Aliases...)
}

// Model returns the configured model whose name or alias is name.
func (c *Config) Model(name string) (Model, bool) {
	for _, m := range c.Models {
		for _, n := range m.Names() {
			if n == name {
				return m, true
			}
		}
	}
	return Model{}, false
}

// ResolvePluginsDir turns a plugins_dir value into an absolute directory: "" becomes the
// directory of the running executable (symlinks resolved), a relative path is made
// absolute against the working directory.
func ResolvePluginsDir(dir string) (string, error) {
	if dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", fmt.Errorf("resolve plugins_dir %q: %w", dir, err)
		}
		return abs, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("resolve plugins_dir: locate the ragway executable: %w", err)
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Dir(exe), nil
}

//go:embed default.yaml
var defaultYAML []byte

// DefaultYAML returns the embedded default configuration file, default.yaml.
func DefaultYAML() []byte {
	return bytes.Clone(defaultYAML)
}

// Default returns the built-in configuration (the embedded default.yaml): listen on
// 127.0.0.1:8080, the embedded vector store, plugins next to the ragway binary, and one
// model "chat" (alias "default") on the echo backend. Each call returns a fresh copy.
func Default() *Config {
	c := &Config{}
	if errs := decodeYAML(c, defaultYAML, "models"); len(errs) > 0 {
		panic(fmt.Sprintf("config: embedded default.yaml: %v", errors.Join(errs...)))
	}
	return c
}

// Load reads the YAML file at path (none if path is ""), applies it over [Default], then
// applies RAGWAY_* variables from env (in os.Environ form; a later entry wins over an
// earlier one) and validates the result. Every problem found is returned, joined; each
// names the file (and line) or variable and the key path.
func Load(path string, env []string) (*Config, error) {
	if path == "" {
		return load("config", nil, env)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return load("config "+path, data, env)
}

// Parse is [Load] for a file's contents already in memory.
func Parse(data []byte, env []string) (*Config, error) {
	return load("config", data, env)
}

// load builds the configuration; prefix starts every error message ("config FILE").
func load(prefix string, data []byte, env []string) (*Config, error) {
	c := Default()
	var errs []error

	// Where each key path is in the file, for messages about values the file set.
	var index *nodeIndex
	if len(bytes.TrimSpace(data)) > 0 {
		index = indexYAML(data, "")
		for _, e := range decodeYAML(c, data, "") {
			errs = append(errs, fmt.Errorf("%s: %w", prefix, e))
		}
	}

	fromEnv, envErrs := applyEnv(c, env)
	for _, e := range envErrs {
		errs = append(errs, fmt.Errorf("config: %w", e))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	// The overlap follows the chunk size (DefaultOverlapPercent of it) unless set.
	if !index.has("rag.chunk_overlap") && fromEnv["rag.chunk_overlap"] == "" {
		c.RAG.ChunkOverlap = c.RAG.ChunkTokens * DefaultOverlapPercent / 100
	}
	if err := c.Validate(); err != nil {
		for _, fe := range fieldErrors(err) {
			switch {
			case fromEnv.origin(fe.Path) != "":
				errs = append(errs, fmt.Errorf("config: %s: %w", fromEnv.origin(fe.Path), fe))
			case index.line(fe.Path) > 0:
				errs = append(errs, fmt.Errorf("%s: line %d: %w", prefix, index.line(fe.Path), fe))
			default:
				errs = append(errs, fmt.Errorf("%s: %w", prefix, fe))
			}
		}
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// decodeYAML strictly decodes one YAML document into out (unknown keys and mistyped values
// are errors) and returns each problem with its line and key path. base is the key path of
// the document root ("" for a whole file, "models" for a models list).
func decodeYAML(out any, data []byte, base string) []error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(out)
	if errors.Is(err, io.EOF) {
		return nil // empty document, or only comments
	}
	var msgs []string
	if err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return []error{syntaxError(err)}
		}
		msgs = te.Errors
	}
	index := indexYAML(data, base)
	msgs = append(msgs, index.floatsInInts(reflect.TypeOf(out).Elem())...)
	if len(msgs) > 0 {
		slices.SortStableFunc(msgs, func(a, b string) int { return cmp.Compare(msgLine(a), msgLine(b)) })
		var errs []error
		seen := map[string]bool{}
		for _, msg := range msgs {
			msg = index.explain(msg)
			if !seen[msg] {
				seen[msg] = true
				errs = append(errs, errors.New(msg))
			}
		}
		return errs
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return []error{syntaxError(err)}
		}
		return []error{fmt.Errorf("line %d: a second YAML document; only one is allowed", extra.Line)}
	}
	return nil
}

// syntaxError rewords yaml.v3's "yaml: line N: ..." as "line N: ...".
func syntaxError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
}

// Duration is a time.Duration that YAML (and env) values give as a Go duration string
// ("30s", "1m30s", "250ms") or as a whole number of seconds (30).
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration ("30s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		// The wording yaml.v3 uses, so the message gets the key path like its own.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(
			"line %d: cannot unmarshal %s into config.Duration", n.Line, n.ShortTag())}}
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}

// MarshalYAML implements yaml.Marshaler: durations are written as strings ("30s").
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalText implements encoding.TextMarshaler (JSON writes "30s").
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with the rules of [ParseDuration].
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDuration parses a Go duration string ("30s") or a whole number of seconds ("30").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		const maxSeconds = int64(1<<63-1) / int64(time.Second)
		if n > maxSeconds || n < -maxSeconds {
			return 0, fmt.Errorf("duration `%s`: out of range", s)
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration `%s`: use a Go duration such as \"30s\" or \"2m\", or whole seconds", s)
	}
	return Duration(v), nil
}
