package embedded

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/embedded/synth"
)

func chunkID(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", i) }

// synthPoints are n chunks of the synth corpus c, numbered from first.
func synthPoints(c *synth.Corpus, first, n int) []vectorstore.Point {
	pts := make([]vectorstore.Point, n)
	for i := range pts {
		id := first + i
		pts[i] = vectorstore.Point{ChunkID: chunkID(id), KBID: "kb",
			DocumentID: fmt.Sprintf("doc-%d", id/synth.ChunksPerDoc), Dense: c.Chunk(id)}
	}
	return pts
}

// exact searches k without its approximate index.
func exact(s *Store, q vectorstore.Query) []vectorstore.Hit {
	s.mu.Lock()
	k := s.kbs[q.KBID]
	ann := k.ann
	k.ann = nil
	s.mu.Unlock()
	defer func() { s.mu.Lock(); k.ann = ann; s.mu.Unlock() }()
	hits, _ := s.Search(context.Background(), q)
	return hits
}

// recall is the share of exact's top hits that the store's search returns too.
func recall(t *testing.T, s *Store, qs []vectorstore.Query) float64 {
	t.Helper()
	found, want := 0, 0
	for _, q := range qs {
		got, err := s.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		in := map[string]bool{}
		for _, h := range got {
			in[h.ChunkID] = true
		}
		for _, h := range exact(s, q) {
			want++
			if in[h.ChunkID] {
				found++
			}
		}
	}
	return float64(found) / float64(want)
}

// checkIndex checks that every dense row is in exactly the list listOf names.
func checkIndex(t *testing.T, s *Store, kbID string) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	k := s.kbs[kbID]
	if k.ann == nil {
		t.Fatalf("%s: no approximate index with %d dense rows", kbID, len(k.denseSlot))
	}
	x := k.ann
	if len(x.listOf) != len(k.denseSlot) {
		t.Fatalf("index covers %d rows of %d", len(x.listOf), len(k.denseSlot))
	}
	seen := make([]bool, len(k.denseSlot))
	for c, rows := range x.lists {
		if cs := x.codes[c]; len(cs.q) != len(rows)*x.cdim || len(cs.scale) != len(rows) {
			t.Fatalf("list %d: %d rows, %d bytes of codes and %d scales", c, len(rows), len(cs.q), len(cs.scale))
		}
		for i, r := range rows {
			if seen[r] || x.listOf[r] != int32(c) {
				t.Fatalf("row %d in list %d (listOf %d, seen before %v)", r, c, x.listOf[r], seen[r])
			}
			seen[r] = true
			code := make([]int8, x.cdim)
			scale := quantise(code, k.row(int(r)))
			if cs := x.codes[c]; !slices.Equal(cs.q[i*x.cdim:(i+1)*x.cdim], code) || cs.scale[i] != scale {
				t.Fatalf("list %d: the code of row %d is not the row's", c, r)
			}
		}
	}
	for r, ok := range seen {
		if !ok {
			t.Fatalf("row %d in no list", r)
		}
	}
}

// TestANNRecall: above annMinRows the store builds its index in the background and
// its top 10 (and the prefetch depth of a hybrid search) match exact search's.
func TestANNRecall(t *testing.T) {
	c := synth.New(384, 100, 3)
	s := New()
	const n = 60_000
	for i := 0; i < n; i += 5000 {
		if err := s.Upsert(context.Background(), synthPoints(c, i, 5000)); err != nil {
			t.Fatal(err)
		}
	}
	s.Wait()
	checkIndex(t, s, "kb")
	r := rand.New(rand.NewPCG(5, 6))
	for _, topK := range []int{10, vectorstore.PrefetchLimit(10)} {
		var qs []vectorstore.Query
		for range 200 {
			qs = append(qs, vectorstore.Query{KBID: "kb", TopK: topK, Dense: c.Near(r.IntN(n / synth.ChunksPerDoc))})
		}
		if got, want := recall(t, s, qs), map[bool]float64{true: 0.98, false: 0.97}[topK == 10]; got < want {
			t.Errorf("recall@%d %.3f, want ≥ %.2f", topK, got, want)
		} else {
			t.Logf("recall@%d %.3f", topK, got)
		}
	}
}

