package main

// Gateways sharing one database: how soon a document ingested through one is found
// through the others (the change feed), and what shared rate limits and quotas add to
// a request before it reaches a model.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/store"
)

const (
	clusterDocs          = 200 // documents ingested through gateway A
	clusterChunksPerDoc  = 25  // sections each: about 50 chunks of rag.chunk_tokens 64
	clusterWordsPerChunk = 48
)

// runCluster runs the measurements of gateways sharing a database.
func runCluster(binDir string, streams, words int, dur time.Duration) error {
	if err := clusterPropagation(binDir); err != nil {
		return err
	}
	if err := clusterRelay(binDir, streams, words, dur); err != nil {
		return err
	}
	if err := limitsCost(); err != nil {
		return err
	}
	return limitsTTFT(binDir)
}

// limitsTTFT measures time to first token through one gateway, one request at a time,
// for keys without limits (what this gateway's own buckets cost is below a
// microsecond: limitsCost) and with limits and a quota shared through Postgres, the
// arms taking turns.
func limitsTTFT(binDir string) error {
	g, err := startGateway(binDir, 4, "")
	if err != nil {
		return err
	}
	defer g.stop()
	ctx := context.Background()
	type arm struct {
		name string
		key  string
		ds   []time.Duration
	}
	arms := []*arm{{name: "no limits", key: g.key}}
	for _, a := range []struct {
		name, user string
		flags      []string
	}{
		{"shared: 6000 rpm (leases of 150), 1M tpm", "limited", []string{"--rpm", "6000", "--tpm", "1000000"}},
		{"shared: 60000 rpm, 10M tpm, a daily quota", "quoted", []string{"--rpm", "60000", "--tpm", "10000000"}},
	} {
		key, err := dbs.createKey(ctx, g.dbURL, a.user, "chat", a.flags...)
		if err != nil {
			return err
		}
		arms = append(arms, &arm{name: a.name, key: key})
	}
	quota := exec.Command(filepath.Join(binDir, "ragway"), "users", "quota", "--user", "quoted", "--daily", "1000000000000")
	quota.Env = append(os.Environ(), "RAGWAY_DATABASE_URL="+g.dbURL)
	if out, err := quota.CombinedOutput(); err != nil {
		return fmt.Errorf("users quota: %w\n%s", err, out)
	}
	const rounds, each = 3, 100 // 300 requests per arm, within the burst of 6000 rpm (600)
	for range rounds {
		for _, a := range arms {
			g.key = a.key
			for range each {
				c, cancel := context.WithTimeout(ctx, 10*time.Second)
				d, err := g.firstToken(c, "hello there")
				cancel()
				if err != nil {
					return fmt.Errorf("%s: %w", a.name, err)
				}
				a.ds = append(a.ds, d)
			}
		}
	}
	fmt.Printf("\nshared limits on TTFT through the gateway (echo, 1 request at a time, %d per arm, arms taking turns)\n", rounds*each)
	fmt.Printf("%-44s %10s %10s\n", "", "p50", "p99")
	base := arms[0].ds
	slices.Sort(base)
	for _, a := range arms {
		slices.Sort(a.ds)
		p50, p99 := a.ds[len(a.ds)/2], a.ds[len(a.ds)*99/100]
		extra := ""
		if a != arms[0] {
			extra = fmt.Sprintf("  (%+.3fms, %+.3fms)", float64((p50-base[len(base)/2]).Microseconds())/1000, float64((p99-base[len(base)*99/100]).Microseconds())/1000)
		}
		fmt.Printf("%-44s %10s %10s%s\n", a.name, ms(p50), ms(p99), extra)
	}
	return nil
}

