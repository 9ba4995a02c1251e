// Command bench measures ragway side by side against the same backend
// driven directly, in one run, and prints ratios (run it with `task bench`).
//
// Relay: ragway-echo at delay_ms 0; N concurrent streams; content chunks
// per second through the gateway (SSE) vs the plugin driven directly
// through the SDK host client. TTFT: one stream at a time, gateway vs
// direct, p50/p99 and the difference. Crash: kill -9 of the plugin to the
// next successful request through the gateway. Persistence (bench/persist.go):
// WebSocket chats with and without conversation storage on one gateway. RAG
// (bench/rag.go): ingest throughput. Search (bench/search.go): exact and approximate
// dense search, hybrid and sparse, at 100,000 and 1,000,000 chunks.
//
// Every gateway it spawns gets a scratch database and an API key (bench/db.go);
// -only runs some of the benches (e.g. -only persist).
//
// It is not a test: it prints figures and exits 0 unless something breaks.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// benchNames are the benches in the order they run (-only selects among them).
var benchNames = []string{"relay", "crash", "proxy", "llama", "grammar", "persist", "sockets", "affinity", "rag", "search", "cluster", "models"}

var only = flag.String("only", "", "run only these benches, comma-separated: "+strings.Join(benchNames, ", ")+" (default: all; -proxy=false and -llama=false still skip theirs)")

// selected reports whether bench name runs.
func selected(name string) bool {
	switch {
	case name == "proxy" && !*proxyBench, name == "llama" && !*llamaRun:
		return false
	case *only == "":
		return true
	}
	for _, n := range strings.Split(*only, ",") {
		if strings.TrimSpace(n) == name {
			return true
		}
	}
	return false
}

