package main

// The llama.cpp part of the benchmark: the llamacpp plugin through the
// gateway vs node-llama-cpp 3.22.1 on the same GGUF, the same llama.cpp
// release (both load @node-llama-cpp/linux-x64's prebuilt libraries), the
// same thread count, one workload at a time:
//
//   - prompt processing: evaluated prompt tokens / time to the first token
//     (gateway: /v1/completions streamed over SSE, TTFT seen by the client;
//     node: first token out of LlamaContextSequence.evaluate);
//   - decode: (completion tokens − 1) / (last token − first token), the
//     rate of the decode steps after the first token, greedy;
//   - aggregate decode of 4 concurrent streams through the gateway
//     (parallel 4): tokens all streams received while all 4 were decoding /
//     that window, vs the single-stream decode rate.
//
// Needs `task setup` (libraries), `task models:bench` and `task bench:setup`
// (npm ci of bench/node into .data/bench-node); `task bench` runs them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

var (
	llamaRun     = flag.Bool("llama", true, "run the llama.cpp measurements (gateway vs node-llama-cpp)")
	llamaModel   = flag.String("llama-model", ".data/models/bench-f16.gguf", "GGUF for the llama.cpp measurements (task models:bench)")
	llamaNodeDir = flag.String("llama-node", ".data/bench-node", "where task bench:setup installed bench/node (npm ci)")
	llamaThreads = flag.Int("llama-threads", 1, "llama.cpp threads on both sides")
	llamaTokens  = flag.Int("llama-tokens", 128, "tokens generated per request (max_tokens)")
	llamaWords   = flag.Int("llama-prompt-words", 127, "words per prompt (one token each in the bench model's vocabulary; BOS makes 128)")
	llamaReps    = flag.Int("llama-reps", 4, "timed single-stream requests per side (distinct prompts; untimed warm-ups before)")
	llamaAggReps = flag.Int("llama-agg-reps", 2, "timed 4-stream rounds through the gateway")
	llamaVerbose = flag.Bool("llama-verbose", false, "print every timed llama.cpp request")
)

// llamaParallel is the number of sequence slots (and concurrent streams)
// of the aggregate measurement.
const llamaParallel = 4

// promptWords are common words of the bench model's vocabulary (the GGUF
// writer's word list): each is one token.
var promptWords = strings.Fields(`the of and to a in is it you that he was for on are with as I his they be at one
have this from or had by hot but some what there we can out other were all your when
up use word how said an each she which do their time if will way about many then them
would write like so these her long make thing see him two has look more day could go
come did my sound no most number who over know water than call first people may down`)

// benchPrompt returns the i-th prompt: the words from a start that moves by
// 7 per prompt, so that prompts 0..95 begin with different words and share
// no prefix beyond BOS (the plugin reuses cached prefixes; the figures
// count only evaluated tokens anyway).
func benchPrompt(i, words int) string {
	out := make([]string, words)
	for k := range out {
		out[k] = promptWords[(i*7+k)%len(promptWords)]
	}
	return strings.Join(out, " ")
}

// genRun is one timed generation.
type genRun struct {
	promptTokens, cachedTokens, completionTokens int
	ttft, decodeTime                             time.Duration // decodeTime: first → last token
	text                                         string
}

func (r genRun) pp() float64 {
	return float64(r.promptTokens-r.cachedTokens) / r.ttft.Seconds()
}

func (r genRun) decode() float64 {
	return float64(r.completionTokens-1) / r.decodeTime.Seconds()
}

