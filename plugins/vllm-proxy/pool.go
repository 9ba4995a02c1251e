package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// slotsPerUpstream is the nominal number of sequences one healthy upstream
// is counted for in Health.Slots: vLLM's default max_num_seqs (256). The
// real limit is the upstream's; vLLM queues beyond it and reports the queue
// as num_requests_waiting.
const slotsPerUpstream = 256

// upstream is one OpenAI-compatible server and what the plugin knows of
// it.
type upstream struct {
	idx  int
	base string
	// inflight counts this plugin's requests being served by it now.
	inflight atomic.Int64

	mu      sync.Mutex
	healthy bool
	reason  string // why it is down
	// healthPath is /health, or /v1/models for servers without /health.
	healthPath string
	// metrics: noMetrics once /metrics answered 404 or had no known gauge.
	noMetrics bool
	hasLoad   bool // running/waiting are from a scrape
	running   int
	waiting   int
	// inflightAtScrape is inflight when the last scrape answered: requests
	// the plugin started or finished since then adjust the scraped load.
	inflightAtScrape int64
}

// load estimates the upstream's running and waiting requests: the last
// scrape of its metrics corrected by what this plugin started or finished
// since, or this plugin's own in-flight requests when it has no metrics
// (or is down).
func (u *upstream) load() (running, waiting int) {
	in := u.inflight.Load()
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.hasLoad || !u.healthy {
		return int(in), 0
	}
	return max(0, u.running+int(in-u.inflightAtScrape)), u.waiting
}

func (u *upstream) isHealthy() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.healthy
}

// pool is the set of upstreams with their health and load.
type pool struct {
	ups    []*upstream
	client *http.Client
	auth   string // "Bearer <key>" or ""
	key    []byte // the key, to redact from what upstreams send back
	// probeTimeout bounds one health probe or metrics scrape.
	probeTimeout time.Duration
	log          *slog.Logger
	rr           atomic.Uint64 // rotates the order ties are broken in
}

func newPool(bases []string, client *http.Client, key string, probeTimeout time.Duration, log *slog.Logger) *pool {
	p := &pool{client: client, probeTimeout: probeTimeout, log: log}
	if key != "" {
		p.auth = "Bearer " + key
		p.key = []byte(key)
	}
	for i, b := range bases {
		p.ups = append(p.ups, &upstream{idx: i, base: b, healthPath: pathHealth, reason: "not probed yet"})
	}
	return p
}

// pick returns the upstream a request should try next: among those not
// tried yet, the least loaded (running + waiting); ties go round-robin.
// Only healthy upstreams are candidates unless downToo (the caller found
// none healthy), when a healthy one still goes before a down one. It
// returns nil when no candidate is left.
func (p *pool) pick(tried []bool, downToo bool) *upstream {
	n := len(p.ups)
	start := int(p.rr.Add(1) % uint64(n))
	var best *upstream
	bestHealthy, bestLoad := false, 0
	for i := range n {
		u := p.ups[(start+i)%n]
		if tried[u.idx] {
			continue
		}
		h := u.isHealthy()
		if !h && !downToo {
			continue
		}
		r, w := u.load()
		l := r + w
		if best == nil || (h && !bestHealthy) || (h == bestHealthy && l < bestLoad) {
			best, bestHealthy, bestLoad = u, h, l
		}
	}
	return best
}

// setHealth records the outcome of a probe or a request, logging changes.
func (p *pool) setHealth(u *upstream, healthy bool, reason string) {
	u.mu.Lock()
	was := u.healthy
	old := u.reason
	u.healthy, u.reason = healthy, reason
	if !healthy {
		u.hasLoad = false
	}
	u.mu.Unlock()
	switch {
	case healthy && !was:
		p.log.Info("upstream is healthy", "upstream", u.base)
	case !healthy && (was || old != reason):
		p.log.Warn("upstream is down", "upstream", u.base, "reason", reason)
	}
}

// markDown takes u out of rotation after a failed request; the probe loop
// brings it back.
func (p *pool) markDown(u *upstream, err error) { p.setHealth(u, false, err.Error()) }

// markUp puts u back after a request it answered.
func (p *pool) markUp(u *upstream) {
	if !u.isHealthy() {
		p.setHealth(u, true, "")
	}
}

// healthyCount is the number of healthy upstreams.
func (p *pool) healthyCount() int {
	n := 0
	for _, u := range p.ups {
		if u.isHealthy() {
			n++
		}
	}
	return n
}

// downReasons describes the unhealthy upstreams.
func (p *pool) downReasons() string {
	var parts []string
	for _, u := range p.ups {
		u.mu.Lock()
		if !u.healthy {
			parts = append(parts, fmt.Sprintf("%s: %s", u.base, u.reason))
		}
		u.mu.Unlock()
	}
	return strings.Join(parts, "; ")
}

// run probes every upstream every interval until ctx ends, each upstream
// on its own so that one that hangs delays no other.
func (p *pool) run(ctx context.Context, interval time.Duration) {
	for _, u := range p.ups {
		go p.watch(ctx, u, interval)
	}
}

func (p *pool) watch(ctx context.Context, u *upstream, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.probe(ctx, u)
		}
	}
}

