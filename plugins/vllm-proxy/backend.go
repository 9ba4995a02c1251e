package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// version is the plugin's version, reported in Info and sent as the
// User-Agent.
const version = "1.0.0"

// proxy implements sdk.Backend, sdk.Embedder, sdk.Tokenizer and
// sdk.Reranker by forwarding to the upstreams of its options. Its state is
// set by Load.
type proxy struct {
	log *slog.Logger

	loadMu sync.Mutex // serialises Load
	st     atomic.Pointer[state]
}

var (
	_ sdk.Backend   = (*proxy)(nil)
	_ sdk.Embedder  = (*proxy)(nil)
	_ sdk.Tokenizer = (*proxy)(nil)
	_ sdk.Reranker  = (*proxy)(nil)
)

func newProxy(log *slog.Logger) *proxy { return &proxy{log: log} }

// state is a loaded model: the options, the upstream pool and its client.
type state struct {
	opts  options
	model string // the upstream model id
	pool  *pool
	// key is the upstream API key; it goes into the Authorization header
	// and nowhere else.
	key     string
	keyHint string // what to check when an upstream refuses the key
	// name is the model's name in the gateway config (else the upstream
	// model), for messages.
	name string
	// rerank: the model was loaded to rerank (LoadRequest.Rerank); it
	// serves Rerank and Tokenize, not Generate or Embed.
	rerank bool
	// maxInput is an embedding model's limit on one input, or a rerank
	// model's on one query-document pair, in tokens: vLLM's max_model_len
	// (0: unknown).
	maxInput  int
	log       *slog.Logger
	stopProbe context.CancelFunc
}

func (p *proxy) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:    "vllm-proxy",
		Version: version,
		Capabilities: []sdk.Capability{sdk.CapabilityChat, sdk.CapabilityCompletion, sdk.CapabilityEmbedding, sdk.CapabilityTokenize, sdk.CapabilityRerank,
			sdk.CapabilityStructuredOutput, sdk.CapabilityTools},
		// The upstreams decide; Health.Slots gives a nominal figure.
		MaxParallel: 0,
	}, nil
}

func newHTTPClient(o options) *http.Client {
	d := &net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          o.MaxIdleConns * len(o.Upstreams),
		MaxIdleConnsPerHost:   o.MaxIdleConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   o.Timeout,
		ResponseHeaderTimeout: o.Timeout,
		ExpectContinueTimeout: time.Second,
		// Compression would make a proxy or the server buffer the stream.
		DisableCompression: true,
	}}
}

