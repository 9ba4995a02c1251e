package embedded

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/ragway/ragway/gateway/vectorstore"
)

// refSparse and refDense define search results by brute force.
func refSparse(pts map[string]vectorstore.Point, kb string, q vectorstore.Sparse) map[string]float64 {
	var n int
	df := map[uint32]int{}
	for _, p := range pts {
		if p.KBID != kb || len(p.Sparse.Indices) == 0 {
			continue
		}
		n++
		for _, t := range p.Sparse.Indices {
			df[t]++
		}
	}
	out := map[string]float64{}
	for id, p := range pts {
		if p.KBID != kb {
			continue
		}
		var score float64
		match := false
		for i, t := range p.Sparse.Indices {
			if j, ok := slices.BinarySearch(q.Indices, t); ok {
				match = true
				score += float64(q.Values[j]) * vectorstore.IDF(n, df[t]) * float64(p.Sparse.Values[i])
			}
		}
		if match {
			out[id] = score
		}
	}
	return out
}

func refDense(pts map[string]vectorstore.Point, kb string, q []float32) map[string]float64 {
	out := map[string]float64{}
	for id, p := range pts {
		if p.KBID != kb || p.Dense == nil {
			continue
		}
		var d, na, nb float64
		for i := range q {
			d += float64(q[i]) * float64(p.Dense[i])
			na += float64(q[i]) * float64(q[i])
			nb += float64(p.Dense[i]) * float64(p.Dense[i])
		}
		out[id] = d / math.Sqrt(na*nb)
	}
	return out
}

// TestAgainstReference applies random upserts and deletes (enough to force
// compactions) and checks every search against brute force.
func TestAgainstReference(t *testing.T) {
	defer func(w int) { parallelDenseWork = w }(parallelDenseWork)
	parallelDenseWork = 16 // exercise the parallel dense scan too

	const dim = 4
	r := rand.New(rand.NewPCG(7, 8))
	s := New()
	ctx := context.Background()
	ref := map[string]vectorstore.Point{}
	kbs := []string{"kb-0", "kb-1"}
	randPoint := func() vectorstore.Point {
		p := vectorstore.Point{
			ChunkID:    chunkID(r.IntN(80)),
			DocumentID: fmt.Sprintf("doc-%d", r.IntN(6)),
		}
		// A chunk stays in one knowledge base.
		if old, ok := ref[p.ChunkID]; ok {
			p.KBID = old.KBID
		} else {
			p.KBID = kbs[r.IntN(2)]
		}
		if r.IntN(4) > 0 {
			p.Dense = make([]float32, dim)
			for i := range p.Dense {
				p.Dense[i] = float32(r.NormFloat64())
			}
		}
		m := map[uint32]float32{}
		for range r.IntN(5) {
			m[uint32(r.IntN(12))] = float32(1 + r.IntN(3))
		}
		for t := range m {
			p.Sparse.Indices = append(p.Sparse.Indices, t)
		}
		slices.Sort(p.Sparse.Indices)
		for _, t := range p.Sparse.Indices {
			p.Sparse.Values = append(p.Sparse.Values, m[t])
		}
		return p
	}
	check := func(step int) {
		t.Helper()
		for _, kb := range kbs {
			q := vectorstore.Query{KBID: kb, TopK: 1000, Sparse: vectorstore.Sparse{
				Indices: []uint32{uint32(r.IntN(6)), uint32(6 + r.IntN(6))}, Values: []float32{1, 2}}}
			compare(t, fmt.Sprintf("step %d %s sparse", step, kb), s, q, refSparse(ref, kb, q.Sparse))
			q = vectorstore.Query{KBID: kb, TopK: 1000, Dense: []float32{1, -1, 0.5, 2}}
			compare(t, fmt.Sprintf("step %d %s dense", step, kb), s, q, refDense(ref, kb, q.Dense))
		}
	}
	for step := range 400 {
		switch op := r.IntN(20); {
		case op < 14:
			var batch []vectorstore.Point
			for range 1 + r.IntN(4) {
				p := randPoint()
				batch = append(batch, p)
				ref[p.ChunkID] = p
			}
			if err := s.Upsert(ctx, batch); err != nil {
				t.Fatalf("step %d: Upsert: %v", step, err)
			}
		case op < 19:
			kb, doc := kbs[r.IntN(2)], fmt.Sprintf("doc-%d", r.IntN(6))
			if err := s.DeleteDocument(ctx, kb, doc); err != nil {
				t.Fatalf("step %d: DeleteDocument: %v", step, err)
			}
			for id, p := range ref {
				if p.KBID == kb && p.DocumentID == doc {
					delete(ref, id)
				}
			}
		default:
			kb := kbs[r.IntN(2)]
			if err := s.DeleteKB(ctx, kb); err != nil {
				t.Fatalf("step %d: DeleteKB: %v", step, err)
			}
			for id, p := range ref {
				if p.KBID == kb {
					delete(ref, id)
				}
			}
		}
		check(step)
	}
}

