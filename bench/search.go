package main

// Search latency (-only search): exact and approximate dense search, in hybrid and
// alone, and sparse search, at each of -search-sizes chunks.
//
// Chunks: real text (the rag bench's corpus: the Go documentation, then synthetic
// English/Chinese Markdown documents) with its real sparse vector (rag.ChunkVector),
// and a 384-dim dense vector from gateway/vectorstore/embedded/synth, shaped like
// sentence embeddings of text (a direction common to all, a power-law spectrum,
// clustered by document and by topic), all in one knowledge base. Queries:
// -search-queries phrases of the chunks' text (rag.QueryVector), one at a time, top_k 5,
// each with a dense vector drawn like one more chunk of the dense document of its
// chunk. Arms at each size: sparse-only; hybrid (RRF) over exact dense search
// (embedded.Exact()); hybrid over the approximate index (built in the background after
// the upserts: its build time is reported); the sparse-only and approximate arms also
// print the latencies of questions of phrase length (≤ 32 terms) and of longer ones
// (whole paragraphs) apart. Recall: the approximate index's dense-only top 10 against
// exact's, over the same dense vectors; hybrid recall: the approximate arm's hybrid top
// 10 (approximate on both sides: embedded's sparseApprox) against the exact arm's.
// Index heap: the live heap after a GC with the store built minus before it.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/gob"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
	"github.com/ragway/ragway/gateway/vectorstore/embedded/synth"
)

var (
	searchSizes   = flag.String("search-sizes", "100000,1000000", "search bench: knowledge base sizes in chunks, comma-separated")
	searchQueries = flag.Int("search-queries", 2000, "search bench: queries per arm")
	searchLoadN   = flag.Int("search-load", 1_000_000, "search bench: chunks written to Postgres and loaded as a gateway starts (0: skip)")
	searchCache   = flag.String("search-corpus-cache", "", "search bench: keep the chunked corpus in this file and reuse it when its sizes match (saves minutes a run)")
)

const (
	searchDim          = 384
	searchTopK         = 5
	searchTarget       = 10 * time.Millisecond // hybrid p99 with the approximate index
	searchRecallTarget = 0.98
	searchLoadTarget   = time.Minute // start-up: the index loaded from Postgres and built
)

// searchChunk is a chunk of the search corpus: its sparse vector and document.
type searchChunk struct {
	Sparse vectorstore.Sparse
	Doc    int32
}

// searchCached is the corpus as -search-corpus-cache keeps it: reused only for the
// same sizes and the same analyzer rules (rag.Analyzer) that made its vectors.
type searchCached struct {
	Want, Smallest, NQ, Analyzer int
	Chunks                       []searchChunk
	Texts                        []string
	Queries                      []searchQuery
}

