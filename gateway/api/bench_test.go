package api_test

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// BenchmarkSSERelay64 relays streams of short tokens to 64 concurrent
// clients and reports content chunks per second (client CPU included: the
// clients run in this process, on the same cores). "burst" emits as fast as
// the gateway takes tokens (chunks get batched into few flushes); "paced"
// emits one token per stream every 3 ms (21,333 chunks/s in total, mostly
// one flush per chunk), the realistic case.
func BenchmarkSSERelay64(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchRelay(b, 0) })
	b.Run("paced", func(b *testing.B) { benchRelay(b, 3*time.Millisecond) })
}

func benchRelay(b *testing.B, every time.Duration) {
	const streams, tokens = 64, 500
	fake := newFake()
	fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
		var tick <-chan time.Time
		if every > 0 {
			t := time.NewTicker(every)
			defer t.Stop()
			tick = t.C
		}
		for range tokens {
			if tick != nil {
				<-tick
			}
			if err := emit(sdk.Event{Text: " word", Tokens: 1}); err != nil {
				return err
			}
		}
		return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 1, CompletionTokens: tokens}})
	})
	s := start(b, fake, api.Options{Logger: quietLogger()})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: streams}}
	body := `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	var total int64
	var mu sync.Mutex
	for range b.N {
		var wg sync.WaitGroup
		for range streams {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Post(s.url+"/v1/chat/completions", "application/json", strings.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				defer resp.Body.Close()
				sc := bufio.NewScanner(resp.Body)
				n := int64(0)
				for sc.Scan() {
					if bytes.Contains(sc.Bytes(), []byte(`"content":" word"`)) {
						n++
					}
				}
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	el := time.Since(start)
	b.ReportMetric(float64(total)/el.Seconds(), "chunks/s")
	b.ReportMetric(100*(cpuTime()-cpu0).Seconds()/el.Seconds(), "%cpu")
	if total != int64(b.N*streams*tokens) {
		b.Errorf("relayed %d chunks, want %d", total, b.N*streams*tokens)
	}
}

// cpuTime is the CPU time (user + system) of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
