package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// runModels measures models managed while the gateway runs: the time from POST
// /admin/models to the first token the new model serves (echo, and the llama.cpp
// demo model), and the TTFT of a steady load while its model is replaced again and
// again, against the same load without changes.
func runModels(binDir string) error {
	modelsDir, err := filepath.Abs(".data/models")
	if err != nil {
		return err
	}
	g, _, err := spawnGateway(binDir, "  - {name: chat, backend: echo, max_concurrency: 16, max_queue: 1024}\n", 16,
		[]string{"RAGWAY_MODELS_DIR=" + modelsDir})
	if err != nil {
		return err
	}
	defer g.stop()
	if err := g.waitServing(30 * time.Second); err != nil {
		return err
	}
	admin, err := dbs.createKey(context.Background(), g.dbURL, "bench-admin", "chat,admin")
	if err != nil {
		return err
	}
	call := func(method, path, body string) error {
		req, err := http.NewRequest(method, g.url+path, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		resp, err := g.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return nil
	}

	fmt.Printf("\nmodels: from POST /admin/models to the first token of the new model (the call answers once its replica is ready)\n")
	fmt.Printf("%-40s %10s %10s %10s\n", "", "ready", "1st token", "runs")
	arms := []struct {
		name, entry string
		runs        int
	}{
		{"echo", `{"name":%q,"backend":"echo"}`, 10},
	}
	if _, err := os.Stat(filepath.Join(modelsDir, "demo.gguf")); err == nil {
		arms = append(arms, struct {
			name, entry string
			runs        int
		}{"llama.cpp demo (1.0 MB GGUF, 1 thread)", `{"name":%q,"backend":"llamacpp","options":{"model_path":"demo","threads":1,"parallel":1,"context_length":256}}`, 5})
	} else {
		fmt.Println("(llama.cpp arm skipped: .data/models/demo.gguf is missing; task models:demo makes it)")
	}
	for ai, a := range arms {
		var ready, first []time.Duration
		for i := range a.runs {
			name := fmt.Sprintf("added-%d-%d", ai, i)
			start := time.Now()
			if err := call("POST", "/admin/models", fmt.Sprintf(a.entry, name)); err != nil {
				return err
			}
			ready = append(ready, time.Since(start))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := g.firstTokenOf(ctx, name, "hello there")
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			first = append(first, time.Since(start))
			if err := call("DELETE", "/admin/models/"+name, ""); err != nil {
				return err
			}
		}
		slices.Sort(ready)
		slices.Sort(first)
		fmt.Printf("%-40s %10s %10s %10d  (p50; max %s)\n", a.name, ms(ready[len(ready)/2]), ms(first[len(first)/2]), a.runs, ms(first[len(first)-1]))
	}

	// TTFT of a steady load on an admin model: 8 clients, 10 s without changes, then
	// 10 s while the model is replaced every second (each new version loads for 200 ms).
	const clients, window = 8, 10 * time.Second
	measure := func(during func(stop <-chan struct{}) error) ([]time.Duration, int, error) {
		var mu sync.Mutex
		var ttft []time.Duration
		failed := 0
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					d, err := g.firstTokenOf(ctx, "steady", "one two three four five six seven eight")
					cancel()
					mu.Lock()
					if err != nil || d == 0 {
						failed++
					} else {
						ttft = append(ttft, d)
					}
					mu.Unlock()
				}
			})
		}
		errc := make(chan error, 1)
		go func() { errc <- during(stop) }()
		time.Sleep(window)
		close(stop)
		wg.Wait()
		return ttft, failed, <-errc
	}
	idle := func(<-chan struct{}) error { return nil }
	if err := call("POST", "/admin/models", `{"name":"steady","backend":"echo","max_concurrency":16}`); err != nil {
		return err
	}
	base, baseFailed, err := measure(idle)
	if err != nil {
		return err
	}
	replaces := 0
	during, duringFailed, err := measure(func(stop <-chan struct{}) error {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return nil
			case <-time.After(time.Second):
			}
			if err := call("POST", "/admin/models/steady/replace",
				fmt.Sprintf(`{"name":"steady","backend":"echo","max_concurrency":16,"options":{"load_delay_ms":200,"delay_ms":%d}}`, i%2)); err != nil {
				return err
			}
			replaces++
		}
	})
	if err != nil {
		return err
	}
	pct := func(d []time.Duration, p int) time.Duration {
		slices.Sort(d)
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, len(d)*p/100)]
	}
	fmt.Printf("\nmodels: TTFT of %d streaming clients for %v each, without and during replaces every second\n", clients, window)
	fmt.Printf("%-40s %10s %10s %10s %10s\n", "", "p50", "p99", "chats", "failed")
	fmt.Printf("%-40s %10s %10s %10d %10d\n", "no change", ms(pct(base, 50)), ms(pct(base, 99)), len(base), baseFailed)
	fmt.Printf("%-40s %10s %10s %10d %10d\n", fmt.Sprintf("%d replaces", replaces), ms(pct(during, 50)), ms(pct(during, 99)), len(during), duringFailed)
	return nil
}
