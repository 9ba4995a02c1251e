package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
)

var (
	backendRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// problems collects FieldErrors.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Validate checks c and returns every problem found, joined with errors.Join; each is a
// *FieldError naming the key path ("models[1].max_concurrency: must be >= 1, got 0").
func (c *Config) Validate() error {
	var p problems

	if err := checkHostPort(c.Listen); err != nil {
		p.add("listen", "%v", err)
	}
	if c.DatabaseURL != "" && strings.Contains(c.DatabaseURL, "://") {
		u, err := url.Parse(c.DatabaseURL)
		switch {
		case err != nil:
			p.add("database_url", "not a valid URL: %v", unwrapURLError(err))
		case u.Scheme != "postgres" && u.Scheme != "postgresql":
			p.add("database_url", "scheme must be \"postgres\" or \"postgresql\", got %q", u.Scheme)
		}
	}

	switch c.VectorStore.Kind {
	case VectorStoreEmbedded:
	case VectorStoreQdrant:
		if c.VectorStore.URL == "" {
			p.add("vector_store.url", "required when vector_store.kind is %q (e.g. \"127.0.0.1:6334\")", VectorStoreQdrant)
		} else if err := checkQdrantURL(c.VectorStore.URL); err != nil {
			p.add("vector_store.url", "%v", err)
		}
	default:
		p.add("vector_store.kind", "must be %q or %q, got %q", VectorStoreEmbedded, VectorStoreQdrant, c.VectorStore.Kind)
	}

	seen := map[string]string{} // model name or alias → the key path that first used it
	for i, m := range c.Models {
		prefix := fmt.Sprintf("models[%d].", i)
		m.validate(prefix, &p)
		claim := func(path, name string) {
			if name == "" {
				return
			}
			if first, dup := seen[name]; dup {
				p.add(path, "duplicate model name %q (already used by %s)", name, first)
				return
			}
			seen[name] = path
		}
		claim(prefix+"name", m.Name)
		for j, a := range m.Aliases {
			claim(fmt.Sprintf("%saliases[%d]", prefix, j), a)
		}
	}

	r := c.RAG
	// rag's models are named models of their kind.
	for _, ref := range []struct {
		path, name, kind, flag string
		is                     func(Model) bool
	}{
		{"rag.embedding_model", r.EmbeddingModel, "an embedding", "embedding", func(m Model) bool { return m.Embedding }},
		{"rag.rerank_model", r.RerankModel, "a rerank", "rerank", func(m Model) bool { return m.Rerank }},
	} {
		if ref.name == "" {
			continue
		}
		m, ok := c.Model(ref.name)
		switch {
		case !ok:
			p.add(ref.path, "no model or alias named %q in models", ref.name)
		case !ref.is(m):
			p.add(ref.path, "model %q is not %s model (set %s: true on it)", m.Name, ref.kind, ref.flag)
		}
	}
	if r.ChunkTokens < 1 {
		p.add("rag.chunk_tokens", "must be >= 1, got %d", r.ChunkTokens)
	}
	if r.ChunkOverlap < 0 {
		p.add("rag.chunk_overlap", "must be >= 0, got %d", r.ChunkOverlap)
	} else if r.ChunkTokens >= 1 && r.ChunkOverlap > r.ChunkTokens/2 {
		p.add("rag.chunk_overlap", "must be at most half of rag.chunk_tokens (%d), got %d", r.ChunkTokens/2, r.ChunkOverlap)
	}
	if r.TopK < 1 {
		p.add("rag.top_k", "must be >= 1, got %d", r.TopK)
	}
	if r.RerankCandidates < 1 || r.RerankCandidates > MaxRerankCandidates {
		p.add("rag.rerank_candidates", "must be 1 to %d, got %d", MaxRerankCandidates, r.RerankCandidates)
	}
	if r.Fusion != "rrf" && r.Fusion != "weighted" {
		p.add("rag.fusion", `must be "rrf" or "weighted", got %q`, r.Fusion)
	}
	if r.RRFK < 1 || r.RRFK > MaxRRFK {
		p.add("rag.rrf_k", "must be 1 to %d, got %d", MaxRRFK, r.RRFK)
	}
	if !(r.DenseWeight >= 0 && r.DenseWeight <= 1) {
		p.add("rag.dense_weight", "must be 0 to 1, got %v", r.DenseWeight)
	}

	w := c.Web
	if w.Signup != "invite" && w.Signup != "open" && w.Signup != "off" {
		p.add("web.signup", `must be "invite", "open" or "off", got %q`, w.Signup)
	}
	if w.SessionTTL < Duration(time.Minute) {
		p.add("web.session_ttl", "must be at least 1m, got %s", w.SessionTTL)
	}
	if w.SecureCookies != "auto" && w.SecureCookies != "always" && w.SecureCookies != "never" {
		p.add("web.secure_cookies", `must be "auto", "always" or "never", got %q`, w.SecureCookies)
	}
	for i, tp := range w.TrustedProxies {
		if _, ok := parseTrustedProxy(tp); !ok {
			p.add(fmt.Sprintf("web.trusted_proxies[%d]", i), "must be an IP address or a CIDR prefix (10.0.0.0/8, fd00::/8), not every address, got %q", tp)
		}
	}

	s := c.Server
	if s.MaxBodyBytes < 1 {
		p.add("server.max_body_bytes", "must be >= 1, got %d", s.MaxBodyBytes)
	}
	if s.MaxUnauthenticatedConns < 0 {
		p.add("server.max_unauthenticated_conns", "must be >= 0 (0: no limit), got %d", s.MaxUnauthenticatedConns)
	}
	if s.MaxUnauthenticatedConnsPerIP < 0 {
		p.add("server.max_unauthenticated_conns_per_ip", "must be >= 0 (0: no limit), got %d", s.MaxUnauthenticatedConnsPerIP)
	}
	if s.ShutdownGrace < 0 {
		p.add("server.shutdown_grace", "must be >= 0, got %s", s.ShutdownGrace)
	}
	for _, d := range []struct {
		path string
		v    Duration
	}{
		{"server.request_timeout", s.RequestTimeout},
		{"server.queue_timeout", s.QueueTimeout},
		{"server.heartbeat_interval", s.HeartbeatInterval},
		{"server.header_timeout", s.HeaderTimeout},
		{"server.body_timeout", s.BodyTimeout},
		{"server.idle_timeout", s.IdleTimeout},
		{"server.write_timeout", s.WriteTimeout},
	} {
		if d.v <= 0 {
			p.add(d.path, "must be > 0, got %s", d.v)
		}
	}

	firstOrigin := map[string]string{} // origin → the key path that first listed it
	for i, o := range s.CORSOrigins {
		path := fmt.Sprintf("server.cors_origins[%d]", i)
		if err := checkOrigin(o); err != nil {
			p.add(path, "%v", err)
			continue
		}
		if first, dup := firstOrigin[o]; dup {
			p.add(path, "duplicate origin %q (already %s)", o, first)
			continue
		}
		firstOrigin[o] = path
	}

	return errors.Join(p...)
}

// checkOrigin accepts an origin exactly as a browser sends it in an Origin header:
// scheme://host[:port] in lower case, without its scheme's default port, a path, a query
// or a user, with an ASCII host. Entries are compared with the header byte for byte, so
// any other spelling would never match.
func checkOrigin(s string) error {
	switch s {
	case "":
		return errors.New("must not be empty")
	case "*":
		return errors.New(`"*" is not accepted: list the origin of each page that may call the gateway, e.g. "https://chat.example.com" ` +
			"(any origin could then ride on a browser's credentials, and WebSocket upgrades are checked against this list)")
	case "null":
		return errors.New(`"null" is not accepted: browsers send it for sandboxed and file:// pages, which any site can make`)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" || u.Opaque != "" || !strings.Contains(s, "://") {
		return fmt.Errorf("must be an origin, scheme://host[:port], got %q", s)
	}
	origin := u.Scheme + "://" + u.Host
	if u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(s, "#") {
		return fmt.Errorf("must be an origin, scheme://host[:port] without a path, query or user, got %q (did you mean %q?)", s, strings.ToLower(origin))
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return fmt.Errorf("browsers send a host name in its ASCII (punycode, xn--) form: got %q", s)
		}
	}
	if lower := strings.ToLower(s); lower != s {
		return fmt.Errorf("browsers send origins in lower case: use %q", lower)
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port must be a number from 1 to 65535, got %q", port)
		}
		if (u.Scheme == "http" || u.Scheme == "ws") && n == 80 || (u.Scheme == "https" || u.Scheme == "wss") && n == 443 {
			return fmt.Errorf("browsers send origins without their scheme's default port: use %q", u.Scheme+"://"+strings.TrimSuffix(u.Host, ":"+port))
		}
	}
	return nil
}

