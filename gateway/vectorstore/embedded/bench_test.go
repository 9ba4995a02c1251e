package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/vectorstore"
)

// benchCorpus is a synthetic knowledge base: chunks of ≈60 distinct terms
// drawn from a Zipf vocabulary of 50k terms, weighted like BM25's term
// frequency part, optionally with random 384-dim embeddings.
type benchCorpus struct {
	points  []vectorstore.Point
	queries []vectorstore.Query
}

const (
	benchChunks = 100_000
	benchVocab  = 50_000
	benchTerms  = 60
	benchDim    = 384
)

func makeBenchCorpus(chunks, dim int) *benchCorpus {
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 2, benchVocab-1)
	termID := func(rank uint64) uint32 { return uint32(rank*2654435761 + 12345) }
	bm25tf := func(tf float64) float32 { return float32(tf * 2.2 / (tf + 1.2)) }
	c := &benchCorpus{}
	for i := range chunks {
		tf := make(map[uint32]float64, benchTerms)
		for len(tf) < benchTerms {
			tf[termID(zipf.Uint64())]++
		}
		var sp vectorstore.Sparse
		for t := range tf {
			sp.Indices = append(sp.Indices, t)
		}
		slices.Sort(sp.Indices)
		for _, t := range sp.Indices {
			sp.Values = append(sp.Values, bm25tf(tf[t]))
		}
		p := vectorstore.Point{
			ChunkID:    chunkID(i),
			KBID:       "kb",
			DocumentID: fmt.Sprintf("doc-%d", i/20),
			Sparse:     sp,
		}
		if dim > 0 {
			p.Dense = randVec(r, dim)
		}
		c.points = append(c.points, p)
	}
	for range 1000 {
		n := 5 + r.IntN(4)
		seen := map[uint32]bool{}
		var terms []uint32
		for len(terms) < n {
			t := termID(zipf.Uint64())
			if !seen[t] {
				seen[t] = true
				terms = append(terms, t)
			}
		}
		slices.Sort(terms)
		q := vectorstore.Query{KBID: "kb", TopK: 10, Sparse: vectorstore.Sparse{Indices: terms, Values: make([]float32, n)}}
		for i := range q.Sparse.Values {
			q.Sparse.Values[i] = 1
		}
		if dim > 0 {
			q.Dense = randVec(r, dim)
		}
		c.queries = append(c.queries, q)
	}
	return c
}

func randVec(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

var benchStore = sync.OnceValues(func() (*Store, uint64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := makeBenchCorpus(benchChunks, benchDim)
	s := New()
	for b := range slices.Chunk(c.points, 1000) {
		if err := s.Upsert(context.Background(), b); err != nil {
			panic(err)
		}
	}
	benchQueries = c.queries
	c = nil
	runtime.GC()
	runtime.ReadMemStats(&after)
	return s, after.HeapAlloc - min(before.HeapAlloc, after.HeapAlloc)
})

var benchQueries []vectorstore.Query

// BenchmarkSearch100k searches one knowledge base of 100,000 chunks and
// reports per-query p50 and p99 latency. Run it with
//
//	go test -run '^$' -bench Search100k -benchtime 2000x ./gateway/vectorstore/embedded
func BenchmarkSearch100k(b *testing.B) {
	s, heap := benchStore()
	b.Logf("index heap ≈ %d MB for 100k chunks of %d terms with %d-dim dense (incl. ≈2 MB of benchmark queries)", heap>>20, benchTerms, benchDim)
	for _, mode := range []string{"sparse", "dense", "hybrid"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			i := 0
			for b.Loop() {
				q := benchQueries[i%len(benchQueries)]
				i++
				switch mode {
				case "sparse":
					q.Dense = nil
				case "dense":
					q.Sparse = vectorstore.Sparse{}
				}
				start := time.Now()
				hits, err := s.Search(ctx, q)
				lat = append(lat, time.Since(start))
				if err != nil || len(hits) == 0 {
					b.Fatalf("search: %d hits, %v", len(hits), err)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