func writeGob(path string, v any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	if err := gob.NewEncoder(w).Encode(v); err != nil {
		f.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// searchTexts is how many chunk texts searchCorpus keeps (the load part stores them
// again and again as the chunks' content).
const searchTexts = 10_000

// searchQuery is a query phrase's vector and the chunk it was taken from.
type searchQuery struct {
	Sparse vectorstore.Sparse
	Chunk  int
}

func runSearch() error {
	var sizes []int
	for f := range strings.SplitSeq(*searchSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("-search-sizes: %q is not a number of chunks", f)
		}
		sizes = append(sizes, n)
	}
	goDocs, gen, err := ragSources()
	if err != nil {
		return err
	}
	start := time.Now()
	want := max(slices.Max(sizes), *searchLoadN)
	var cached searchCached
	if *searchCache != "" {
		if f, err := os.Open(*searchCache); err == nil {
			err = gob.NewDecoder(bufio.NewReader(f)).Decode(&cached)
			f.Close()
			if err != nil || cached.Want != want || cached.Smallest != slices.Min(sizes) || cached.NQ != *searchQueries || cached.Analyzer != rag.Analyzer {
				cached = searchCached{}
			}
		}
	}
	if cached.Chunks == nil {
		chunks, texts, queries, err := searchCorpus(gen, goDocs, want, slices.Min(sizes), *searchQueries)
		if err != nil {
			return err
		}
		cached = searchCached{Want: want, Smallest: slices.Min(sizes), NQ: *searchQueries, Analyzer: rag.Analyzer, Chunks: chunks, Texts: texts, Queries: queries}
		if *searchCache != "" {
			if err := writeGob(*searchCache, &cached); err != nil {
				return err
			}
		}
	}
	chunks, texts, queries := cached.Chunks, cached.Texts, cached.Queries
	fmt.Printf("search: up to %d chunks of real text (chunked and vectorised in %s), dense vectors from embedded/synth (%d-dim; 1,000 topics, %d chunks a document, %d documents a topic); %d queries an arm (phrases of the chunks' text + a dense vector near its chunk's), one at a time, top_k %d; GOMAXPROCS=%d\n",
		len(chunks), time.Since(start).Round(time.Second), searchDim, synth.ChunksPerDoc, synth.DocsPerTopic, *searchQueries, searchTopK, runtime.GOMAXPROCS(0))
	fmt.Printf("%-34s %9s %9s %9s %12s %10s %12s %8s\n", "", "p50", "p99", "max", "index heap", "upsert", "index build", "recall")
	verdict := "PASS"
	var why []string
	for _, n := range sizes {
		rs, err := searchSize(chunks[:n], queries, n)
		if err != nil {
			return err
		}
		exact, ann := rs[1], rs[2]
		fmt.Printf("  %d chunks: approximate/exact hybrid p99 %.2fx; heap %.0f B a chunk (sparse-only %.0f, + exact dense %.0f, + approximate index %.0f)\n",
			n, float64(pct(ann.lat, 99))/float64(pct(exact.lat, 99)), float64(ann.heap)/float64(n),
			float64(rs[0].heap)/float64(n), float64(exact.heap-rs[0].heap)/float64(n), float64(int64(ann.heap)-int64(exact.heap))/float64(n))
		if n >= 1_000_000 && pct(ann.lat, 99) > searchTarget {
			verdict = "FAIL"
			why = append(why, fmt.Sprintf("hybrid p99 %s at %d chunks", ms(pct(ann.lat, 99)), n))
		}
		if ann.recall < searchRecallTarget {
			verdict = "FAIL"
			why = append(why, fmt.Sprintf("recall %.3f at %d chunks", ann.recall, n))
		}
		if ann.hybridRecall < searchRecallTarget {
			verdict = "FAIL"
			why = append(why, fmt.Sprintf("hybrid recall %.3f at %d chunks", ann.hybridRecall, n))
		}
	}
	if *searchLoadN > 0 {
		took, err := searchLoad(chunks, texts, *searchLoadN)
		if err != nil {
			return fmt.Errorf("load from Postgres: %w", err)
		}
		if took > searchLoadTarget {
			verdict = "FAIL"
			why = append(why, fmt.Sprintf("start-up %s with %d chunks", took.Round(time.Second), *searchLoadN))
		}
	}
	fmt.Printf("targets: hybrid p99 ≤ %s at 1,000,000 chunks with the approximate index; recall@10 ≥ %.2f, dense-only and hybrid; index loaded and built ≤ %s\n", ms(searchTarget), searchRecallTarget, searchLoadTarget)
	fmt.Printf("verdict: %s %s\n\n", verdict, strings.Join(why, "; "))
	return nil
}

// searchCorpus chunks the corpus, then more synthetic documents, until it has want
// chunks with a sparse vector (and the texts of the first searchTexts), and takes
// query phrases spread over them: nq in the first smallest chunks, as many in each
// as many chunks after.
func searchCorpus(gen *ragGen, corpus []ragDoc, want, smallest, nq int) ([]searchChunk, []string, []searchQuery, error) {
	r := rand.New(rand.NewPCG(7, 8))
	chunks := make([]searchChunk, 0, want)
	var texts []string
	var queries []searchQuery
	every := max(smallest/max(nq, 1), 1)
	add := func(doc int) func(rag.Chunk, vectorstore.Sparse) {
		return func(c rag.Chunk, v vectorstore.Sparse) {
			if len(chunks) >= want || len(v.Indices) == 0 {
				return
			}
			if len(chunks)%every == 0 {
				if text := queryPhrase(r, c.Text[c.OverlapBytes:]); text != "" {
					if q := rag.QueryVector(text); len(q.Indices) > 0 {
						queries = append(queries, searchQuery{q, len(chunks)})
					}
				}
			}
			chunks = append(chunks, searchChunk{v, int32(doc)})
			if len(texts) < searchTexts {
				texts = append(texts, c.Text)
			}
		}
	}
	for i, d := range corpus {
		if _, _, err := textPath(d, add(i)); err != nil {
			return nil, nil, nil, err
		}
	}
	for i := len(corpus); len(chunks) < want; i++ {
		if _, _, err := textPath(gen.doc(i), add(i)); err != nil {
			return nil, nil, nil, err
		}
	}
	return chunks, texts, queries, nil
}

// searchLoad writes n chunks (documents of 1,000) to a scratch database, then times
// what a gateway with the embedded store does as it starts: rag.LoadAll into a new
// store, then the build of its approximate index. It returns the two together.
func searchLoad(chunks []searchChunk, texts []string, n int) (time.Duration, error) {
	ctx := context.Background()
	name, dbURL, err := dbs.create(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = dbs.drop(name) }()
	st, err := store.Open(dbURL, store.Options{Origin: "bench"})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	u, err := st.EnsureUser(ctx, "search")
	if err != nil {
		return 0, err
	}
	kb, err := st.CreateKnowledgeBase(ctx, u.ID, store.NewKnowledgeBase{Name: "search"})
	if err != nil {
		return 0, err
	}
	dense := synth.New(searchDim, 1000, 11)
	const perDoc = 1000
	start := time.Now()
	for lo := 0; lo < n; lo += perDoc {
		sum := sha256.Sum256(fmt.Appendf(nil, "document %d", lo))
		d, err := st.CreateDocument(ctx, u.ID, kb.ID, store.NewDocument{Title: fmt.Sprintf("document %d", lo/perDoc),
			MimeType: "text/markdown", SHA256: sum[:], Bytes: 1})
		if err != nil {
			return 0, err
		}
		ncs := make([]store.NewChunk, 0, perDoc)
		for i := lo; i < min(lo+perDoc, n); i++ {
			c := chunks[i%len(chunks)]
			ncs = append(ncs, store.NewChunk{Ordinal: i - lo, Content: texts[i%len(texts)], TokenCount: 200,
				Dense: dense.Chunk(i), SparseIndices: c.Sparse.Indices, SparseValues: c.Sparse.Values, Analyzer: rag.Analyzer})
		}
		if _, err := st.IndexDocument(ctx, u.ID, kb.ID, d.ID, ncs); err != nil {
			return 0, err
		}
	}
	write := time.Since(start)
	before := liveHeap()
	vs := embedded.New()
	defer vs.Close()
	start = time.Now()
	_, loaded, err := rag.LoadAll(ctx, st, vs)
	if err != nil {
		return 0, err
	}
	load := time.Since(start)
	vs.Wait()
	all := time.Since(start)
	heap := liveHeap() - before
	fmt.Printf("start-up with %d chunks in Postgres (written in %s): rag.LoadAll %s, then the approximate index built in %s: %s in all; index heap %.0f MB (%.0f B a chunk)\n",
		loaded, write.Round(time.Second), load.Round(time.Millisecond), (all - load).Round(time.Millisecond), all.Round(time.Millisecond),
		float64(heap)/mb, float64(heap)/float64(loaded))
	return all, nil
}

// searchResult is one arm's figures.
type searchResult struct {
	lat          []time.Duration
	heap         uint64
	upsert       time.Duration
	build        time.Duration
	recall       float64 // approximate arm only: dense-only top 10
	hybridRecall float64 // approximate arm only: hybrid top 10
	longRecall   float64 // the same, of the questions of more than searchLongQuery terms
}

// searchSize runs the three arms over chunks, with the queries taken from them.
func searchSize(chunks []searchChunk, all []searchQuery, n int) ([3]searchResult, error) {
	var res [3]searchResult
	var below []searchQuery
	for _, q := range all {
		if q.Chunk < n {
			below = append(below, q)
		}
	}
	var qs []searchQuery // *searchQueries of them, spread over the n chunks
	for i := range min(len(below), *searchQueries) {
		qs = append(qs, below[i*len(below)/min(len(below), *searchQueries)])
	}
	dense := synth.New(searchDim, 1000, 11)
	qdense := make([][]float32, len(qs))
	for i, q := range qs {
		qdense[i] = dense.Near(q.Chunk / synth.ChunksPerDoc)
	}
	ctx := context.Background()
	names := []string{"sparse-only", "hybrid, exact dense", "hybrid, approximate dense"}
	var exactTop, exactHybrid [][]string // dense-only and hybrid top 10 of the exact arm
	for arm := range 3 {
		r := &res[arm]
		before := liveHeap()
		var opts []embedded.Option
		if arm < 2 {
			opts = append(opts, embedded.Exact())
		}
		s := embedded.New(opts...)
		start := time.Now()
		const batch = 1000
		for lo := 0; lo < n; lo += batch {
			pts := make([]vectorstore.Point, 0, batch)
			for i := lo; i < min(lo+batch, n); i++ {
				p := vectorstore.Point{ChunkID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i), KBID: "kb",
					DocumentID: fmt.Sprintf("doc-%d", chunks[i].Doc), Sparse: chunks[i].Sparse}
				if arm > 0 {
					p.Dense = dense.Chunk(i)
				}
				pts = append(pts, p)
			}
			if err := s.Upsert(ctx, pts); err != nil {
				return res, err
			}
		}
		r.upsert = time.Since(start)
		start = time.Now()
		s.Wait()
		r.build = time.Since(start)
		r.heap = liveHeap() - before
		query := func(i int) vectorstore.Query {
			q := vectorstore.Query{KBID: "kb", TopK: searchTopK, Sparse: qs[i].Sparse}
			if arm > 0 {
				q.Dense = qdense[i]
			}
			return q
		}
		for i := range min(200, len(qs)) { // warm up
			if _, err := s.Search(ctx, query(i)); err != nil {
				return res, err
			}
		}
		for i := range qs {
			q := query(i)
			start := time.Now()
			_, err := s.Search(ctx, q)
			r.lat = append(r.lat, time.Since(start))
			if err != nil {
				return res, err
			}
		}
		if arm > 0 {
			var err error
			dense := func(i int) vectorstore.Query { return vectorstore.Query{KBID: "kb", TopK: 10, Dense: qdense[i]} }
			hybrid := func(i int) vectorstore.Query { q := query(i); q.TopK = 10; return q }
			long := func(i int) bool { return len(qs[i].Sparse.Indices) > searchLongQuery }
			if r.recall, _, err = searchRecall(ctx, s, len(qs), dense, &exactTop, long); err != nil {
				return res, err
			}
			if r.hybridRecall, r.longRecall, err = searchRecall(ctx, s, len(qs), hybrid, &exactHybrid, long); err != nil {
				return res, err
			}
		}
		recall, build := "", ""
		if arm == 2 {
			recall = fmt.Sprintf("%.3f", r.recall)
			build = r.build.Round(time.Millisecond).String()
		}
		fmt.Printf("%-34s %9s %9s %9s %9.0f MB %10s %12s %8s\n", fmt.Sprintf("%d: %s", n, names[arm]),
			ms(pct(r.lat, 50)), ms(pct(r.lat, 99)), ms(slices.Max(r.lat)), float64(r.heap)/mb, r.upsert.Round(time.Millisecond), build, recall)
		if arm == 2 {
			fmt.Printf("    hybrid recall@10 against the exact arm's hybrid top 10: %.3f (questions of more than %d terms: %.3f)\n", r.hybridRecall, searchLongQuery, r.longRecall)
		}
		if arm != 1 {
			searchByLength(qs, r.lat)
		}
		s.Close()
		runtime.GC()
	}
	return res, nil
}