func main() {
	defBin := "bin"
	if d := os.Getenv("RAGWAY_BIN_DIR"); d != "" {
		defBin = d
	}
	binDir := flag.String("bin", defBin, "directory with ragway and the plugins (default $RAGWAY_BIN_DIR, else bin)")
	streams := flag.Int("streams", 64, "concurrent streams for the relay measurement")
	words := flag.Int("words", 200, "tokens per streamed answer")
	dur := flag.Duration("duration", 5*time.Second, "length of each throughput measurement")
	ttftN := flag.Int("ttft-requests", 300, "sequential requests for the TTFT measurement")
	crashes := flag.Int("crashes", 5, "kill -9 repetitions for crash-to-serving")
	profile := flag.String("cpuprofile", "", "write the gateway's CPU profile of the relay run here and print its top")
	flag.Parse()
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" && !slices.Contains(benchNames, n) {
			fmt.Fprintf(os.Stderr, "bench: -only: unknown bench %q (known: %s)\n", n, strings.Join(benchNames, ", "))
			os.Exit(2)
		}
	}
	abs, _ := filepath.Abs(*binDir)
	var err error
	if dbs, err = openScratchDBs(context.Background(), abs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	// An interrupt stops the gateways (they share the terminal's process group) and
	// the bench: drop the scratch databases on the way out.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		stopAllGateways()
		_ = dbs.close()
		os.Exit(130)
	}()
	err = run(abs, *streams, *words, *dur, *ttftN, *crashes, *profile)
	stopAllGateways()
	if cerr := dbs.close(); cerr != nil {
		fmt.Fprintln(os.Stderr, "bench: drop the scratch databases:", cerr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(binDir string, streams, words int, dur time.Duration, ttftN, crashes int, profile string) error {
	fmt.Printf("ragway bench: %s; GOMAXPROCS=%d; every gateway has its own scratch database and an API key\n\n", selection(), runtime.GOMAXPROCS(0))
	if selected("relay") {
		if err := runRelay(binDir, streams, words, dur, ttftN, profile); err != nil {
			return err
		}
	}
	if selected("crash") {
		if err := runCrash(binDir, crashes); err != nil {
			return err
		}
	}
	if selected("proxy") {
		if err := runProxy(binDir, streams, 100, dur, ttftN); err != nil {
			return fmt.Errorf("vllm-proxy: %w", err)
		}
	}
	// llama.cpp: the llamacpp plugin through the gateway vs node-llama-cpp (bench/llama.go).
	if selected("llama") {
		if err := runLlama(binDir); err != nil {
			return fmt.Errorf("llama.cpp: %w", err)
		}
	}
	// end llama.cpp
	// Structured output's cost on decoding (bench/grammar.go).
	if selected("grammar") {
		if err := runGrammar(binDir); err != nil {
			return fmt.Errorf("grammar: %w", err)
		}
	}
	if selected("persist") {
		if err := runPersist(binDir); err != nil {
			return fmt.Errorf("persistence cost: %w", err)
		}
	}
	// Memory per idle WebSocket (bench/sockets.go).
	if selected("sockets") {
		if err := runSockets(binDir); err != nil {
			return fmt.Errorf("sockets: %w", err)
		}
	}
	// Prefix-affinity dispatch vs least-loaded (bench/affinity.go).
	if selected("affinity") {
		if err := runAffinity(binDir); err != nil {
			return fmt.Errorf("affinity: %w", err)
		}
	}
	// RAG ingest throughput (bench/rag.go).
	if selected("rag") {
		if err := runRAG(binDir); err != nil {
			return fmt.Errorf("rag: %w", err)
		}
	}
	// Search latency, exact vs approximate (bench/search.go).
	if selected("search") {
		if err := runSearch(); err != nil {
			return fmt.Errorf("search: %w", err)
		}
	}
	// Gateways sharing one database (bench/cluster.go).
	if selected("cluster") {
		if err := runCluster(binDir, streams, words, dur); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	// Models managed while the gateway runs (bench/models.go).
	if selected("models") {
		if err := runModels(binDir); err != nil {
			return fmt.Errorf("models: %w", err)
		}
	}
	if profile != "" && selected("relay") {
		out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=25", filepath.Join(binDir, "ragway"), profile).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pprof: %w\n%s", err, out)
		}
		fmt.Printf("\ngateway CPU profile (relay run):\n%s", out)
	}
	return nil
}

// selection names the benches that run.
func selection() string {
	var names []string
	for _, n := range benchNames {
		if selected(n) {
			names = append(names, n)
		}
	}
	return "benches " + strings.Join(names, ", ")
}

// runRelay: the echo plugin driven directly vs through the gateway.
func runRelay(binDir string, streams, words int, dur time.Duration, ttftN int, profile string) error {
	prompt := strings.TrimSpace(strings.Repeat("tok ", words))
	fmt.Printf("relay: %d streams × %d-token answers, %v per throughput run\n", streams, words, dur)

	// Direct: the plugin through the SDK host client.
	direct, err := launchDirect(binDir, streams)
	if err != nil {
		return err
	}
	dRate, err := throughput(streams, dur, func(ctx context.Context) (int, error) { return direct.stream(ctx, prompt) })
	if err != nil {
		return fmt.Errorf("direct relay: %w", err)
	}
	dTTFT, err := ttft(ttftN, func(ctx context.Context) (time.Duration, error) { return direct.firstToken(ctx, "hello world") })
	direct.p.Close(context.Background())
	if err != nil {
		return fmt.Errorf("direct ttft: %w", err)
	}

	// Through the gateway.
	gw, err := startGateway(binDir, streams, profile)
	if err != nil {
		return err
	}
	defer gw.stop()
	gRate, err := throughput(streams, dur, func(ctx context.Context) (int, error) { return gw.stream(ctx, prompt) })
	if err != nil {
		return fmt.Errorf("gateway relay: %w", err)
	}
	gTTFT, err := ttft(ttftN, func(ctx context.Context) (time.Duration, error) { return gw.firstToken(ctx, "hello world") })
	if err != nil {
		return fmt.Errorf("gateway ttft: %w", err)
	}

	fmt.Printf("%-34s %14s %14s %8s\n", "relay (echo, delay_ms 0)", "direct (SDK)", "gateway (SSE)", "ratio")
	fmt.Printf("%-34s %14.0f %14.0f %8.2f\n", fmt.Sprintf("content chunks/s, %d streams", streams), dRate, gRate, gRate/dRate)
	fmt.Printf("%-34s %14s %14s %8s\n", "TTFT p50, 1 stream", ms(dTTFT.p50), ms(gTTFT.p50), signedMs(gTTFT.p50-dTTFT.p50))
	fmt.Printf("%-34s %14s %14s %8s\n", "TTFT p99, 1 stream", ms(dTTFT.p99), ms(gTTFT.p99), signedMs(gTTFT.p99-dTTFT.p99))
	fmt.Printf("(the gateway checks each request's API key against Postgres and queues a usage row; the direct side has neither)\n")
	fmt.Printf("targets: gateway ≥ 20000 chunks/s; added TTFT p50 ≤ 1ms, p99 ≤ 5ms\n\n")
	return nil
}

// runCrash: kill -9 of the plugin to the next 200 through the gateway. Each crash
// on a fresh gateway: consecutive crashes of one replica back off exponentially by
// design (100ms, 200ms, 400ms ...), so only the first crash after a healthy period
// measures the restart path itself.
func runCrash(binDir string, crashes int) error {
	var times []time.Duration
	for range max(crashes, 1) {
		g, err := startGateway(binDir, 1, "")
		if err != nil {
			return err
		}
		d, err := g.crashToServing()
		g.stop()
		if err != nil {
			return fmt.Errorf("crash-to-serving: %w", err)
		}
		times = append(times, d)
	}
	slices.Sort(times)
	fmt.Printf("crash-to-serving (kill -9 of a healthy replica → next 200 through the gateway), %d runs: median %s, max %s (target ≤ 500ms)\n\n",
		len(times), ms(times[len(times)/2]), ms(times[len(times)-1]))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3fms", float64(d.Microseconds())/1000) }

// throughput runs n workers calling one for dur and returns chunks/s.
func throughput(n int, dur time.Duration, one func(context.Context) (int, error)) (float64, error) {
	// Cancel rather than a deadline: a deadline travels to the plugin, which
	// may end the call a moment before ctx reports it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(dur, cancel)
	var total atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c, err := one(ctx)
				total.Add(int64(c))
				if err != nil && ctx.Err() == nil {
					once.Do(func() { firstErr = err })
					cancel()
				}
			}
		}()
	}
	wg.Wait()
	return float64(total.Load()) / time.Since(start).Seconds(), firstErr
}