// clusterRelay compares the relay bench through one gateway with the same load through
// deploy/cluster.sh: three gateways on one database behind HAProxy (on this machine's
// cores: what it shows is the balancer's cost, not a scale-out).
func clusterRelay(binDir string, streams, words int, dur time.Duration) error {
	prompt := strings.TrimSpace(strings.Repeat("tok ", words))
	single, err := startGateway(binDir, streams, "")
	if err != nil {
		return err
	}
	oneRate, err := throughput(streams, dur, func(ctx context.Context) (int, error) { return single.stream(ctx, prompt) })
	single.stop()
	if err != nil {
		return fmt.Errorf("relay through one gateway: %w", err)
	}

	ctx := context.Background()
	name, dbURL, err := dbs.create(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = dbs.drop(name) }()
	key, err := dbs.createKey(ctx, dbURL, "relay", "chat")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ragway-bench-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	port := 20000 + ln.Addr().(*net.TCPAddr).Port%10000 // below the ephemeral range, like the tests
	ln.Close()
	cmd := exec.Command("sh", "deploy/cluster.sh", "3")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "RAGWAY_BIN="+filepath.Join(binDir, "ragway"), fmt.Sprint("CLUSTER_PORT=", port),
		"CLUSTER_DIR="+dir, "TMPDIR="+dir, "RAGWAY_PLUGINS_DIR="+binDir,
		fmt.Sprintf("RAGWAY_MODELS=[{name: echo, backend: echo, max_concurrency: %d, max_queue: 1024, options: {parallel: %d}}]", streams, streams))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	lb := &gatewayClient{url: fmt.Sprintf("http://127.0.0.1:%d", port), model: "echo", key: key,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: streams * 2}}}
	if err := lb.waitServing(60 * time.Second); err != nil {
		return fmt.Errorf("the cluster: %w\n%s", err, out.String())
	}
	// Every gateway serving: the balancer checks each before it sends it requests.
	time.Sleep(2 * time.Second)
	threeRate, err := throughput(streams, dur, func(ctx context.Context) (int, error) { return lb.stream(ctx, prompt) })
	if err != nil {
		return fmt.Errorf("relay through the cluster: %w\n%s", err, out.String())
	}
	fmt.Printf("\nrelay through HAProxy and 3 gateways on one database vs 1 gateway, %d streams × %d tokens (one machine of %d cores)\n", streams, words, runtime.NumCPU())
	fmt.Printf("%-40s %12s %12s %8s\n", "", "1 gateway", "3 + HAProxy", "ratio")
	fmt.Printf("%-40s %12.0f %12.0f %8.2f\n", "content chunks/s", oneRate, threeRate, threeRate/oneRate)
	return nil
}