func runLlama(binDir string) error {
	if !*llamaRun {
		return nil
	}
	model, err := filepath.Abs(*llamaModel)
	if err != nil {
		return err
	}
	if _, err := os.Stat(model); err != nil {
		return fmt.Errorf("%w (run `task models:bench`)", err)
	}
	nodeDir, _ := filepath.Abs(*llamaNodeDir)
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "node-llama-cpp", "package.json")); err != nil {
		return fmt.Errorf("node-llama-cpp is not installed in %s (run `task bench:setup`)", nodeDir)
	}
	n, reps := *llamaTokens, max(*llamaReps, 1)
	warm := benchPrompt(0, *llamaWords)
	next := 1 // index of the next unused prompt

	// Gateway and node-llama-cpp take turns, half of the prompts each time
	// (gateway, node, gateway, node), so that drift of the machine hits
	// both sides alike. The gateway idles while node runs: never two llama
	// workloads at once.
	gw, err := startLlamaGateway(binDir, model)
	if err != nil {
		return err
	}
	defer gw.stop()
	if _, err := gw.generate(context.Background(), warm, n); err != nil {
		return fmt.Errorf("gateway warm-up: %w", err)
	}
	var gwRuns []genRun
	var node *nodeResult
	skipped := 0
	for _, count := range []int{(reps + 1) / 2, reps / 2} {
		var half []string
		for len(half) < count {
			// The model is random: a prompt whose greedy answer reaches an
			// end-of-generation token before n tokens is not used (greedy
			// outputs are the same on both sides, checked below).
			if skipped > 2*reps {
				return fmt.Errorf("%d prompts ended before %d tokens; lower -llama-tokens", skipped, n)
			}
			p := benchPrompt(next, *llamaWords)
			next++
			s, err := gw.generate(context.Background(), p, n)
			if err != nil {
				return fmt.Errorf("gateway: %w", err)
			}
			if s.usage.CompletionTokens < n {
				skipped++
				continue
			}
			gwRuns = append(gwRuns, s.run())
			half = append(half, p)
		}
		if len(half) == 0 {
			continue
		}
		res, err := runNode(nodeDir, model, warm, half, n)
		if err != nil {
			return fmt.Errorf("node-llama-cpp: %w", err)
		}
		if node != nil {
			res.runs = append(node.runs, res.runs...)
		}
		node = res
	}
	var aggRates []float64
	for range max(*llamaAggReps, 1) {
		r, err := gw.aggregate(next, n)
		if err != nil {
			return fmt.Errorf("gateway, %d streams: %w", llamaParallel, err)
		}
		aggRates = append(aggRates, r)
		next += llamaParallel
	}
	gwVariant := gw.cpuVariant()
	gw.stop()

	// Report.
	same := 0
	for i, r := range gwRuns {
		if r.text == node.runs[i].text {
			same++
		}
	}
	if *llamaVerbose {
		for i, r := range gwRuns {
			nr := node.runs[i]
			fmt.Printf("  request %d: prompt tok/s node %.1f gateway %.1f; decode tok/s node %.1f gateway %.1f\n", i, nr.pp(), r.pp(), nr.decode(), r.decode())
		}
		fmt.Printf("  %d streams: %.1f tok/s per round\n", llamaParallel, aggRates)
	}
	gPP, nPP := median(gwRuns, genRun.pp), median(node.runs, genRun.pp)
	gDec, nDec := median(gwRuns, genRun.decode), median(node.runs, genRun.decode)
	slices.Sort(aggRates)
	agg := aggRates[len(aggRates)/2]
	fmt.Printf("llama.cpp %s, %s, %d thread(s), batch %d, flash attention %v on both sides; CPU variant: %s\n",
		node.Release, filepath.Base(model), *llamaThreads, node.BatchSize, node.FlashAttention, libSummary(gwVariant, node.CPUVariant))
	fmt.Printf("1 stream: median of %d greedy requests on distinct prompts, sides taking turns, after a warm-up (gateway: /v1/completions SSE; node-llama-cpp %s: sequence.evaluate)\n",
		reps, node.Binding)
	fmt.Printf("greedy outputs identical on both sides: %d/%d; prompt tokens evaluated: %s; prompts skipped (end of generation before %d tokens): %d\n",
		same, len(gwRuns), tokenCounts(gwRuns, node.runs), n, skipped)
	fmt.Printf("%-40s %14s %14s %8s\n", "llama.cpp (bench model)", "node-llama-cpp", "gateway (SSE)", "ratio")
	fmt.Printf("%-40s %14.1f %14.1f %8.2f\n", fmt.Sprintf("prompt tok/s, %d-token prompt, 1 stream", node.runs[0].promptTokens), nPP, gPP, gPP/nPP)
	fmt.Printf("%-40s %14.1f %14.1f %8.2f\n", fmt.Sprintf("decode tok/s, %s tokens, 1 stream", completionCounts(gwRuns, node.runs)), nDec, gDec, gDec/nDec)
	fmt.Printf("%-40s %14s %14.1f %8.2f\n", fmt.Sprintf("decode tok/s, %d streams (aggregate)", llamaParallel), "", agg, agg/gDec)
	fmt.Printf("targets: gateway/node ≥ 1.00 on prompt and decode; %d streams ≥ 1.30× one stream (ratio column: vs the gateway's 1-stream decode)\n\n", llamaParallel)
	return nil
}