// Validate checks one model on its own (not the uniqueness of its names among other
// models, which [Config.Validate] does). Paths in the errors are relative to the model
// ("max_concurrency: must be >= 1, got 0").
func (m Model) Validate() error {
	var p problems
	m.validate("", &p)
	return errors.Join(p...)
}

func (m Model) validate(prefix string, p *problems) {
	if m.Name == "" {
		p.add(prefix+"name", "required")
	} else if err := checkModelName(m.Name); err != nil {
		p.add(prefix+"name", "%v", err)
	}
	for j, a := range m.Aliases {
		path := fmt.Sprintf("%saliases[%d]", prefix, j)
		if a == "" {
			p.add(path, "must not be empty")
		} else if err := checkModelName(a); err != nil {
			p.add(path, "%v", err)
		}
	}
	switch {
	case m.Backend == "":
		p.add(prefix+"backend", "required (the plugin ragway-<backend>, e.g. \"echo\" or \"llamacpp\")")
	case !backendRE.MatchString(m.Backend):
		p.add(prefix+"backend", "must match ^[a-z0-9][a-z0-9-]*$, got %q", m.Backend)
	}
	if m.Replicas < 1 {
		p.add(prefix+"replicas", "must be >= 1, got %d (to scale to zero when idle, set idle_timeout)", m.Replicas)
	}
	if m.MaxConcurrency < 1 {
		p.add(prefix+"max_concurrency", "must be >= 1, got %d", m.MaxConcurrency)
	}
	if m.MaxQueue < 0 {
		p.add(prefix+"max_queue", "must be >= 0, got %d", m.MaxQueue)
	}
	if m.IdleTimeout < 0 {
		p.add(prefix+"idle_timeout", "must be >= 0, got %s", m.IdleTimeout)
	}
	if m.Embedding && m.Rerank {
		p.add(prefix+"rerank", "a model is an embedding model or a rerank model, not both")
	}
	if m.HealthInterval <= 0 {
		p.add(prefix+"health_interval", "must be > 0, got %s", m.HealthInterval)
	}
	if m.Dispatch != "" && m.Dispatch != DispatchAffinity && m.Dispatch != DispatchLeastLoaded {
		p.add(prefix+"dispatch", "must be %q or %q, got %q", DispatchAffinity, DispatchLeastLoaded, m.Dispatch)
	}
	if m.SHA256 != "" && !sha256RE.MatchString(m.SHA256) {
		p.add(prefix+"sha256", "must be 64 hex characters, got %d characters %q", len(m.SHA256), m.SHA256)
	}
}

// CheckModelName checks a model's name or alias as a models entry's are checked.
func CheckModelName(s string) error {
	if s == "" {
		return errors.New("required")
	}
	return checkModelName(s)
}

// checkModelName rejects names clients could not send back reliably.
func checkModelName(s string) error {
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("must not contain spaces or control characters, got %q", s)
		}
	}
	return nil
}

// checkHostPort accepts "host:port" and ":port" with a numeric port.
func checkHostPort(s string) error {
	if s == "" {
		return errors.New(`required, e.g. "127.0.0.1:8080"`)
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("must be host:port, got %q", s)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port must be a number from 0 to 65535, got %q", port)
	}
	return nil
}

// checkQdrantURL accepts "host:port" or an http(s) URL with a host.
func checkQdrantURL(s string) error {
	if !strings.Contains(s, "://") {
		if err := checkHostPort(s); err != nil {
			return fmt.Errorf("must be host:port or http(s)://host:port, got %q", s)
		}
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a valid URL: %v", unwrapURLError(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("missing host in %q", s)
	}
	return nil
}

// unwrapURLError drops url.Error's repetition of the whole URL, which may hold a password.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