// TestANNUnderChange: replacements, deletes and compactions while builds run and
// searches go on: every hit is a live chunk with its current vector's score, filters
// hold, and the index covers every row once all is done.
func TestANNUnderChange(t *testing.T) {
	defer func(n int) { annMinRows = n }(annMinRows)
	annMinRows = 300
	c := synth.New(32, 20, 4)
	s := New()
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	live := map[string][]float32{} // chunk → its vector
	docOf := map[string]string{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Searches racing the writes (-race checks the snapshot reads of the builds).
	wg.Go(func() {
		qr := rand.New(rand.NewPCG(9, 10))
		for {
			select {
			case <-stop:
				return
			default:
			}
			q := vectorstore.Query{KBID: "kb", TopK: 10, Dense: c.Near(qr.IntN(200))}
			if qr.IntN(3) == 0 {
				q.DocumentIDs = []string{fmt.Sprintf("doc-%d", qr.IntN(200)), fmt.Sprintf("doc-%d", qr.IntN(200))}
			}
			if _, err := s.Search(ctx, q); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for step := range 300 {
		switch op := r.IntN(10); {
		case op < 7:
			var batch []vectorstore.Point
			for range 1 + r.IntN(60) {
				id := r.IntN(4000)
				p := vectorstore.Point{ChunkID: chunkID(id), KBID: "kb", DocumentID: fmt.Sprintf("doc-%d", id/synth.ChunksPerDoc), Dense: c.Chunk(id)}
				batch = append(batch, p)
				mu.Lock()
				live[p.ChunkID] = normalised(p.Dense)
				docOf[p.ChunkID] = p.DocumentID
				mu.Unlock()
			}
			if err := s.Upsert(ctx, batch); err != nil {
				t.Fatal(err)
			}
		default:
			doc := fmt.Sprintf("doc-%d", r.IntN(200))
			if err := s.DeleteDocument(ctx, "kb", doc); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			for id, d := range docOf {
				if d == doc {
					delete(live, id)
					delete(docOf, id)
				}
			}
			mu.Unlock()
		}
		if step%20 == 0 {
			s.Wait()
		}
		for range 3 {
			q := vectorstore.Query{KBID: "kb", TopK: 10, Dense: c.Near(r.IntN(200))}
			filter := r.IntN(2) == 0
			if filter {
				for range 1 + r.IntN(150) {
					q.DocumentIDs = append(q.DocumentIDs, fmt.Sprintf("doc-%d", r.IntN(200)))
				}
			}
			hits, err := s.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			allowed := map[string]bool{}
			for _, d := range q.DocumentIDs {
				allowed[d] = true
			}
			for _, h := range hits {
				v, ok := live[h.ChunkID]
				if !ok {
					t.Fatalf("step %d: hit %s is not live", step, h.ChunkID)
				}
				if docOf[h.ChunkID] != h.DocumentID || filter && !allowed[h.DocumentID] {
					t.Fatalf("step %d: hit %+v: document %s, filter %v", step, h, docOf[h.ChunkID], q.DocumentIDs)
				}
				if d := float64(dotGo(normalised(q.Dense), v)); d-h.Score > 1e-4 || h.Score-d > 1e-4 {
					t.Fatalf("step %d: hit %s score %v, its vector's %v", step, h.ChunkID, h.Score, d)
				}
			}
		}
	}
	close(stop)
	wg.Wait()
	s.Wait()
	if len(live) >= annMinRows {
		checkIndex(t, s, "kb")
	}
	if s.kbs["kb"].gen == 0 {
		t.Error("no compaction happened: the test does not exercise renumbering")
	}
}

// TestANNDroppedWithKB: a build finishing after its knowledge base was deleted (or
// the store closed) installs nothing.
func TestANNDroppedWithKB(t *testing.T) {
	defer func(n int) { annMinRows = n }(annMinRows)
	annMinRows = 100
	c := synth.New(16, 4, 5)
	s := New()
	ctx := context.Background()
	if err := s.Upsert(ctx, synthPoints(c, 0, 200)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKB(ctx, "kb"); err != nil {
		t.Fatal(err)
	}
	s.Wait()
	if len(s.kbs) != 0 {
		t.Fatalf("knowledge bases after DeleteKB: %d", len(s.kbs))
	}
	if err := s.Upsert(ctx, synthPoints(c, 0, 200)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.Wait()
}

func TestDotMatchesLoop(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{1, 3, 7, 8, 9, 31, 384, 385} {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		if d, g := dot(a, b), dotGo(a, b); d-g > 1e-4 || g-d > 1e-4 {
			t.Errorf("n=%d: dot %v, loop %v", n, d, g)
		}
	}
}

// TestANNBulkLoadBuildsOnce: rows written in a stream are not indexed until the
// writes stop (each build would be outgrown at once), then the index is built once;
// rows added after it are found at once (scanned exactly until assigned).
func TestANNBulkLoadBuildsOnce(t *testing.T) {
	defer func(n int, q time.Duration) { annMinRows, annQuiet = n, q }(annMinRows, annQuiet)
	annMinRows = 1000
	annQuiet = 5 * time.Second // far longer than an upsert of 500 rows takes, even under -race
	c := synth.New(32, 20, 6)
	s := New()
	ctx := context.Background()
	for i := 0; i < 20_000; i += 500 {
		if err := s.Upsert(ctx, synthPoints(c, i, 500)); err != nil {
			t.Fatal(err)
		}
		s.mu.RLock()
		built := s.kbs["kb"].builds
		s.mu.RUnlock()
		if built != 0 {
			t.Fatalf("an index was built while rows were streaming in (%d rows)", i+500)
		}
	}
	s.Wait()
	checkIndex(t, s, "kb")
	if b := s.kbs["kb"].builds; b != 1 {
		t.Fatalf("%d builds after the load, want 1", b)
	}
	// New rows: the nearest to a query, found before any assignment.
	q := c.Near(3)
	var pts []vectorstore.Point
	for i := range 5 {
		pts = append(pts, vectorstore.Point{ChunkID: chunkID(100_000 + i), KBID: "kb", DocumentID: "new", Dense: q})
	}
	if err := s.Upsert(ctx, pts); err != nil {
		t.Fatal(err)
	}
	hits, err := s.Search(ctx, vectorstore.Query{KBID: "kb", TopK: 5, Dense: q})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		if h.DocumentID != "new" {
			t.Fatalf("hits %+v: want the 5 rows just added", hits)
		}
	}
	s.Wait()
	checkIndex(t, s, "kb")
}

// TestTinyVectorNormalised: a vector of denormal components is stored as a unit
// vector, not as Inf/NaN (its inverse norm overflows float32).
func TestTinyVectorNormalised(t *testing.T) {
	v := normalised([]float32{1e-40, 1e-40, 1e-40})
	if d := dotGo(v, v); math.IsNaN(float64(d)) || math.Abs(float64(d)-1) > 1e-3 {
		t.Fatalf("normalised tiny vector %v: |v|² = %v", v, d)
	}
}

// TestGroupsHaveMembers: centroids that are copies of a few vectors (a knowledge base
// of near-identical chunks) leave k-means groups empty; no group is kept empty, and
// every row finds a centroid.
func TestGroupsHaveMembers(t *testing.T) {
	const dim = 32
	r := rand.New(rand.NewPCG(11, 12))
	distinct := make([][]float32, 3)
	for i := range distinct {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		distinct[i] = normalised(v)
	}
	var cents []float32
	for i := range 400 {
		cents = append(cents, distinct[i%len(distinct)]...)
	}
	cdim := codeDim(dim)
	cc := codesOf(cents, dim, cdim)
	g := newGroups(cents, dim, cdim, 1)
	for i, m := range g.members {
		if len(m) == 0 {
			t.Fatalf("group %d of %d has no centroid", i, len(g.members))
		}
	}
	code := make([]int8, cdim)
	for range 200 {
		v := make([]float32, dim)
		for j := range v {
			v[j] = float32(r.NormFloat64())
		}
		quantise(code, normalised(v))
		if c := g.nearest(code, cc, cdim); c < 0 || int(c) >= 400 {
			t.Fatalf("nearest centroid %d", c)
		}
	}
}

// TestGroupsNearestFallsBack: when the groups nearest a row have no centroid (groups
// made by hand: newGroups keeps none empty), the row is still given its nearest.
func TestGroupsNearestFallsBack(t *testing.T) {
	const dim = 32
	cdim := codeDim(dim)
	axis := func(i int) []float32 {
		v := make([]float32, dim)
		v[i] = 1
		return v
	}
	cents := append(axis(0), axis(1)...)
	var centres []float32
	members := make([][]int32, groupProbe+1)
	for i := range groupProbe + 1 {
		centres = append(centres, axis(2+i)...)
	}
	members[groupProbe] = []int32{0, 1} // the farthest group holds both centroids
	g := &groups{centres: centres, cc: codesOf(centres, dim, cdim), members: members}
	code := make([]int8, cdim)
	v := axis(1)
	for i := range groupProbe {
		v[2+i] = 0.5 // nearer the empty groups' centres
	}
	quantise(code, normalised(v))
	if c := g.nearest(code, codesOf(cents, dim, cdim), cdim); c != 1 {
		t.Fatalf("nearest centroid %d, want 1", c)
	}
}

// TestANNWorkStopsWithKB: index work waiting its turn when its knowledge base is
// deleted does not run, and a build stops between rounds once told to.
func TestANNWorkStopsWithKB(t *testing.T) {
	defer func(n int, q time.Duration) { annMinRows, annQuiet = n, q }(annMinRows, annQuiet)
	annMinRows, annQuiet = 100, 0
	c := synth.New(16, 4, 5)
	s := New()
	ctx := context.Background()
	s.work <- struct{}{} // the worker is busy: the build waits its turn
	if err := s.Upsert(ctx, synthPoints(c, 0, 200)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteKB(ctx, "kb"); err != nil {
		t.Fatal(err)
	}
	<-s.work
	s.Wait()
	if s.stopped != 1 {
		t.Fatalf("index work given up: %d, want 1", s.stopped)
	}

	dense := slab{dim: 16}
	for i := range 300 {
		dense.append(normalised(c.Chunk(i)))
	}
	calls := 0
	if x := buildIVF(dense, 1, func() bool { calls++; return calls > 2 }); x != nil {
		t.Fatal("a build told to stop after two rounds completed")
	}
	if x := buildIVF(dense, 1, func() bool { return false }); x == nil || x.covered() != 300 {
		t.Fatal("a build never told to stop did not complete")
	}
}

// TestHybridSparseApprox: the sparse side of a hybrid search whose dense side goes
// through the approximate index is approximate (sparseApprox); a sparse-only search,
// a hybrid one whose document filter makes the dense side exact, and a hybrid one in
// a store that searches exactly, are not. Point 0 scores best on the query's common
// term alone; the budget reads only the rare term's postings, which it lacks.
func TestHybridSparseApprox(t *testing.T) {
	defer func(n int, q time.Duration, from, b, cost int) {
		annMinRows, annQuiet, sparseApproxFrom, sparseBudget, rescoreCost = n, q, from, b, cost
	}(annMinRows, annQuiet, sparseApproxFrom, sparseBudget, rescoreCost)
	annMinRows, annQuiet, sparseApproxFrom, sparseBudget, rescoreCost = 100, 0, 40, 40, 0
	c := synth.New(16, 4, 5)
	var pts []vectorstore.Point
	for i := range 400 {
		p := vectorstore.Point{ChunkID: chunkID(i), KBID: "kb", DocumentID: fmt.Sprintf("doc-%d", i/10), Dense: c.Chunk(i)}
		switch {
		case i == 0:
			p.Sparse = vectorstore.Sparse{Indices: []uint32{1}, Values: []float32{20}}
		case i <= 30: // the rare term: 30 postings, within the budget
			p.Sparse = vectorstore.Sparse{Indices: []uint32{1, 2}, Values: []float32{1, 1}}
		case i%2 == 0:
			p.Sparse = vectorstore.Sparse{Indices: []uint32{1}, Values: []float32{1}}
		default:
			p.Sparse = vectorstore.Sparse{Indices: []uint32{3}, Values: []float32{1}}
		}
		pts = append(pts, p)
	}
	far := slices.Clone(c.Chunk(0))
	for i := range far {
		far[i] = -far[i]
	}
	sparse := vectorstore.Sparse{Indices: []uint32{1, 2}, Values: []float32{1, 1}}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		opts   []Option
		dense  []float32
		filter []string
		exact  bool // else: every hit holds the rare term (points 1 to 30)
	}{
		{"hybrid over the index", nil, far, nil, false},
		{"hybrid over the index, half the documents", nil, far, docs(0, 20), false},
		{"sparse only", nil, nil, nil, true},
		{"hybrid, a few documents (dense side exact)", nil, far, docs(0, 4), true},
		{"hybrid, exact store", []Option{Exact()}, far, nil, true},
	} {
		s := New(tc.opts...)
		if err := s.Upsert(ctx, pts); err != nil {
			t.Fatal(err)
		}
		s.Wait()
		if indexed := s.kbs["kb"].ann != nil; indexed != (tc.opts == nil) {
			t.Fatalf("%s: approximate index built: %v", tc.name, indexed)
		}
		hits, err := s.Search(ctx, vectorstore.Query{KBID: "kb", TopK: 3, Dense: tc.dense, Sparse: sparse, DocumentIDs: tc.filter,
			Fusion: vectorstore.Fusion{Method: vectorstore.FusionWeighted, DenseWeight: 0.01}})
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != 3 {
			t.Fatalf("%s: %d hits, want 3", tc.name, len(hits))
		}
		for i, h := range hits {
			var n int
			fmt.Sscanf(h.ChunkID[24:], "%x", &n)
			if tc.exact && i == 0 && n != 0 {
				t.Errorf("%s: first hit point %d, want point 0 (hits %+v)", tc.name, n, hits)
			}
			if !tc.exact && (n < 1 || n > 30) {
				t.Errorf("%s: hit %d is point %d, want one holding the rare term (hits %+v)", tc.name, i, n, hits)
			}
		}
		s.Close()
	}
}

// docs names the documents doc-from to doc-(to−1).
func docs(from, to int) []string {
	var out []string
	for d := from; d < to; d++ {
		out = append(out, fmt.Sprintf("doc-%d", d))
	}
	return out
}