// clusterPropagation ingests clusterDocs documents (of clusterChunksPerDoc sections,
// about 10k chunks in all) one after another through gateway A, and after each one's answer (its
// chunks are committed) searches gateways B and C for it until they find it.
func clusterPropagation(binDir string) error {
	models := "  - {name: echo, backend: echo, max_concurrency: 4, options: {parallel: 4}}\n"
	env := []string{"RAGWAY_RAG_CHUNK_TOKENS=64", "RAGWAY_RAG_CHUNK_OVERLAP=0"}
	a, tail, err := spawnGateway(binDir, models, 8, env)
	if err != nil {
		return err
	}
	defer a.stop()
	others := make([]*gatewayClient, 2)
	for i := range others {
		g, t, err := spawnGatewayOn(binDir, models, 8, a.dbURL, a.key, env)
		if err != nil {
			return err
		}
		defer g.stop()
		if err := g.waitServing(30 * time.Second); err != nil {
			return fmt.Errorf("%w\n%s", err, t.String())
		}
		others[i] = g
	}
	if err := a.waitServing(30 * time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, tail.String())
	}
	key, err := dbs.createKey(context.Background(), a.dbURL, "cluster", "chat,ingest")
	if err != nil {
		return err
	}
	call := func(g *gatewayClient, path, body string) ([]byte, int, error) {
		req, err := http.NewRequest("POST", g.url+path, strings.NewReader(body))
		if err != nil {
			return nil, 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := g.client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return b, resp.StatusCode, err
	}
	if b, code, err := call(a, "/v1/knowledge-bases", `{"name":"cluster"}`); err != nil || code != 201 {
		return fmt.Errorf("create the knowledge base: %d %s %v", code, b, err)
	}
	fmt.Printf("\ncluster: 3 gateways on one database (embedded index each); %d documents of %d sections ingested through A one after another, each searched for through B and C from A's answer until found\n",
		clusterDocs, clusterChunksPerDoc)
	var (
		mu     sync.Mutex
		delays []time.Duration
	)
	start := time.Now()
	chunks := 0
	for i := range clusterDocs {
		tag := fmt.Sprintf("zq%dx", i)
		var text strings.Builder
		for c := range clusterChunksPerDoc {
			fmt.Fprintf(&text, "Section %d of %s.", c, tag)
			for w := range clusterWordsPerChunk {
				fmt.Fprintf(&text, " w%d", (i*7+c*13+w)%997)
			}
			text.WriteString("\n\n")
		}
		body := fmt.Sprintf(`{"title":%q,"format":"text","text":%q}`, tag, text.String())
		b, code, err := call(a, "/v1/knowledge-bases/cluster/documents?wait=true", body)
		if err != nil || code != 201 {
			return fmt.Errorf("ingest document %d: %d %s %v", i, code, b, err)
		}
		answered := time.Now()
		var n int
		if j := bytes.Index(b, []byte(`"chunk_count":`)); j >= 0 {
			fmt.Sscan(string(b[j+len(`"chunk_count":`):]), &n)
		}
		chunks += n
		var wg sync.WaitGroup
		var firstErr error
		for _, g := range others {
			wg.Add(1)
			go func() {
				defer wg.Done()
				q := fmt.Sprintf(`{"query":%q,"top_k":1}`, tag)
				for time.Since(answered) < 10*time.Second {
					b, code, err := call(g, "/v1/knowledge-bases/cluster/search", q)
					if err == nil && code == 200 && bytes.Contains(b, []byte(`"title":"`+tag+`"`)) {
						mu.Lock()
						delays = append(delays, time.Since(answered))
						mu.Unlock()
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
				mu.Lock()
				firstErr = fmt.Errorf("document %s not found through %s within 10 s", tag, g.url)
				mu.Unlock()
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
	}
	took := time.Since(start)
	slices.Sort(delays)
	p := func(q float64) time.Duration { return delays[min(int(q*float64(len(delays))), len(delays)-1)] }
	fmt.Printf("%-40s %12d\n", "chunks ingested through A", chunks)
	fmt.Printf("%-40s %12.0f\n", "chunks/s (ingest and propagation)", float64(chunks)/took.Seconds())
	fmt.Printf("%-40s %12s\n", "found through B and C after, p50", ms(p(0.50)))
	fmt.Printf("%-40s %12s\n", "found through B and C after, p99", ms(p(0.99)))
	fmt.Printf("%-40s %12s\n", "found through B and C after, max", ms(delays[len(delays)-1]))
	fmt.Printf("(%d observations; searches poll every 2 ms, which bounds the resolution)\ntarget: p99 ≤ 1s\n", len(delays))
	return nil
}

// limitsCost measures what admitting a request costs, on a key with limits and a user
// with a quota: this gateway's own buckets (auth.Limiter) against the buckets shared
// through Postgres (auth.SharedLimiter), one request at a time.
func limitsCost() error {
	ctx := context.Background()
	name, dbURL, err := dbs.create(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = dbs.drop(name) }()
	st, err := store.Open(dbURL, store.Options{Origin: "bench"})
	if err != nil {
		return err
	}
	defer st.Close()
	u, err := st.EnsureUser(ctx, "limits")
	if err != nil {
		return err
	}
	if err := st.SetUserQuotas(ctx, "limits", store.QuotaChange{Daily: new(int64(1 << 40))}); err != nil {
		return err
	}
	fmt.Printf("\nshared limits: the cost of admitting one request (auth.Limiter vs auth.SharedLimiter over this Postgres), %s\n", "1000 requests one after another per row")
	fmt.Printf("%-44s %10s %10s %10s\n", "", "p50", "p99", "mean")
	us := func(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d.Nanoseconds())/1000) }
	quiet := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		name     string
		rpm, tpm int
		quota    bool
		shared   bool
	}{
		{"local buckets, 60000 rpm, 1M tpm", 60000, 1_000_000, false, false},
		{"shared, 60000 rpm (leases of 1500), 1M tpm", 60000, 1_000_000, false, true},
		{"shared, 6000 rpm (leases of 150), 1M tpm", 6000, 1_000_000, false, true},
		{"shared, 60000 rpm, 1M tpm, a daily quota", 60000, 1_000_000, true, true},
	} {
		hash := sha256.Sum256([]byte(c.name))
		k, err := st.CreateAPIKey(ctx, store.NewAPIKey{UserID: u.ID, Prefix: fmt.Sprintf("rgw_b%07d", time.Now().UnixNano()%10_000_000),
			Hash: hash[:], Name: c.name, Scopes: []string{store.ScopeChat}, RPMLimit: c.rpm, TPMLimit: c.tpm})
		if err != nil {
			return err
		}
		p := auth.Principal{KeyID: k.ID, UserID: u.ID, RPMLimit: c.rpm, TPMLimit: c.tpm}
		if c.quota {
			p.DailyTokenQuota = 1 << 40
		}
		var l auth.RateLimiter = auth.NewLimiter(nil)
		rctx, cancel := context.WithCancel(ctx)
		if c.shared {
			sl := &auth.SharedLimiter{Store: st, Logger: quiet}
			go sl.Run(rctx)
			l = sl
		}
		n := min(1000, auth.Burst(c.rpm)*8/10) // within the burst
		ds := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			if _, err := l.Admit(ctx, p); err != nil {
				cancel()
				return fmt.Errorf("%s: %w", c.name, err)
			}
			ds = append(ds, time.Since(t0))
			l.Spend(p, 20)
		}
		cancel()
		slices.Sort(ds)
		var sum time.Duration
		for _, d := range ds {
			sum += d
		}
		fmt.Printf("%-44s %10s %10s %10s\n", c.name, us(ds[len(ds)/2]), us(ds[len(ds)*99/100]), us(sum/time.Duration(len(ds))))
	}
	fmt.Println("(a request also costs the key's lookup in Postgres, as before; the shared rows add a round trip only when a lease runs out, a level is stale, or a quota is near)")
	return nil
}