// Load validates the options, reads the API key, probes every upstream
// (at least one must be healthy), checks that the upstreams that list
// their models serve the upstream model, for an embedding model embeds a
// probe input to learn the vector size, and for a rerank model reranks a
// probe document (which fails early on an upstream without POST /v1/rerank
// or a model that does not score). It then starts probing the upstreams
// every health_interval for the life of the process.
func (p *proxy) Load(ctx context.Context, req sdk.LoadRequest) (sdk.ModelInfo, error) {
	if req.Embedding && req.Rerank {
		return sdk.ModelInfo{}, sdk.InvalidRequestf("model %q is marked both embedding and rerank: a model is loaded for one of them", req.Model)
	}
	o, err := parseOptions(req.Options)
	if err != nil {
		return sdk.ModelInfo{}, err
	}
	key, err := o.apiKey()
	if err != nil {
		return sdk.ModelInfo{}, err
	}
	model, defaulted := o.UpstreamModel, o.UpstreamModel == ""
	if defaulted {
		model = req.Model
	}
	if model == "" {
		return sdk.ModelInfo{}, sdk.InvalidRequestf("option upstream_model: required when the model has no name")
	}
	st := &state{opts: o, model: model, name: cmp.Or(req.Model, model), rerank: req.Rerank, key: key, log: p.log}
	if o.APIKeyEnv != "" {
		st.keyHint = fmt.Sprintf("check the key in environment variable %s (option api_key_env)", o.APIKeyEnv)
	} else {
		st.keyHint = "the upstream wants an API key: name the environment variable holding it in option api_key_env"
	}
	client := newHTTPClient(o)
	st.pool = newPool(o.Upstreams, client, key, o.Timeout, p.log)
	ok := false
	defer func() {
		if !ok {
			client.CloseIdleConnections()
		}
	}()

	st.pool.probeAll(ctx)
	if ctx.Err() != nil {
		return sdk.ModelInfo{}, ctx.Err()
	}
	if st.pool.healthyCount() == 0 {
		return sdk.ModelInfo{}, fmt.Errorf("no upstream answers: %s", st.pool.downReasons())
	}
	mi, err := st.checkModels(ctx, defaulted)
	if err != nil {
		return sdk.ModelInfo{}, err
	}
	if req.Embedding {
		r, err := st.embed(ctx, []string{"ragway embedding probe"}, 0)
		if err != nil {
			return sdk.ModelInfo{}, fmt.Errorf("embedding model %q: a probe embedding failed: %w", model, err)
		}
		mi.EmbeddingSize = len(r.Embeddings[0])
		// vLLM embeds one input in one sequence of max_model_len tokens.
		mi.MaxInputTokens, st.maxInput = mi.ContextLength, mi.ContextLength
	}
	if req.Rerank {
		if _, err := st.rerankDocs(ctx, "ragway rerank probe", []string{"ragway rerank probe document"}, 0); err != nil {
			return sdk.ModelInfo{}, fmt.Errorf("rerank model %q: a probe rerank failed: %w", model, err)
		}
		// vLLM scores one query-document pair in one sequence of
		// max_model_len tokens.
		mi.MaxInputTokens, st.maxInput = mi.ContextLength, mi.ContextLength
	}

	probeCtx, stop := context.WithCancel(context.Background())
	st.stopProbe = stop
	st.pool.run(probeCtx, o.HealthInterval)
	ok = true

	p.loadMu.Lock()
	old := p.st.Swap(st)
	p.loadMu.Unlock()
	if old != nil {
		old.stopProbe()
		// Requests still running on the old client finish; its idle
		// connections (the probes' among them) would linger otherwise.
		old.pool.client.CloseIdleConnections()
	}
	p.log.Info("model loaded", "model", req.Model, "upstream_model", model, "embedding", req.Embedding, "rerank", req.Rerank,
		"upstreams", len(o.Upstreams), "healthy", st.pool.healthyCount(), "context_length", mi.ContextLength)
	return mi, nil
}

// checkModels asks every healthy upstream for its model list; one that
// lists models but not the upstream model is a configuration error. The
// context length is vLLM's max_model_len (the smallest, if they differ).
func (s *state) checkModels(ctx context.Context, defaulted bool) (sdk.ModelInfo, error) {
	mi := sdk.ModelInfo{HasChatTemplate: true}
	for _, u := range s.pool.ups {
		if !u.isHealthy() {
			continue
		}
		ml, status, body, err := s.pool.models(ctx, u)
		switch {
		case ctx.Err() != nil:
			return mi, ctx.Err()
		case err != nil:
			s.log.Debug("no model list from upstream", "upstream", u.base, "error", err)
			continue
		case classifyStatus(status) == kindAuth:
			return mi, httpStatusError(u.base, status, body, s.keyHint)
		case status != http.StatusOK || len(ml.Data) == 0:
			continue
		}
		var ids []string
		found := false
		for _, m := range ml.Data {
			ids = append(ids, m.ID)
			if m.ID == s.model {
				found = true
				if n := m.MaxModelLen; n > 0 && (mi.ContextLength == 0 || n < mi.ContextLength) {
					mi.ContextLength = n
				}
			}
		}
		if !found {
			hint := ""
			if defaulted {
				hint = "; upstream_model defaults to the model's name"
			}
			return mi, sdk.InvalidRequestf("option upstream_model: upstream %s does not serve model %q (it serves %s)%s",
				u.base, s.model, strings.Join(ids, ", "), hint)
		}
	}
	return mi, nil
}

// loaded returns the state, or ErrModelNotLoaded.
func (p *proxy) loaded() (*state, error) {
	st := p.st.Load()
	if st == nil {
		return nil, sdk.ErrModelNotLoaded
	}
	return st, nil
}

