package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLoadMetrics(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "metrics.http"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		want scrapedLoad
		ok   bool
	}{
		{name: "vLLM golden, two engines summed", in: string(golden), want: scrapedLoad{running: 5, waiting: 4}, ok: true},
		{name: "no labels", in: "vllm:num_requests_running 2\nvllm:num_requests_waiting 1\n", want: scrapedLoad{2, 1}, ok: true},
		{name: "with a timestamp", in: "vllm:num_requests_running{a=\"b\"} 3 1718000000000\n", want: scrapedLoad{running: 3}, ok: true},
		{
			name: "label values with braces, spaces and escaped quotes",
			in:   `vllm:num_requests_waiting{model_name="a} b \"c\" {d",engine="0"} 6.0` + "\n",
			want: scrapedLoad{waiting: 6}, ok: true,
		},
		{name: "llama-server", in: "llamacpp:requests_processing 1\nllamacpp:requests_deferred 2\n", want: scrapedLoad{1, 2}, ok: true},
		{name: "SGLang", in: "sglang:num_running_reqs{tp_rank=\"0\"} 4\nsglang:num_queue_reqs{tp_rank=\"0\"} 0\n", want: scrapedLoad{running: 4}, ok: true},
		{name: "a longer name is another metric", in: "vllm:num_requests_running_total 9\n", ok: false},
		{name: "NaN and garbage values are skipped", in: "vllm:num_requests_running NaN\nvllm:num_requests_waiting x\n", ok: false},
		{name: "unterminated labels", in: "vllm:num_requests_running{a=\"b 1\n", ok: false},
		{name: "no gauges (another server's metrics)", in: "# HELP ragway_requests_total x\nragway_requests_total 10\n", ok: false},
		{name: "empty", in: "", ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseLoadMetrics(strings.NewReader(tc.in))
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestPick(t *testing.T) {
	type up struct {
		healthy  bool
		inflight int64
		scraped  *scrapedLoad // nil: no metrics
		atScrape int64
	}
	tests := []struct {
		name  string
		ups   []up
		tried []bool
		down  bool  // downToo
		want  []int // acceptable picks (ties)
	}{
		{name: "least in-flight without metrics", ups: []up{{healthy: true, inflight: 2}, {healthy: true, inflight: 1}, {healthy: true, inflight: 3}}, want: []int{1}},
		{name: "metrics count running and waiting", ups: []up{{healthy: true, scraped: &scrapedLoad{2, 3}}, {healthy: true, scraped: &scrapedLoad{4, 0}}}, want: []int{1}},
		{
			name: "requests started since the scrape count",
			ups:  []up{{healthy: true, scraped: &scrapedLoad{1, 0}, inflight: 5, atScrape: 0}, {healthy: true, scraped: &scrapedLoad{3, 0}}},
			want: []int{1},
		},
		{name: "healthy before less loaded", ups: []up{{healthy: false}, {healthy: true, inflight: 9}}, want: []int{1}},
		{name: "untried only", ups: []up{{healthy: true}, {healthy: true, inflight: 4}}, tried: []bool{true, false}, want: []int{1}},
		{name: "no down upstream while one was healthy", ups: []up{{healthy: true}, {healthy: false}, {healthy: false}}, tried: []bool{true, false, false}, want: nil},
		{name: "down upstreams when none was healthy", ups: []up{{healthy: false, inflight: 2}, {healthy: false, inflight: 1}}, down: true, want: []int{1}},
		{name: "healthy before down even then", ups: []up{{healthy: false}, {healthy: true, inflight: 9}}, down: true, want: []int{1}},
		{name: "ties go either way", ups: []up{{healthy: true}, {healthy: true}}, want: []int{0, 1}},
		{name: "all tried", ups: []up{{healthy: true}}, tried: []bool{true}, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bases := make([]string, len(tc.ups))
			for i := range bases {
				bases[i] = "http://u" + string(rune('a'+i))
			}
			p := newPool(bases, nil, "", 0, slog.New(slog.DiscardHandler))
			for i, u := range tc.ups {
				x := p.ups[i]
				x.healthy = u.healthy
				x.inflight.Store(u.inflight)
				if u.scraped != nil {
					x.hasLoad, x.running, x.waiting, x.inflightAtScrape = true, u.scraped.running, u.scraped.waiting, u.atScrape
				}
			}
			tried := tc.tried
			if tried == nil {
				tried = make([]bool, len(tc.ups))
			}
			seen := map[int]bool{}
			for range 4 { // the rotation must not matter beyond ties
				got := p.pick(tried, tc.down)
				if got == nil {
					if tc.want != nil {
						t.Fatalf("pick = nil, want one of %v", tc.want)
					}
					return
				}
				ok := false
				for _, w := range tc.want {
					ok = ok || got.idx == w
				}
				if !ok {
					t.Fatalf("pick = %d, want one of %v", got.idx, tc.want)
				}
				seen[got.idx] = true
			}
			if len(tc.want) > 1 && len(seen) < 2 {
				t.Errorf("ties always went to %v", seen)
			}
		})
	}
}

func TestLoadEstimate(t *testing.T) {
	p := newPool([]string{"http://u"}, nil, "", 0, slog.New(slog.DiscardHandler))
	u := p.ups[0]
	// Scraped while the plugin had 8 requests there.
	u.healthy, u.hasLoad, u.running, u.waiting, u.inflightAtScrape = true, true, 8, 2, 8
	tests := []struct {
		name      string
		healthy   bool
		inflight  int64
		run, wait int
	}{
		{name: "at the scrape", healthy: true, inflight: 8, run: 8, wait: 2},
		{name: "3 started since", healthy: true, inflight: 11, run: 11, wait: 2},
		{name: "all the plugin's requests ended since", healthy: true, inflight: 0, run: 0, wait: 2},
		{name: "down: only the plugin's own in-flight count", healthy: false, inflight: 1, run: 1, wait: 0},
	}
	for _, tc := range tests {
		u.healthy = tc.healthy
		u.inflight.Store(tc.inflight)
		if r, w := u.load(); r != tc.run || w != tc.wait {
			t.Errorf("%s: load %d, %d; want %d, %d", tc.name, r, w, tc.run, tc.wait)
		}
	}
}