// searchRecall runs query(i) for i < n on s. The first time (the exact arm) it keeps
// each top's ids in *exact and returns 1s; then it returns the share of those the
// tops hold, of all the questions and of those long picks.
func searchRecall(ctx context.Context, s vectorstore.Store, n int, query func(i int) vectorstore.Query, exact *[][]string, long func(i int) bool) (float64, float64, error) {
	first := *exact == nil
	var found, want [2]int
	for i := range n {
		hits, err := s.Search(ctx, query(i))
		if err != nil {
			return 0, 0, err
		}
		ids := make([]string, len(hits))
		for j, h := range hits {
			ids[j] = h.ChunkID
		}
		if first {
			*exact = append(*exact, ids)
			continue
		}
		for _, id := range (*exact)[i] {
			in := 0
			if slices.Contains(ids, id) {
				in = 1
			}
			want[0]++
			found[0] += in
			if long(i) {
				want[1]++
				found[1] += in
			}
		}
	}
	if first {
		return 1, 1, nil
	}
	return float64(found[0]) / float64(max(want[0], 1)), float64(found[1]) / float64(max(want[1], 1)), nil
}

// searchLongQuery is the number of terms from which searchByLength counts a question
// as long: whole paragraphs (a Chinese paragraph has no spaces, so the phrase picker
// takes it as one word) rather than phrases.
const searchLongQuery = 32

// searchByLength prints the p50/p99 of the phrase-length questions and of the long
// ones apart (lat: by question).
func searchByLength(qs []searchQuery, lat []time.Duration) {
	var short, long []time.Duration
	most := 0
	for i, q := range qs {
		most = max(most, len(q.Sparse.Indices))
		if len(q.Sparse.Indices) > searchLongQuery {
			long = append(long, lat[i])
		} else {
			short = append(short, lat[i])
		}
	}
	line := fmt.Sprintf("    questions of ≤ %d terms (%d): p50 %s, p99 %s", searchLongQuery, len(short), ms(pct(short, 50)), ms(pct(short, 99)))
	if len(long) > 0 {
		line += fmt.Sprintf("; longer (%d, up to %d terms): p50 %s, p99 %s", len(long), most, ms(pct(long, 50)), ms(pct(long, 99)))
	}
	fmt.Println(line)
}