// notForRerank refuses a generation or an embedding (what) on a model
// loaded to rerank.
func (s *state) notForRerank(what string) error {
	if !s.rerank {
		return nil
	}
	return sdk.InvalidRequestf("model %q is loaded to rerank (rerank: true in the gateway config): it does not serve %s", s.name, what)
}

func (p *proxy) Health(context.Context) (sdk.Health, error) {
	st := p.st.Load()
	if st == nil {
		return sdk.Health{OK: true, Message: "no model loaded"}, nil
	}
	var h sdk.Health
	healthy := 0
	for _, u := range st.pool.ups {
		r, w := u.load()
		h.Running += r
		h.Waiting += w
		if u.isHealthy() {
			healthy++
		}
	}
	h.OK = healthy > 0
	h.Slots = healthy * slotsPerUpstream
	if n := len(st.pool.ups); healthy < n {
		h.Message = fmt.Sprintf("%d of %d upstreams healthy; %s", healthy, n, st.pool.downReasons())
	}
	return h, nil
}

// Generate streams a chat completion (messages) or a completion (prompt)
// from the least loaded healthy upstream. A failure before any event was
// emitted is retried on the next upstream, each upstream at most once.
func (p *proxy) Generate(ctx context.Context, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
	st, err := p.loaded()
	if err != nil {
		return err
	}
	if err := st.notForRerank("generation"); err != nil {
		return err
	}
	path, body, err := generateBody(st.model, req, st.opts.ExtraBody)
	if err != nil {
		return err
	}
	return st.withUpstreams(ctx, func(actx context.Context, commit func() bool, u *upstream) (bool, error) {
		return st.stream(actx, u, path, body, req, func(ev sdk.Event) error {
			// The first event ends the deadline on finding an upstream;
			// after it fired, nothing more may reach the caller.
			if !commit() {
				return errDeadline
			}
			return emit(ev)
		})
	})
}

func (p *proxy) Embed(ctx context.Context, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	st, err := p.loaded()
	if err != nil {
		return sdk.EmbedResponse{}, err
	}
	if err := st.notForRerank("embeddings"); err != nil {
		return sdk.EmbedResponse{}, err
	}
	if len(req.Input) == 0 {
		return sdk.EmbedResponse{Embeddings: [][]float32{}}, nil
	}
	truncate := 0
	if req.Truncate {
		truncate = st.maxInput
		if truncate == 0 {
			truncate = -1 // vLLM: the model's max_model_len
		}
	}
	return st.embed(ctx, req.Input, truncate)
}

// Tokenize counts each input's tokens with the upstream's POST /tokenize
// (vLLM's; special tokens added, as for an embedding or a raw prompt), one
// request per input, all on the least loaded healthy upstream. An upstream
// without the endpoint makes it sdk.ErrUnsupported.
func (p *proxy) Tokenize(ctx context.Context, req sdk.TokenizeRequest) (sdk.TokenizeResponse, error) {
	st, err := p.loaded()
	if err != nil {
		return sdk.TokenizeResponse{}, err
	}
	out := sdk.TokenizeResponse{Counts: make([]int, len(req.Input))}
	if len(req.Input) == 0 {
		return out, nil
	}
	err = st.withUpstreams(ctx, func(actx context.Context, commit func() bool, u *upstream) (bool, error) {
		for i, in := range req.Input {
			n, err := st.tokenizeOnce(actx, u, in)
			if err != nil {
				return false, err
			}
			if i == 0 && !commit() {
				return false, errDeadline
			}
			out.Counts[i] = n
		}
		return false, nil
	})
	return out, err
}

// tokenizeOnce counts the tokens of one input on u.
func (s *state) tokenizeOnce(ctx context.Context, u *upstream, input string) (int, error) {
	body, err := tokenizeBody(s.model, input)
	if err != nil {
		return 0, sdk.InvalidRequestf("encode the upstream request: %v", err)
	}
	u.inflight.Add(1)
	defer u.inflight.Add(-1)
	resp, err := s.post(ctx, u, pathTokenize, body, false, "")
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		err = fmt.Errorf("upstream %s: %w", u.base, transportError(err))
		s.pool.markDown(u, err)
		return 0, retryable{err}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return 0, fmt.Errorf("%w: upstream %s has no POST %s (a vLLM server has)", sdk.ErrUnsupported, u.base, pathTokenize)
	default:
		return 0, s.statusError(u, resp)
	}
	var tr tokenizeResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&tr); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, retryable{fmt.Errorf("upstream %s: reading the token count: %w", u.base, err)}
	}
	switch {
	case tr.Count != nil && *tr.Count >= 0:
		return *tr.Count, nil
	case tr.Tokens != nil:
		return len(tr.Tokens), nil
	}
	return 0, retryable{fmt.Errorf("upstream %s answered %s without a count", u.base, pathTokenize)}
}