// probeAll probes every upstream at once and returns when all are done.
func (p *pool) probeAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, u := range p.ups {
		wg.Go(func() { p.probe(ctx, u) })
	}
	wg.Wait()
}

// probe checks u's health and, when healthy, scrapes its load.
func (p *pool) probe(ctx context.Context, u *upstream) {
	err := p.checkHealth(ctx, u)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		p.setHealth(u, false, err.Error())
		return
	}
	p.setHealth(u, true, "")
	p.scrape(ctx, u)
}

// get does a GET of base+path bounded by the probe timeout and returns the
// status and up to limit bytes of the body.
func (p *pool) get(ctx context.Context, u *upstream, path string, limit int64) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, p.probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if p.auth != "" {
		req.Header.Set("Authorization", p.auth)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, transportError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return resp.StatusCode, nil, transportError(err)
	}
	// Drain a little more so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
	return resp.StatusCode, p.redact(body), nil
}

// redact replaces the API key in b (text an upstream sent back, which
// might quote the request's headers).
func (p *pool) redact(b []byte) []byte {
	if len(p.key) == 0 || !bytes.Contains(b, p.key) {
		return b
	}
	return bytes.ReplaceAll(b, p.key, []byte("[redacted]"))
}

// checkHealth asks u's /health: 200 is healthy, anything else (vLLM
// answers 503 when its engine is dead) or no answer is not. A server
// without /health (404, 405) is probed through /v1/models instead.
func (p *pool) checkHealth(ctx context.Context, u *upstream) error {
	u.mu.Lock()
	path := u.healthPath
	u.mu.Unlock()
	status, body, err := p.get(ctx, u, path, 64<<10)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if path == pathHealth && (status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		u.mu.Lock()
		u.healthPath = pathModels
		u.mu.Unlock()
		return p.checkHealth(ctx, u)
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", path, status, parseErrorBody(body).text())
	}
	return nil
}

// scrape reads u's load from its Prometheus /metrics, when it has them.
func (p *pool) scrape(ctx context.Context, u *upstream) {
	u.mu.Lock()
	skip := u.noMetrics
	u.mu.Unlock()
	if skip {
		return
	}
	status, body, err := p.get(ctx, u, pathMetrics, 8<<20)
	if err != nil || status != http.StatusOK {
		u.mu.Lock()
		u.hasLoad = false
		u.noMetrics = status == http.StatusNotFound
		u.mu.Unlock()
		return
	}
	in := u.inflight.Load()
	l, ok := parseLoadMetrics(strings.NewReader(string(body)))
	u.mu.Lock()
	defer u.mu.Unlock()
	if !ok {
		u.hasLoad, u.noMetrics = false, true
		p.log.Debug("upstream /metrics has no known load gauges; using the plugin's own in-flight count", "upstream", u.base)
		return
	}
	u.hasLoad, u.running, u.waiting, u.inflightAtScrape = true, l.running, l.waiting, in
}

// loadGauges are the Prometheus gauges of running and waiting requests of
// the servers the plugin knows: vLLM, llama.cpp's llama-server (with
// --metrics) and SGLang.
var loadGauges = map[string]struct{ waiting bool }{
	"vllm:num_requests_running":    {false},
	"vllm:num_requests_waiting":    {true},
	"llamacpp:requests_processing": {false},
	"llamacpp:requests_deferred":   {true},
	"sglang:num_running_reqs":      {false},
	"sglang:num_queue_reqs":        {true},
}

type scrapedLoad struct{ running, waiting int }

// parseLoadMetrics sums the known load gauges over their label sets (one
// per engine with data parallelism) in Prometheus text exposition format.
// ok is false when none is present.
func parseLoadMetrics(r io.Reader) (l scrapedLoad, ok bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var running, waiting float64
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := splitMetricName(line)
		g, known := loadGauges[name]
		if !known {
			continue
		}
		if strings.HasPrefix(rest, "{") {
			end := labelsEnd(rest)
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil || v != v || v < 0 || v > 1e9 {
			continue
		}
		ok = true
		if g.waiting {
			waiting += v
		} else {
			running += v
		}
	}
	return scrapedLoad{running: int(running + 0.5), waiting: int(waiting + 0.5)}, ok
}

// splitMetricName splits a sample line into its metric name and the rest
// (labels and value).
func splitMetricName(line string) (name, rest string) {
	i := strings.IndexAny(line, "{ \t")
	if i < 0 {
		return line, ""
	}
	return line[:i], line[i:]
}

// labelsEnd returns the index of the '}' closing the label set that s
// starts with, honouring quoted values with escapes; -1 if there is none.
func labelsEnd(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '}':
			return i
		}
	}
	return -1
}

// models fetches u's /v1/models. ok is false when the upstream has no
// usable model list (which is not an error: not every server lists).
func (p *pool) models(ctx context.Context, u *upstream) (ml modelList, status int, body []byte, err error) {
	status, body, err = p.get(ctx, u, pathModels, 8<<20)
	if err != nil || status != http.StatusOK {
		return modelList{}, status, body, err
	}
	if err := json.Unmarshal(body, &ml); err != nil {
		return modelList{}, status, body, fmt.Errorf("GET %s: %w", pathModels, err)
	}
	return ml, status, body, nil
}

// transportError makes an http.Client error readable: its *url.Error
// wrapper repeats the method and URL, which callers say themselves.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}