type percentiles struct{ p50, p99 time.Duration }

func ttft(n int, one func(context.Context) (time.Duration, error)) (percentiles, error) {
	var ds []time.Duration
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		d, err := one(ctx)
		cancel()
		if err != nil {
			return percentiles{}, err
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return percentiles{ds[len(ds)/2], ds[len(ds)*99/100]}, nil
}

// directClient drives the plugin through the SDK host.
type directClient struct{ p *sdk.Plugin }

func launchDirect(binDir string, parallel int) (*directClient, error) {
	ctx := context.Background()
	p, err := sdk.Launch(ctx, sdk.LaunchConfig{Path: filepath.Join(binDir, "ragway-echo"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	if _, err := p.Load(ctx, sdk.LoadRequest{Model: "echo", Options: map[string]any{"parallel": parallel}}); err != nil {
		return nil, err
	}
	return &directClient{p}, nil
}

func (d *directClient) stream(ctx context.Context, prompt string) (int, error) {
	n := 0
	err := d.p.Generate(ctx, sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: prompt}}}, func(e sdk.Event) error {
		if e.Text != "" {
			n++
		}
		return nil
	})
	return n, err
}

func (d *directClient) firstToken(ctx context.Context, prompt string) (time.Duration, error) {
	start := time.Now()
	var first time.Duration
	err := d.p.Generate(ctx, sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: prompt}}}, func(e sdk.Event) error {
		if first == 0 && e.Text != "" {
			first = time.Since(start)
		}
		return nil
	})
	return first, err
}

// gatewayClient runs `ragway serve` and talks SSE to it.
type gatewayClient struct {
	cmd    *exec.Cmd
	url    string
	model  string // what requests ask for
	key    string // API key (chat scope) of the gateway's database
	dbName string // its scratch database, dropped by stop ("": another gateway's)
	dbURL  string // and its URL
	client *http.Client
	once   sync.Once
}

var listenRe = regexp.MustCompile(`msg="ragway listening" addr=(http://\S+)`)

func startGateway(binDir string, streams int, profile string) (*gatewayClient, error) {
	models := fmt.Sprintf("  - {name: echo, backend: echo, max_concurrency: %d, max_queue: 1024, options: {parallel: %d}}\n", streams, streams)
	var args []string
	if profile != "" {
		args = append(args, "-cpuprofile", profile)
	}
	g, _, err := spawnGateway(binDir, models, streams, nil, args...)
	if err != nil {
		return nil, err
	}
	if err := g.waitServing(30 * time.Second); err != nil {
		g.stop()
		return nil, err
	}
	return g, nil
}

// gateways are the spawned gateways not stopped yet.
var (
	gatewaysMu sync.Mutex
	gateways   = map[*gatewayClient]bool{}
)

// stopAllGateways stops every spawned gateway still running.
func stopAllGateways() {
	gatewaysMu.Lock()
	var gs []*gatewayClient
	for g := range gateways {
		gs = append(gs, g)
	}
	gatewaysMu.Unlock()
	for _, g := range gs {
		g.stop()
	}
}

// spawnGateway runs `ragway serve` with the given models (YAML list items)
// on a free port, over a fresh scratch database with a chat key (g.key), and
// returns once it listens; requests go to the first model. env is added to the
// gateway's environment (which its plugins inherit). The tail buffer keeps its
// last log lines for error messages.
func spawnGateway(binDir, models string, conns int, env []string, args ...string) (*gatewayClient, *tailBuffer, error) {
	dbName, dbURL, err := dbs.create(context.Background())
	if err != nil {
		return nil, nil, err
	}
	key, err := dbs.createKey(context.Background(), dbURL, "bench", "chat")
	if err != nil {
		_ = dbs.drop(dbName)
		return nil, nil, err
	}
	g, tail, err := spawnGatewayOn(binDir, models, conns, dbURL, key, env, args...)
	if err != nil {
		_ = dbs.drop(dbName)
		return nil, nil, err
	}
	g.dbName = dbName // dropped with this gateway
	return g, tail, nil
}