// withUpstreams runs try on upstreams in pick order until one succeeds, it
// fails after emitting (started), it fails in a way another upstream
// cannot fix, or every upstream was tried. Down upstreams are tried only
// when none was healthy at the start. Finding an upstream is bounded by
// one deadline, the timeout option, over all attempts: each attempt gets a
// context cancelled at the deadline unless it called commit first (a
// generation commits with its first event), so a request fails within
// about the timeout however many upstreams are dead.
func (s *state) withUpstreams(ctx context.Context, try func(actx context.Context, commit func() bool, u *upstream) (started bool, err error)) error {
	deadline := time.Now().Add(s.opts.Timeout)
	downToo := s.pool.healthyCount() == 0
	tried := make([]bool, len(s.pool.ups))
	var errs []error
	for u := s.pool.pick(tried, downToo); u != nil; u = s.pool.pick(tried, downToo) {
		tried[u.idx] = true
		started, late, err := attempt(ctx, deadline, u, try)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case late:
			errs = append(errs, fmt.Errorf("upstream %s: no answer before the deadline", u.base))
			return &timedOut{d: s.opts.Timeout, errs: errs}
		case started || !errors.Is(err, errRetryable):
			return err
		}
		errs = append(errs, err)
		if !time.Now().Before(deadline) {
			return &timedOut{d: s.opts.Timeout, errs: errs}
		}
		if slices.Contains(tried, false) {
			s.log.Warn("upstream failed before the first token; trying the next", "upstream", u.base, "error", err)
		}
	}
	switch len(errs) {
	case 0:
		return fmt.Errorf("no upstream answers: %s", s.pool.downReasons())
	case 1:
		return errs[0]
	}
	return &allFailed{errs: errs}
}

// errDeadline is the cause of an attempt cancelled because the request's
// deadline for finding an upstream passed.
var errDeadline = errors.New("no upstream answered before the deadline")

// attempt runs try on u with a context cancelled (cause errDeadline) at
// deadline unless try commits first. late reports that the deadline
// cancelled it.
func attempt(ctx context.Context, deadline time.Time, u *upstream, try func(context.Context, func() bool, *upstream) (bool, error)) (started, late bool, err error) {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	const running, committed, expired = 0, 1, 2
	var state atomic.Int32
	t := time.AfterFunc(time.Until(deadline), func() {
		if state.CompareAndSwap(running, expired) {
			cancel(errDeadline)
		}
	})
	defer t.Stop()
	commit := func() bool {
		if state.CompareAndSwap(running, committed) {
			t.Stop()
		}
		return state.Load() == committed
	}
	started, err = try(actx, commit, u)
	return started, err != nil && state.Load() == expired, err
}

// timedOut: no upstream answered before the deadline. It matches whatever
// its errors match.
type timedOut struct {
	d    time.Duration
	errs []error
}

func (e *timedOut) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("no upstream answered within %v (option timeout): %s", e.d, strings.Join(msgs, "; "))
}

func (e *timedOut) Unwrap() []error { return e.errs }

// allFailed: every upstream failed. It matches whatever its errors match
// (ErrOverloaded when an upstream was overloaded).
type allFailed struct{ errs []error }

func (e *allFailed) Error() string {
	msgs := make([]string, len(e.errs))
	for i, err := range e.errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("all %d upstreams failed: %s", len(e.errs), strings.Join(msgs, "; "))
}

func (e *allFailed) Unwrap() []error { return e.errs }

// redact removes the API key from text an upstream sent back.
func (s *state) redact(b []byte) []byte { return s.pool.redact(b) }

func (s *state) redactString(t string) string { return string(s.pool.redact([]byte(t))) }

