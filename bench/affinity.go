package main

// Prefix-affinity dispatch vs least-loaded: concurrent multi-turn conversations over
// two llama.cpp replicas of the bench model, each conversation with a long system
// prompt and sources of its own; the time to the first token and the prompt tokens
// computed (not taken from a replica's cache) at each turn.

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

var (
	affinityConvs = flag.Int("affinity-conversations", 8, "concurrent conversations of the affinity bench")
	affinityTurns = flag.Int("affinity-turns", 10, "turns of each conversation of the affinity bench")
	affinityWords = flag.Int("affinity-system-words", 1000, "words of each conversation's system prompt and sources")
)

// affinityArm is one dispatch policy's run: per turn, the conversations' times to
// first token and prompt tokens computed.
type affinityArm struct {
	ttft     [][]time.Duration
	computed [][]int
	prompt   [][]int
	tokens   int
	elapsed  time.Duration
}

func runAffinity(binDir string) error {
	model, err := filepath.Abs(*llamaModel)
	if err != nil {
		return err
	}
	n, turns := max(*affinityConvs, 1), max(*affinityTurns, 2)
	policies := []string{"least_loaded", "affinity"}
	arms := make([]affinityArm, len(policies))
	for i, policy := range policies {
		if arms[i], err = affinityRun(binDir, model, policy, n, turns); err != nil {
			return fmt.Errorf("%s: %w", policy, err)
		}
	}
	fmt.Printf("prefix affinity: %d concurrent conversations of %d turns (0-2 s pauses) over 2 replicas of %s (1 thread, 4 slots each, greedy, 16 tokens an answer); median time to first token and mean prompt tokens computed (not from a cache)\n",
		n, turns, filepath.Base(model))
	fmt.Printf("%-5s %8s %18s %18s %8s\n", "turn", "prompt", "least_loaded", "affinity", "ratio")
	for t := range turns {
		ll, af := medianDuration(arms[0].ttft[t]), medianDuration(arms[1].ttft[t])
		fmt.Printf("%-5d %8.0f %9s %8.0f %9s %8.0f %8.2f\n", t+1, mean(arms[1].prompt[t]), ms(ll), mean(arms[0].computed[t]), ms(af), mean(arms[1].computed[t]),
			float64(af)/float64(ll))
	}
	var later [2][]time.Duration
	for a := range arms {
		for t := 1; t < turns; t++ {
			later[a] = append(later[a], arms[a].ttft[t]...)
		}
	}
	ll, af := medianDuration(later[0]), medianDuration(later[1])
	mll, maf := meanDuration(later[0]), meanDuration(later[1])
	fmt.Printf("turns 2-%d: mean TTFT %s vs %s (%.2fx), median %s vs %s (%.2fx); throughput %.1f vs %.1f answer tokens/s over the whole run (%.1f s vs %.1f s)\n",
		turns, ms(mll), ms(maf), float64(maf)/float64(mll), ms(ll), ms(af), float64(af)/float64(ll),
		float64(arms[0].tokens)/arms[0].elapsed.Seconds(), float64(arms[1].tokens)/arms[1].elapsed.Seconds(),
		arms[0].elapsed.Seconds(), arms[1].elapsed.Seconds())
	verdict := "PASS"
	if float64(maf) > affinityTarget*float64(mll) || arms[1].elapsed > arms[0].elapsed*11/10 {
		verdict = "FAIL"
	}
	fmt.Printf("target: turns 2-%d mean TTFT with affinity ≤ %.1fx least_loaded's, and the run no more than 10%% longer (no loss of throughput)\nverdict: %s\n\n",
		turns, affinityTarget, verdict)
	return nil
}

// affinityTarget is the most the later turns' mean time to first token with prefix
// affinity may be, as a share of least-loaded dispatch's. The mean, not the median:
// with two replicas least-loaded dispatch sends about half the turns where their
// history is cached anyway, so its median turn is often a cache hit too; the mean
// weighs the recomputed prompts affinity saves.
const affinityTarget = 0.3

// affinityRun runs the conversations on a gateway whose model dispatches by policy.
func affinityRun(binDir, model, policy string, n, turns int) (affinityArm, error) {
	arm := affinityArm{ttft: make([][]time.Duration, turns), computed: make([][]int, turns), prompt: make([][]int, turns)}
	models := fmt.Sprintf("  - {name: bench, backend: llamacpp, replicas: 2, max_concurrency: 4, max_queue: 64, dispatch: %s, options: {model_path: %q, threads: 1, parallel: 4, context_length: 8192}}\n",
		policy, model)
	g, logTail, err := spawnGateway(binDir, models, 2*n, nil)
	if err != nil {
		return arm, err
	}
	defer g.stop()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := g.generate(context.Background(), "ping", 1); err == nil {
			break
		} else if time.Now().After(deadline) {
			return arm, fmt.Errorf("gateway not serving the llama model: %v\n%s", err, logTail.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	var (
		mu       sync.Mutex
		wg       sync.WaitGroup
		firstErr error
	)
	start := time.Now()
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			system := "You answer from the sources below, briefly.\n\nSources:\n" + benchPrompt(1000+c*31, *affinityWords)
			msgs := []any{map[string]any{"role": "system", "content": system}}
			// Users read and type: a pause before each turn (the same in both runs),
			// so that turns do not arrive in lockstep.
			think := rand.New(rand.NewPCG(uint64(c), 7))
			for t := range turns {
				time.Sleep(time.Duration(think.IntN(2000)) * time.Millisecond)
				msgs = append(msgs, map[string]any{"role": "user", "content": benchPrompt(c*100+t, 12)})
				s, err := g.streamed(context.Background(), "/v1/chat/completions", map[string]any{
					"model": "bench", "messages": msgs, "max_tokens": 16, "temperature": 0,
					"stream": true, "stream_options": map[string]any{"include_usage": true},
				})
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = fmt.Errorf("conversation %d turn %d: %w", c, t+1, err)
					}
					mu.Unlock()
					return
				}
				arm.ttft[t] = append(arm.ttft[t], s.chunks[0].Sub(s.start))
				arm.prompt[t] = append(arm.prompt[t], s.usage.PromptTokens)
				arm.computed[t] = append(arm.computed[t], s.usage.PromptTokens-s.usage.PromptTokensDetails.CachedTokens)
				arm.tokens += s.usage.CompletionTokens
				mu.Unlock()
				msgs = append(msgs, map[string]any{"role": "assistant", "content": s.text.String()})
			}
		}()
	}
	wg.Wait()
	arm.elapsed = time.Since(start)
	if firstErr != nil {
		return arm, fmt.Errorf("%w\n%s", firstErr, logTail.String())
	}
	return arm, nil
}

func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func meanDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

func mean(xs []int) float64 {
	if len(xs) == 0 {
		return 0
	}
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}