// spawnGatewayOn is spawnGateway on the database at dbURL, with key: another gateway
// of the same deployment (stop leaves the database).
func spawnGatewayOn(binDir, models string, conns int, dbURL, key string, env []string, args ...string) (*gatewayClient, *tailBuffer, error) {
	dir, err := os.MkdirTemp("", "ragway-bench-")
	if err != nil {
		return nil, nil, err
	}
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nplugins_dir: %s\nmodels:\n%s", binDir, models)
	path := filepath.Join(dir, "ragway.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(filepath.Join(binDir, "ragway"), append([]string{"serve", "-c", path}, args...)...)
	cmd.Env = append(append(os.Environ(), "TMPDIR="+dir, "RAGWAY_DATABASE_URL="+dbURL), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	addr := make(chan string, 1)
	logTail := &tailBuffer{}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logTail.add(sc.Text())
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	model := "echo"
	if m := modelNameRe.FindStringSubmatch(models); m != nil {
		model = m[1]
	}
	g := &gatewayClient{cmd: cmd, model: model, key: key, dbURL: dbURL,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: max(conns*2, 2)}}}
	gatewaysMu.Lock()
	gateways[g] = true
	gatewaysMu.Unlock()
	select {
	case g.url = <-addr:
	case <-time.After(30 * time.Second):
		g.stop()
		return nil, nil, fmt.Errorf("gateway did not start:\n%s", logTail.String())
	}
	return g, logTail, nil
}

var modelNameRe = regexp.MustCompile(`name: ([^,}\s]+)`)

// stop ends the gateway (SIGTERM, then waits) and drops its database.
func (g *gatewayClient) stop() {
	g.once.Do(func() {
		_ = g.cmd.Process.Signal(syscall.SIGTERM)
		_ = g.cmd.Wait()
		if g.dbName == "" {
			return // another gateway's database
		}
		if err := dbs.drop(g.dbName); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		gatewaysMu.Lock()
		delete(gateways, g)
		gatewaysMu.Unlock()
	})
}

// authorize sets the gateway's key on req.
func (g *gatewayClient) authorize(req *http.Request) {
	req.Header.Set("Authorization", "Bearer "+g.key)
}

func (g *gatewayClient) post(ctx context.Context, prompt string, stream bool) (*http.Response, error) {
	return g.postTo(ctx, g.model, prompt, stream)
}

// postTo is post to model.
func (g *gatewayClient) postTo(ctx context.Context, model, prompt string, stream bool) (*http.Response, error) {
	body := fmt.Sprintf(`{"model":%q,"stream":%t,"messages":[{"role":"user","content":%q}]}`, model, stream, prompt)
	req, err := http.NewRequestWithContext(ctx, "POST", g.url+"/v1/chat/completions", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	g.authorize(req)
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return resp, nil
}

var contentKey = []byte(`"content":"`)

// stream counts SSE chunks that carry content.
func (g *gatewayClient) stream(ctx context.Context, prompt string) (int, error) {
	resp, err := g.post(ctx, prompt, true)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		if i := bytes.Index(line, contentKey); i >= 0 && len(line) > i+len(contentKey) && line[i+len(contentKey)] != '"' {
			n++
		}
	}
	return n, nil
}

func (g *gatewayClient) firstToken(ctx context.Context, prompt string) (time.Duration, error) {
	return g.firstTokenOf(ctx, g.model, prompt)
}

// firstTokenOf is firstToken of model.
func (g *gatewayClient) firstTokenOf(ctx context.Context, model, prompt string) (time.Duration, error) {
	start := time.Now()
	resp, err := g.postTo(ctx, model, prompt, true)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var first time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Bytes()
		if i := bytes.Index(line, contentKey); first == 0 && i >= 0 && len(line) > i+len(contentKey) && line[i+len(contentKey)] != '"' {
			first = time.Since(start)
		}
	}
	return first, sc.Err()
}

func (g *gatewayClient) waitServing(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := g.post(ctx, "ping", false)
		cancel()
		if err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("gateway not serving within %v", timeout)
}

var pidRe = regexp.MustCompile(`"pid":(\d+)`)

// crashToServing kills the plugin and times until a request succeeds again.
func (g *gatewayClient) crashToServing() (time.Duration, error) {
	resp, err := g.client.Get(g.url + "/readyz")
	if err != nil {
		return 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := pidRe.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no plugin pid in /readyz: %s", b)
	}
	var pid int
	fmt.Sscan(string(m[1]), &pid)
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return 0, err
	}
	if err := g.waitServing(10 * time.Second); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