// post starts a POST of body to u's path with ctx. The caller closes the
// response body.
func (s *state) post(ctx context.Context, u *upstream, path string, body []byte, stream bool, requestID string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", u.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "ragway-vllm-proxy/"+version)
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	if s.pool.auth != "" {
		req.Header.Set("Authorization", s.pool.auth)
	}
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	return s.pool.client.Do(req)
}

// statusError reads the body of a non-200 answer into an error.
func (s *state) statusError(u *upstream, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return httpStatusError(u.base, resp.StatusCode, s.redact(b), s.keyHint)
}

// errIdle is the cause of a request cancelled by its watchdog.
var errIdle = errors.New("upstream idle")

// watchdog cancels a request when its response body has been silent for
// the timeout.
type watchdog struct {
	t *time.Timer
	d time.Duration
}

func newWatchdog(d time.Duration, cancel context.CancelCauseFunc) *watchdog {
	return &watchdog{t: time.AfterFunc(d, func() { cancel(errIdle) }), d: d}
}

func (w *watchdog) stop() { w.t.Stop() }

// restart starts the silence count afresh.
func (w *watchdog) restart() { w.t.Reset(w.d) }

// idleReader resets its watchdog whenever data arrives.
type idleReader struct {
	r io.Reader
	w *watchdog
}

func (r idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.w.restart()
	}
	return n, err
}

// stream runs one generation on u. started reports whether an event was
// emitted (then the generation cannot move to another upstream).
func (s *state) stream(ctx context.Context, u *upstream, path string, body []byte, req sdk.GenerateRequest, emit func(sdk.Event) error) (started bool, err error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u.inflight.Add(1)
	defer u.inflight.Add(-1)

	resp, err := s.post(rctx, u, path, body, true, req.RequestID)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		err = fmt.Errorf("upstream %s: %w", u.base, transportError(err))
		s.pool.markDown(u, err)
		return false, retryable{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, s.statusError(u, resp)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		if mt, _, _ := mime.ParseMediaType(ct); mt != "text/event-stream" {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			return false, retryable{fmt.Errorf("upstream %s answered a streaming request with Content-Type %q: %s",
				u.base, ct, parseErrorBody(s.redact(b)).text())}
		}
	}
	s.pool.markUp(u)

	wd := newWatchdog(s.opts.Timeout, cancel)
	defer wd.stop()
	sr := newSSEReader(idleReader{r: resp.Body, w: wd})
	// Only upstream silence counts: the watchdog is off while the caller
	// takes its time over an event.
	emitting := func(ev sdk.Event) error {
		wd.stop()
		defer wd.restart()
		return emit(ev)
	}
	tr := newTranslator(req)
	tr.redact = s.redactString
	fail := func(err error) (bool, error) {
		switch {
		case ctx.Err() != nil:
			return started, ctx.Err()
		case errors.Is(context.Cause(rctx), errIdle):
			err = fmt.Errorf("upstream %s: no data for %v (option timeout)", u.base, s.opts.Timeout)
		}
		if !started && !sdk.IsInvalidRequest(err) {
			err = retryable{err}
		}
		return started, err
	}
	done := false
	for !done {
		data, err := sr.next()
		switch {
		case errors.Is(err, io.EOF) && tr.finished():
			done = true // no [DONE], but the generation had finished
			continue
		case errors.Is(err, io.EOF):
			return fail(fmt.Errorf("upstream %s ended the stream before a finish_reason", u.base))
		case err != nil:
			return fail(fmt.Errorf("upstream %s: reading the stream: %w", u.base, transportError(err)))
		case string(bytes.TrimSpace(data)) == "[DONE]":
			done = true
			continue
		}
		ev, ok, err := tr.push(data)
		switch {
		case sdk.IsInvalidRequest(err):
			return fail(err)
		case err != nil:
			return fail(fmt.Errorf("upstream %s: %w", u.base, err))
		}
		if ok {
			started = true
			if err := emitting(ev); err != nil {
				return true, err
			}
		}
		if tr.done() {
			break // a stop sequence the upstream let through: end here
		}
	}
	started = true
	if err := emitting(tr.final()); err != nil {
		return true, err
	}
	if done {
		// Read the end of the body (the chunked terminator) so the
		// connection goes back to the pool, but not for long.
		wd.d = min(wd.d, 250*time.Millisecond)
		wd.restart()
		_, _ = io.Copy(io.Discard, io.LimitReader(sr.r, 64<<10))
	}
	return true, nil
}