func median(runs []genRun, f func(genRun) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// tokenCounts describes the evaluated prompt tokens: the plugin reuses
// the BOS from a slot's cache.
func tokenCounts(gw, node []genRun) string {
	g, n := gw[0].promptTokens-gw[0].cachedTokens, node[0].promptTokens
	s := fmt.Sprintf("node %d, gateway %d", n, g)
	if gw[0].cachedTokens > 0 {
		s += fmt.Sprintf(" (+%d reused from the slot's cache)", gw[0].cachedTokens)
	}
	return s
}

// completionCounts describes the generated tokens, flagging a side that
// stopped early (the rates are per token, so they stay comparable).
func completionCounts(gw, node []genRun) string {
	lo, hi := gw[0].completionTokens, gw[0].completionTokens
	for _, r := range append(slices.Clone(gw), node...) {
		lo, hi = min(lo, r.completionTokens), max(hi, r.completionTokens)
	}
	if lo == hi {
		return fmt.Sprint(lo)
	}
	return fmt.Sprintf("%d–%d", lo, hi)
}

func libSummary(gw, node string) string {
	if gw == node {
		return gw + " on both sides"
	}
	return fmt.Sprintf("%s (plugin) vs %s (node)", gw, node)
}

// nodeResult is what bench/node/llama-bench.mjs prints.
type nodeResult struct {
	Binding        string `json:"binding"`
	Release        string `json:"llama_cpp_release"`
	CPUVariant     string `json:"cpu_variant"`
	FlashAttention any    `json:"flash_attention"`
	BatchSize      int    `json:"batch_size"`
	Runs           []struct {
		PromptTokens     int     `json:"prompt_tokens"`
		CompletionTokens int     `json:"completion_tokens"`
		TTFTms           float64 `json:"ttft_ms"`
		Totalms          float64 `json:"total_ms"`
		Text             string  `json:"text"`
	} `json:"runs"`
	runs []genRun
}

// runNode runs llama-bench.mjs on the prompts, after one untimed warm-up.
func runNode(nodeDir, model, warmup string, prompts []string, n int) (*nodeResult, error) {
	script, err := filepath.Abs(filepath.Join("bench", "node", "llama-bench.mjs"))
	if err != nil {
		return nil, err
	}
	arg, _ := json.Marshal(map[string]any{
		"dir": nodeDir, "model": model, "warmup": warmup, "prompts": prompts, "max_tokens": n,
		"threads": *llamaThreads, "context_size": 1024, "batch_size": 512,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", script, string(arg))
	cmd.Env = append(os.Environ(), "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%w\n%s", err, stderr.Bytes())
	}
	var res nodeResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("output: %w\n%s%s", err, out, stderr.Bytes())
	}
	if res.Binding != "prebuilt" {
		return nil, fmt.Errorf("node-llama-cpp used a %q binding, want its prebuilt @node-llama-cpp/linux-x64", res.Binding)
	}
	if len(res.Runs) != len(prompts) {
		return nil, fmt.Errorf("%d runs for %d prompts", len(res.Runs), len(prompts))
	}
	for _, r := range res.Runs {
		res.runs = append(res.runs, genRun{
			promptTokens:     r.PromptTokens,
			completionTokens: r.CompletionTokens,
			ttft:             time.Duration(r.TTFTms * float64(time.Millisecond)),
			decodeTime:       time.Duration((r.Totalms - r.TTFTms) * float64(time.Millisecond)),
			text:             r.Text,
		})
	}
	return &res, nil
}

// startLlamaGateway serves the bench model with the llamacpp plugin.
func startLlamaGateway(binDir, model string) (*gatewayClient, error) {
	models := fmt.Sprintf("  - {name: bench, backend: llamacpp, max_concurrency: %d, max_queue: 64, options: {model_path: %q, threads: %d, parallel: %d, context_length: 1024}}\n",
		llamaParallel, model, *llamaThreads, llamaParallel)
	g, logTail, err := spawnGateway(binDir, models, llamaParallel, nil)
	if err != nil {
		return nil, err
	}
	// Ready when a one-token request succeeds (the model loads at start).
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := g.generate(context.Background(), "ping", 1)
		if err == nil {
			return g, nil
		}
		if time.Now().After(deadline) {
			g.stop()
			return nil, fmt.Errorf("gateway not serving the llama model: %v\n%s", err, logTail.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tailBuffer keeps the last lines of the gateway's log for error messages.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailBuffer) add(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, s)
	if len(t.lines) > 20 {
		t.lines = t.lines[1:]
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// stream is one streamed completion as the client saw it.
type stream struct {
	start  time.Time
	chunks []time.Time // arrival of each chunk carrying text
	usage  struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		PromptTokensDetails struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	}
	text strings.Builder
}

func (s *stream) run() genRun {
	return genRun{
		promptTokens:     s.usage.PromptTokens,
		cachedTokens:     s.usage.PromptTokensDetails.CachedTokens,
		completionTokens: s.usage.CompletionTokens,
		ttft:             s.chunks[0].Sub(s.start),
		decodeTime:       s.chunks[len(s.chunks)-1].Sub(s.chunks[0]),
		text:             s.text.String(),
	}
}

// generate streams one greedy /v1/completions request of up to n tokens.
func (g *gatewayClient) generate(ctx context.Context, prompt string, n int) (*stream, error) {
	s, err := g.streamed(ctx, "/v1/completions", map[string]any{
		"model": "bench", "prompt": prompt, "max_tokens": n, "temperature": 0,
		"stream": true, "stream_options": map[string]any{"include_usage": true},
	})
	if err == nil && s.usage.CompletionTokens == 0 {
		err = errors.New("no tokens streamed")
	}
	return s, err
}

// streamed posts body to path and reads the SSE answer into a stream: the arrival
// of each chunk with text (a completion's text or a chat delta's content), the text,
// and the usage.
func (g *gatewayClient) streamed(ctx context.Context, path string, body map[string]any) (*stream, error) {
	raw, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", g.url+path, bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	g.authorize(req)
	s := &stream{start: time.Now()}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok || bytes.Equal(data, []byte("[DONE]")) {
			continue
		}
		now := time.Now()
		var ev struct {
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Usage *json.RawMessage `json:"usage"`
			Error *json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			return nil, fmt.Errorf("SSE event %q: %w", data, err)
		}
		if ev.Error != nil {
			return nil, fmt.Errorf("stream error: %s", *ev.Error)
		}
		for _, c := range ev.Choices {
			if text := c.Text + c.Delta.Content; text != "" {
				s.chunks = append(s.chunks, now)
				s.text.WriteString(text)
			}
		}
		if ev.Usage != nil && string(*ev.Usage) != "null" {
			if err := json.Unmarshal(*ev.Usage, &s.usage); err != nil {
				return nil, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(s.chunks) == 0 {
		return nil, errors.New("no tokens streamed")
	}
	return s, nil
}

// aggregate runs llamaParallel concurrent streams and returns the tokens
// per second received while all of them were decoding (from the last
// stream's first token to the first stream's last token).
// Their prompts are benchPrompt(first), benchPrompt(first+1) ...
func (g *gatewayClient) aggregate(first, n int) (float64, error) {
	streams := make([]*stream, llamaParallel)
	errs := make([]error, llamaParallel)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			streams[i], errs[i] = g.generate(context.Background(), benchPrompt(first+i, *llamaWords), n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	var from, to time.Time
	for i, s := range streams {
		first, last := s.chunks[0], s.chunks[len(s.chunks)-1]
		if i == 0 || first.After(from) {
			from = first
		}
		if i == 0 || last.Before(to) {
			to = last
		}
	}
	if !to.After(from) {
		return 0, errors.New("the streams never decoded together (a stream ended before the last one started)")
	}
	tokens := 0
	for _, s := range streams {
		for _, t := range s.chunks {
			if t.After(from) && !t.After(to) {
				tokens++
			}
		}
	}
	return float64(tokens) / to.Sub(from).Seconds(), nil
}

var cpuLibRe = regexp.MustCompile(`libggml-cpu[-A-Za-z0-9_]*\.so`)

// cpuVariant names the libggml-cpu-* variant the plugin process mapped.
func (g *gatewayClient) cpuVariant() string {
	resp, err := g.client.Get(g.url + "/readyz")
	if err != nil {
		return "?"
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := pidRe.FindSubmatch(b)
	if m == nil {
		return "?"
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%s/maps", m[1]))
	if err != nil {
		return "?"
	}
	if v := cpuLibRe.Find(maps); v != nil {
		return string(v)
	}
	return "?"
}