func compare(t *testing.T, what string, s *Store, q vectorstore.Query, want map[string]float64) {
	t.Helper()
	hits, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(hits) != len(want) {
		t.Fatalf("%s: %d hits, want %d", what, len(hits), len(want))
	}
	for i, h := range hits {
		w, ok := want[h.ChunkID]
		if !ok || math.Abs(h.Score-w) > 1e-4*math.Max(1, math.Abs(w)) {
			t.Fatalf("%s: hit %+v, want score %v (present %v)", what, h, w, ok)
		}
		if i > 0 && (h.Score > hits[i-1].Score || h.Score == hits[i-1].Score && h.ChunkID < hits[i-1].ChunkID) {
			t.Fatalf("%s: hits out of order at %d: %+v", what, i, hits)
		}
	}
}

func TestCompactionReclaimsSlots(t *testing.T) {
	s := New()
	ctx := context.Background()
	for round := range 10 {
		var batch []vectorstore.Point
		for i := range 100 {
			batch = append(batch, vectorstore.Point{
				ChunkID: chunkID(i), KBID: "kb", DocumentID: "d",
				Dense: []float32{1, float32(round)}, Sparse: vectorstore.Sparse{Indices: []uint32{uint32(round)}, Values: []float32{1}},
			})
		}
		if err := s.Upsert(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	k := s.kbs["kb"]
	if len(k.ids) > 134 || len(k.denseSlot) > 134 {
		t.Errorf("after 1000 upserts of 100 chunks: %d slots, %d dense rows; want ≤ 134 (≤ 25%% dead)", len(k.ids), len(k.denseSlot))
	}
	if len(k.post) != 1 {
		t.Errorf("%d posting lists, want 1 (stale terms dropped)", len(k.post))
	}
}

func TestClosedAndCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := New()
	q := vectorstore.Query{KBID: "kb", Sparse: vectorstore.Sparse{Indices: []uint32{1}, Values: []float32{1}}, TopK: 1}
	if _, err := s.Search(ctx, q); !errors.Is(err, context.Canceled) {
		t.Errorf("Search with cancelled ctx: %v", err)
	}
	if err := s.Upsert(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Upsert with cancelled ctx: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx = context.Background()
	if _, err := s.Search(ctx, q); !errors.Is(err, vectorstore.ErrClosed) {
		t.Errorf("Search after Close: %v", err)
	}
	if err := s.Upsert(ctx, nil); !errors.Is(err, vectorstore.ErrClosed) {
		t.Errorf("Upsert after Close: %v", err)
	}
	if err := s.DeleteDocument(ctx, "kb", "d"); !errors.Is(err, vectorstore.ErrClosed) {
		t.Errorf("DeleteDocument after Close: %v", err)
	}
	if err := s.DeleteKB(ctx, "kb"); !errors.Is(err, vectorstore.ErrClosed) {
		t.Errorf("DeleteKB after Close: %v", err)
	}
}

// sparseMode takes one path of searchSparse.
type sparseMode struct {
	name            string
	share, parallel int  // sparseDenseShare, parallelSparseWork
	bySlot          bool // bySlotScan
}

// sparseModes are every path of searchSparse: the list of touched slots, the whole
// accumulator in one range, and in parallel ranges, with the weights by slot of
// common terms (where a test built them) or their postings.
var sparseModes = []sparseMode{
	{"touched", 0, 1 << 30, false},
	{"one range", 1 << 30, 1 << 30, false},
	{"parallel ranges", 1 << 30, 1, false},
	{"one range, by slot", 1 << 30, 1 << 30, true},
	{"parallel ranges, by slot", 1 << 30, 1, true},
}

// set sets the variables of m until the test ends.
func (m sparseMode) set(t *testing.T) {
	share, parallel, bySlot := sparseDenseShare, parallelSparseWork, bySlotScan
	sparseDenseShare, parallelSparseWork, bySlotScan = m.share, m.parallel, m.bySlot
	t.Cleanup(func() { sparseDenseShare, parallelSparseWork, bySlotScan = share, parallel, bySlot })
}

// searchEveryPath runs the sparse query q on every path of searchSparse, fails the
// test unless each gives the very same hits (the same sums in the same order), and
// returns them.
func searchEveryPath(t *testing.T, s *Store, q vectorstore.Query) []vectorstore.Hit {
	t.Helper()
	var first []vectorstore.Hit
	for i, m := range sparseModes {
		m.set(t)
		hits, err := s.Search(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = hits
		} else if !slices.Equal(hits, first) {
			t.Fatalf("%s: %d hits, differing from the %s path's %d", m.name, len(hits), sparseModes[0].name, len(first))
		}
	}
	return first
}

// buildBySlot makes common terms keep their weights by slot in stores built until
// the test ends, whatever their size.
func buildBySlot(t *testing.T) {
	old := bySlotMin
	bySlotMin = 0
	t.Cleanup(func() { bySlotMin = old })
}

// TestSparseTopK: a sparse search of a few hits returns exactly the top hits of brute
// force over Zipf-distributed terms, with document filters, after deletes (and the
// compaction they cause), and with a negative weight, on every path of searchSparse.
func TestSparseTopK(t *testing.T) {
	buildBySlot(t)
	c := makeBenchCorpus(4000, 0)
	s := New()
	ctx := context.Background()
	ref := map[string]vectorstore.Point{}
	for _, p := range c.points {
		ref[p.ChunkID] = p
	}
	if err := s.Upsert(ctx, c.points); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		t.Helper()
		r := rand.New(rand.NewPCG(3, 4))
		for qi, q := range c.queries[:150] {
			q.TopK = []int{1, 5, 20}[qi%3]
			if qi%5 == 0 {
				for range 3 + r.IntN(60) {
					q.DocumentIDs = append(q.DocumentIDs, fmt.Sprintf("doc-%d", r.IntN(200)))
				}
			}
			allowed := map[string]bool{}
			for _, d := range q.DocumentIDs {
				allowed[d] = true
			}
			scores := refSparse(ref, "kb", q.Sparse)
			type sc struct {
				id    string
				score float64
			}
			var want []sc
			for id, v := range scores {
				if len(allowed) == 0 || allowed[ref[id].DocumentID] {
					want = append(want, sc{id, v})
				}
			}
			slices.SortFunc(want, func(a, b sc) int {
				if a.score != b.score {
					return cmp.Compare(b.score, a.score)
				}
				return cmp.Compare(a.id, b.id)
			})
			want = want[:min(len(want), q.TopK)]
			hits := searchEveryPath(t, s, q)
			if len(hits) != len(want) {
				t.Fatalf("%s: query %d: %d hits, want %d", what, qi, len(hits), len(want))
			}
			for i, h := range hits {
				if math.Abs(h.Score-want[i].score) > 1e-4 || math.Abs(h.Score-scores[h.ChunkID]) > 1e-4 {
					t.Fatalf("%s: query %d: hit %d %+v, want %+v (its own score %v)", what, qi, i, h, want[i], scores[h.ChunkID])
				}
			}
		}
	}
	check("top")
	for d := range 60 {
		doc := fmt.Sprintf("doc-%d", d*3)
		if err := s.DeleteDocument(ctx, "kb", doc); err != nil {
			t.Fatal(err)
		}
		for id, p := range ref {
			if p.DocumentID == doc {
				delete(ref, id)
			}
		}
	}
	check("after deletes")
	// A negative weight in a common term's postings.
	p := c.points[1]
	p.Sparse.Values = slices.Clone(p.Sparse.Values)
	p.Sparse.Values[0] = -3
	ref[p.ChunkID] = p
	if err := s.Upsert(ctx, []vectorstore.Point{p}); err != nil {
		t.Fatal(err)
	}
	check("negative weight")
}

// TestIDKeysOrderAsIDs checks that chunk ids' keys compare as the ids do.
func TestIDKeysOrderAsIDs(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	const hex = "0123456789abcdef"
	id := func() string {
		b := []byte("00000000-0000-4000-8000-000000000000")
		for i := range b {
			if b[i] != '-' && r.IntN(3) > 0 { // some digits left 0: long common prefixes
				b[i] = hex[r.IntN(16)]
			}
		}
		return string(b)
	}
	for range 20000 {
		a, b := id(), id()
		if r.IntN(4) == 0 { // a common prefix
			p := r.IntN(37)
			b = a[:p] + b[p:]
		}
		if got, want := keyOf(a).less(keyOf(b)), a < b; got != want {
			t.Fatalf("%s < %s: keys say %v", a, b, got)
		}
		if keyOf(a) == keyOf(b) != (a == b) {
			t.Fatalf("%s, %s: equal keys %v", a, b, keyOf(a) == keyOf(b))
		}
	}
}

// TestSparseFewTouched: a query that touches fewer slots than it asks hits for gets
// those slots only (not untouched slots scoring zero), whatever the sign of its
// weights, on every path of searchSparse.
func TestSparseFewTouched(t *testing.T) {
	s := New()
	ctx := context.Background()
	var pts []vectorstore.Point
	for i := range 300 {
		sp := vectorstore.Sparse{Indices: []uint32{1, 2}, Values: []float32{1, 0.5}}
		if i%100 == 7 { // 3 points hold term 9
			sp = vectorstore.Sparse{Indices: []uint32{1, 9}, Values: []float32{1, 2}}
		}
		pts = append(pts, vectorstore.Point{ChunkID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i), KBID: "kb",
			DocumentID: fmt.Sprintf("doc-%d", i/10), Sparse: sp})
	}
	if err := s.Upsert(ctx, pts); err != nil {
		t.Fatal(err)
	}
	for _, value := range []float32{1, -1} {
		for _, m := range sparseModes {
			m.set(t)
			hits, err := s.Search(ctx, vectorstore.Query{KBID: "kb", TopK: 10,
				Sparse: vectorstore.Sparse{Indices: []uint32{9}, Values: []float32{value}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(hits) != 3 {
				t.Fatalf("query value %v, %s: %d hits %+v, want the 3 points holding the term", value, m.name, len(hits), hits)
			}
		}
	}
}

// TestBySlotScores: a common term's weights by slot, with the postings of the slots
// added after they were built, give every slot its own score once, before and after
// a compaction renumbers the slots.
func TestBySlotScores(t *testing.T) {
	buildBySlot(t)
	s := New()
	ctx := context.Background()
	weight := func(i int) float32 { return 1 + float32(i%97)/8 }
	for i := range 500 {
		p := vectorstore.Point{ChunkID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i), KBID: "kb",
			DocumentID: fmt.Sprintf("doc-%d", i/10), Sparse: vectorstore.Sparse{Indices: []uint32{1}, Values: []float32{weight(i)}}}
		if i%3 == 0 { // a rarer term, so that the first is not in every slot
			p.Sparse = vectorstore.Sparse{Indices: []uint32{2}, Values: []float32{1}}
		}
		if err := s.Upsert(ctx, []vectorstore.Point{p}); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, live func(i int) bool) {
		t.Helper()
		pl, d := s.kbs["kb"].post[1], s.kbs["kb"].bySlot[1]
		if len(d) == 0 || len(d) >= len(s.kbs["kb"].ids) || len(d) != int(pl.bySlot) {
			t.Fatalf("%s: weights by slot for %d (%d) of %d slots, want some and a tail of postings", what, len(d), pl.bySlot, len(s.kbs["kb"].ids))
		}
		for _, m := range sparseModes[1:] {
			m.set(t)
			hits, err := s.Search(ctx, vectorstore.Query{KBID: "kb", TopK: 500, Sparse: vectorstore.Sparse{Indices: []uint32{1}, Values: []float32{1}}})
			if err != nil {
				t.Fatal(err)
			}
			idf := vectorstore.IDF(s.kbs["kb"].nSparse, int(pl.df))
			n := 0
			for i := range 500 {
				if i%3 != 0 && live(i) {
					n++
				}
			}
			if len(hits) != n {
				t.Fatalf("%s, %s: %d hits, want %d", what, m.name, len(hits), n)
			}
			for _, h := range hits {
				var i int
				fmt.Sscanf(h.ChunkID[24:], "%x", &i)
				if want := float64(float32(idf) * weight(i)); math.Abs(h.Score-want) > 1e-5*want {
					t.Fatalf("%s, %s: chunk %d scores %v, want %v", what, m.name, i, h.Score, want)
				}
			}
		}
	}
	check("grown", func(int) bool { return true })
	for d := range 20 { // 40 %: a compaction
		if err := s.DeleteDocument(ctx, "kb", fmt.Sprintf("doc-%d", d*2+1)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 500; i < 560; i++ { // slots after the weights by slot built by the compaction
		p := vectorstore.Point{ChunkID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i), KBID: "kb",
			DocumentID: "doc-x", Sparse: vectorstore.Sparse{Indices: []uint32{2}, Values: []float32{1}}}
		if err := s.Upsert(ctx, []vectorstore.Point{p}); err != nil {
			t.Fatal(err)
		}
	}
	check("compacted", func(i int) bool { return (i/10)%2 == 0 || i/10 >= 40 })
}

// TestSparseInfiniteWeight: a query weight that overflows to infinity (a huge query
// value on a rare term) gives the same hits on every path: a term's weights by slot
// hold 0 for the slots without it, and ∞ × 0 must not wipe their scores out.
func TestSparseInfiniteWeight(t *testing.T) {
	buildBySlot(t)
	s := New()
	ctx := context.Background()
	for i := range 1000 {
		sp := vectorstore.Sparse{Indices: []uint32{2}, Values: []float32{1 + float32(i%7)}}
		if i < 200 && i%4 != 0 { // common among the first slots (weights by slot), rare at the end
			sp = vectorstore.Sparse{Indices: []uint32{1, 2}, Values: []float32{1, 1 + float32(i%7)}}
		}
		p := vectorstore.Point{ChunkID: fmt.Sprintf("00000000-0000-4000-8000-%012x", i), KBID: "kb",
			DocumentID: fmt.Sprintf("doc-%d", i/10), Sparse: sp}
		if err := s.Upsert(ctx, []vectorstore.Point{p}); err != nil {
			t.Fatal(err)
		}
	}
	if len(s.kbs["kb"].bySlot[1]) == 0 {
		t.Fatal("term 1 has no weights by slot")
	}
	q := vectorstore.Query{KBID: "kb", TopK: 1000, Sparse: vectorstore.Sparse{Indices: []uint32{1, 2}, Values: []float32{3e38, 1}}}
	if hits := searchEveryPath(t, s, q); len(hits) != 1000 {
		t.Fatalf("%d hits, want all 1000 points", len(hits))
	}
}

// approxCandidates is what sparseApprox scores exactly, found through the exact
// search: the rescoreDepth(limit) best slots by the query's rarest terms (by postings,
// within sparseBudget, at least one) alone.
func approxCandidates(t *testing.T, s *Store, q vectorstore.Query) []vectorstore.Hit {
	t.Helper()
	k := s.kbs[q.KBID]
	var ids []uint32 // the query's terms in the index, rarest first
	for _, id := range q.Sparse.Indices {
		if pl := k.post[id]; pl != nil && pl.df > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortStableFunc(ids, func(a, b uint32) int { return cmp.Compare(len(k.post[a].slots), len(k.post[b].slots)) })
	rare := map[uint32]bool{}
	work := 0
	for i, id := range ids {
		if n := len(k.post[id].slots); i == 0 || work+n <= sparseBudget {
			work += n
			rare[id] = true
			continue
		}
		break
	}
	var first vectorstore.Sparse // in the query's order
	for i, id := range q.Sparse.Indices {
		if rare[id] {
			first.Indices = append(first.Indices, id)
			first.Values = append(first.Values, q.Sparse.Values[i])
		}
	}
	pq := q
	pq.Sparse, pq.TopK = first, rescoreDepth(q.TopK)
	hits, err := s.Search(context.Background(), pq)
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// TestSparseApprox: the approximate sparse search (the sparse side of a hybrid search
// over the approximate index) returns the best, by their exact scores, of the
// candidates the query's rarest terms give (approxCandidates), with exactly the
// scores an exact search gives them; the exact hits when those candidates are fewer
// than the hits asked for, when a budget no query exceeds reads every term, when a
// query value is not positive, and when the candidates would cost more to score than
// the postings. With document filters, weights by slot (and postings after them),
// after deletes and a compaction, on every path of searchSparse, the candidates
// scored on one core and on several.
func TestSparseApprox(t *testing.T) {
	buildBySlot(t)
	c := makeBenchCorpus(3400, 0)
	s := New()
	ctx := context.Background()
	if err := s.Upsert(ctx, c.points[:3000]); err != nil {
		t.Fatal(err)
	}
	for d := range 50 { // a third of the points: a compaction on the way
		if err := s.DeleteDocument(ctx, "kb", fmt.Sprintf("doc-%d", d*3)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Upsert(ctx, c.points[3000:]); err != nil { // postings after the weights by slot
		t.Fatal(err)
	}
	k := s.kbs["kb"]
	if k.nDead == 0 || k.nDead >= 1000 {
		t.Fatalf("%d dead slots: want some, after a compaction", k.nDead)
	}
	approx := func(q vectorstore.Query) []vectorstore.Hit {
		allowed, _ := k.allowedDocs(q.DocumentIDs)
		sc := new(scratch)
		defer sc.release()
		return k.searchSparse(sc, q.Sparse, q.TopK, allowed, true)
	}
	defer func(from, b, cost, work int) {
		sparseApproxFrom, sparseBudget, rescoreCost, rescoreWork = from, b, cost, work
	}(sparseApproxFrom, sparseBudget, rescoreCost, rescoreWork)
	sparseApproxFrom, rescoreCost = 0, 0
	r := rand.New(rand.NewPCG(5, 6))
	pruned, fewer := 0, 0
	for _, budget := range []int{0, 500, 3000, 1 << 30} {
		sparseBudget = budget
		for qi, q := range c.queries[:90] {
			q.TopK = []int{1, 5, 20}[qi%3]
			if qi%4 == 0 {
				for range 20 + r.IntN(60) {
					q.DocumentIDs = append(q.DocumentIDs, fmt.Sprintf("doc-%d", r.IntN(170)))
				}
			}
			q.Sparse.Values = slices.Clone(q.Sparse.Values)
			for i := range q.Sparse.Values {
				q.Sparse.Values[i] = 0.5 + r.Float32()
			}
			positive := qi%7 != 3
			if !positive {
				q.Sparse.Values[r.IntN(len(q.Sparse.Values))] *= -1
			}
			exact := q
			exact.TopK = 4000
			all, err := s.Search(ctx, exact)
			if err != nil {
				t.Fatal(err)
			}
			top := all[:min(len(all), q.TopK)]
			want := top
			if positive && budget != 1<<30 {
				scoreOf := map[string]float64{}
				for _, h := range all {
					scoreOf[h.ChunkID] = h.Score
				}
				cands := approxCandidates(t, s, q)
				if len(cands) < q.TopK {
					fewer++
				} else {
					want = nil
					for _, h := range cands {
						h.Score = scoreOf[h.ChunkID]
						want = append(want, h)
					}
					vectorstore.SortHits(want)
					want = want[:q.TopK]
					if !slices.Equal(want, top) {
						pruned++
					}
				}
			}
			for _, m := range sparseModes {
				m.set(t)
				for _, work := range []int{1 << 30, 1} {
					rescoreWork = work
					if got := approx(q); !slices.Equal(got, want) {
						t.Fatalf("budget %d, query %d, %s, rescoreWork %d: hits\n%+v\nwant\n%+v", budget, qi, m.name, work, got, want)
					}
				}
			}
			if budget == 0 && positive {
				rescoreCost = 1 << 30 // the candidates would cost more than the postings
				if got := approx(q); !slices.Equal(got, top) {
					t.Fatalf("query %d, candidates costlier than the postings: hits\n%+v\nwant the exact ones\n%+v", qi, got, top)
				}
				rescoreCost = 0
			}
		}
	}
	if pruned == 0 || fewer == 0 {
		t.Fatalf("queries whose approximate hits differ from the exact ones: %d, with fewer candidates than hits: %d; want some of each", pruned, fewer)
	}
}

// TestPostingsSize: postings fit in a cache line (see postings).
func TestPostingsSize(t *testing.T) {
	if n := unsafe.Sizeof(postings{}); n > 64 {
		t.Fatalf("postings take %d bytes, more than a cache line", n)
	}
}