// embed embeds input on the least loaded healthy upstream, moving to the
// next on failure. truncate is embeddingBody's.
func (s *state) embed(ctx context.Context, input []string, truncate int) (sdk.EmbedResponse, error) {
	body, err := embeddingBody(s.model, input, truncate)
	if err != nil {
		return sdk.EmbedResponse{}, sdk.InvalidRequestf("encode the upstream request: %v", err)
	}
	var out sdk.EmbedResponse
	err = s.withUpstreams(ctx, func(actx context.Context, commit func() bool, u *upstream) (bool, error) {
		r, err := s.embedOnce(actx, commit, u, body, len(input))
		out = r
		return false, err
	})
	return out, err
}

// embedOnce embeds on u; it commits (see withUpstreams) once u answers
// 200.
func (s *state) embedOnce(ctx context.Context, commit func() bool, u *upstream, body []byte, n int) (sdk.EmbedResponse, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u.inflight.Add(1)
	defer u.inflight.Add(-1)

	resp, err := s.post(rctx, u, pathEmbeddings, body, false, "")
	if err != nil {
		if ctx.Err() != nil {
			return sdk.EmbedResponse{}, ctx.Err()
		}
		err = fmt.Errorf("upstream %s: %w", u.base, transportError(err))
		s.pool.markDown(u, err)
		return sdk.EmbedResponse{}, retryable{err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return sdk.EmbedResponse{}, s.statusError(u, resp)
	}
	if !commit() {
		return sdk.EmbedResponse{}, errDeadline
	}
	s.pool.markUp(u)
	wd := newWatchdog(s.opts.Timeout, cancel)
	defer wd.stop()
	var er embeddingResponse
	if err := json.NewDecoder(idleReader{r: io.LimitReader(resp.Body, 1<<30), w: wd}).Decode(&er); err != nil {
		switch {
		case ctx.Err() != nil:
			return sdk.EmbedResponse{}, ctx.Err()
		case errors.Is(context.Cause(rctx), errIdle):
			err = fmt.Errorf("no data for %v (option timeout)", s.opts.Timeout)
		}
		return sdk.EmbedResponse{}, retryable{fmt.Errorf("upstream %s: reading the embeddings: %w", u.base, err)}
	}
	if len(er.Data) != n {
		return sdk.EmbedResponse{}, retryable{fmt.Errorf("upstream %s returned %d embeddings for %d inputs", u.base, len(er.Data), n)}
	}
	out := sdk.EmbedResponse{Embeddings: make([][]float32, n)}
	for _, d := range er.Data {
		if d.Index < 0 || d.Index >= n || out.Embeddings[d.Index] != nil || len(d.Embedding) == 0 {
			return sdk.EmbedResponse{}, retryable{fmt.Errorf("upstream %s returned embeddings with a bad or repeated index %d (or an empty vector)", u.base, d.Index)}
		}
		out.Embeddings[d.Index] = d.Embedding
	}
	if er.Usage != nil {
		out.PromptTokens = er.Usage.PromptTokens
	}
	return out, nil
}

// Rerank scores each document against the query with the upstream's POST
// /v1/rerank on the least loaded healthy upstream, moving to the next on
// failure as Embed does. The scores come back in the documents' order
// whatever order the upstream sorted them in. Truncate sends
// truncate_prompt_tokens as Embed does. An upstream without the endpoint
// makes it sdk.ErrUnsupported.
func (p *proxy) Rerank(ctx context.Context, req sdk.RerankRequest) (sdk.RerankResponse, error) {
	st, err := p.loaded()
	if err != nil {
		return sdk.RerankResponse{}, err
	}
	if !st.rerank {
		return sdk.RerankResponse{}, sdk.InvalidRequestf("model %q is not loaded to rerank: mark it rerank: true in the gateway config", st.name)
	}
	if len(req.Documents) == 0 {
		return sdk.RerankResponse{Scores: []float32{}}, nil
	}
	truncate := 0
	if req.Truncate {
		truncate = st.maxInput
		if truncate == 0 {
			truncate = -1 // vLLM: the model's max_model_len
		}
	}
	return st.rerankDocs(ctx, req.Query, req.Documents, truncate)
}

// rerankDocs reranks documents against query on the least loaded healthy
// upstream, moving to the next on failure. truncate is rerankBody's.
func (s *state) rerankDocs(ctx context.Context, query string, documents []string, truncate int) (sdk.RerankResponse, error) {
	body, err := rerankBody(s.model, query, documents, truncate)
	if err != nil {
		return sdk.RerankResponse{}, sdk.InvalidRequestf("encode the upstream request: %v", err)
	}
	limit := rerankAnswerLimit(documents)
	var out sdk.RerankResponse
	err = s.withUpstreams(ctx, func(actx context.Context, commit func() bool, u *upstream) (bool, error) {
		r, err := s.rerankOnce(actx, commit, u, body, len(documents), limit)
		out = r
		return false, err
	})
	return out, err
}

// rerankAnswerLimit bounds the size of a rerank answer: vLLM echoes every
// document back (JSON-escaped, at most 6 bytes for one byte of text), plus
// a little for each result and the envelope.
func rerankAnswerLimit(documents []string) int64 {
	n := int64(1 << 20)
	for _, d := range documents {
		n += 6*int64(len(d)) + 512
	}
	return n
}

// rerankOnce reranks on u; it commits (see withUpstreams) once u answers
// 200. An answer over limit bytes, one that is not JSON, or one whose
// results do not score every document exactly once is a (retryable)
// protocol error.
func (s *state) rerankOnce(ctx context.Context, commit func() bool, u *upstream, body []byte, n int, limit int64) (sdk.RerankResponse, error) {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u.inflight.Add(1)
	defer u.inflight.Add(-1)

	resp, err := s.post(rctx, u, pathRerank, body, false, "")
	if err != nil {
		if ctx.Err() != nil {
			return sdk.RerankResponse{}, ctx.Err()
		}
		err = fmt.Errorf("upstream %s: %w", u.base, transportError(err))
		s.pool.markDown(u, err)
		return sdk.RerankResponse{}, retryable{err}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		// Another upstream of the pool may have it (one misconfigured, or still
		// starting): unsupported only when none has.
		return sdk.RerankResponse{}, retryable{fmt.Errorf("%w: upstream %s has no POST %s (HTTP %d: %s); vLLM serves it for score (cross-encoder) models",
			sdk.ErrUnsupported, u.base, pathRerank, resp.StatusCode, parseErrorBody(s.redact(b)).text())}
	default:
		return sdk.RerankResponse{}, s.statusError(u, resp)
	}
	if !commit() {
		return sdk.RerankResponse{}, errDeadline
	}
	s.pool.markUp(u)
	wd := newWatchdog(s.opts.Timeout, cancel)
	defer wd.stop()
	b, err := io.ReadAll(idleReader{r: io.LimitReader(resp.Body, limit+1), w: wd})
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return sdk.RerankResponse{}, ctx.Err()
		case errors.Is(context.Cause(rctx), errIdle):
			err = fmt.Errorf("no data for %v (option timeout)", s.opts.Timeout)
		}
		return sdk.RerankResponse{}, retryable{fmt.Errorf("upstream %s: reading the rerank answer: %w", u.base, transportError(err))}
	}
	if int64(len(b)) > limit {
		return sdk.RerankResponse{}, retryable{fmt.Errorf("upstream %s: the rerank answer is over %d bytes for %d documents", u.base, limit, n)}
	}
	var rr rerankResponse
	if err := json.Unmarshal(b, &rr); err != nil {
		return sdk.RerankResponse{}, retryable{fmt.Errorf("upstream %s: reading the rerank answer: %w", u.base, err)}
	}
	scores, err := rr.scores(n)
	if err != nil {
		return sdk.RerankResponse{}, retryable{fmt.Errorf("upstream %s returned a bad rerank answer: %w", u.base, err)}
	}
	return sdk.RerankResponse{Scores: scores, PromptTokens: rr.promptTokens()}, nil
}
