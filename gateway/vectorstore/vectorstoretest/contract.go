package vectorstoretest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"

	"github.com/ragway/ragway/gateway/vectorstore"
)

// Run runs the contract tests, each against a fresh store from open. open
// must return a store holding no points; Run closes every store it opens.
//
// Exact sparse scores are asserted only where every point with the query's
// terms is in one knowledge base, so a store that keeps idf statistics per
// collection rather than per knowledge base (Qdrant) passes too.
func Run(t *testing.T, open func(t *testing.T) vectorstore.Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, s vectorstore.Store)
	}{
		{"SparseRanksRelevantFirst", testSparseRelevant},
		{"IDFRareTermOutweighsCommon", testIDF},
		{"DenseNearestNeighbour", testDense},
		{"HybridRRF", testHybridRRF},
		{"HybridFusionSettings", testHybridFusion},
		{"TopK", testTopK},
		{"FilterByKB", testFilterKB},
		{"FilterByDocuments", testFilterDocuments},
		{"IdempotentUpsert", testIdempotentUpsert},
		{"DeleteDocument", testDeleteDocument},
		{"DeleteKB", testDeleteKB},
		{"WrongDimension", testWrongDimension},
		{"InvalidInput", testInvalidInput},
		{"EmptyKB", testEmptyKB},
		{"Concurrent", testConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.f(t, s)
		})
	}
}

// ID returns a deterministic chunk id (a UUID) for n.
func ID(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", n) }

// Sp builds a sparse vector from term → weight.
func Sp(m map[uint32]float32) vectorstore.Sparse {
	var s vectorstore.Sparse
	for t := range m {
		s.Indices = append(s.Indices, t)
	}
	slices.Sort(s.Indices)
	for _, t := range s.Indices {
		s.Values = append(s.Values, m[t])
	}
	return s
}

// Terms builds a query-side sparse vector: weight 1 per term.
func Terms(terms ...uint32) vectorstore.Sparse {
	m := make(map[uint32]float32, len(terms))
	for _, t := range terms {
		m[t] = 1
	}
	return Sp(m)
}

func upsert(t *testing.T, s vectorstore.Store, pts ...vectorstore.Point) {
	t.Helper()
	if err := s.Upsert(context.Background(), pts); err != nil {
		t.Fatalf("Upsert: %v", err)
	}
}

func search(t *testing.T, s vectorstore.Store, q vectorstore.Query) []vectorstore.Hit {
	t.Helper()
	hits, err := s.Search(context.Background(), q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	return hits
}

func ids(hits []vectorstore.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.ChunkID
	}
	return out
}

func wantIDs(t *testing.T, what string, hits []vectorstore.Hit, want ...string) {
	t.Helper()
	if got := ids(hits); !slices.Equal(got, want) {
		t.Errorf("%s: hits %v, want %v", what, got, want)
	}
}

func wantScore(t *testing.T, what string, got, want, relTol float64) {
	t.Helper()
	if math.Abs(got-want) > relTol*math.Abs(want) {
		t.Errorf("%s: score %.9g, want %.9g", what, got, want)
	}
}

const (
	kbA = "kb-a"
	kbB = "kb-b"
)

func testSparseRelevant(t *testing.T, s vectorstore.Store) {
	const cat, dog, fish, bird, tree = 1, 2, 3, 4, 5
	upsert(t, s,
		vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d1", Sparse: Sp(map[uint32]float32{cat: 1, dog: 1})},
		vectorstore.Point{ChunkID: ID(2), KBID: kbA, DocumentID: "d2", Sparse: Sp(map[uint32]float32{fish: 1.2, bird: 1})},
		vectorstore.Point{ChunkID: ID(3), KBID: kbA, DocumentID: "d2", Sparse: Sp(map[uint32]float32{cat: 1, fish: 1, tree: 1})},
		vectorstore.Point{ChunkID: ID(4), KBID: kbA, DocumentID: "d3", Sparse: Sp(map[uint32]float32{tree: 1})},
		// Identical content: equal scores order by chunk id.
		vectorstore.Point{ChunkID: ID(6), KBID: kbA, DocumentID: "d3", Sparse: Sp(map[uint32]float32{dog: 2})},
		vectorstore.Point{ChunkID: ID(5), KBID: kbA, DocumentID: "d3", Sparse: Sp(map[uint32]float32{dog: 2})},
	)
	hits := search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(fish, bird), TopK: 10})
	// Only points sharing a term are hits.
	wantIDs(t, "fish bird", hits, ID(2), ID(3))
	if len(hits) > 0 && hits[0].DocumentID != "d2" {
		t.Errorf("hit document %q, want d2", hits[0].DocumentID)
	}
	for i := 1; i < len(hits); i++ {
		if hits[i].Score > hits[i-1].Score {
			t.Errorf("hits not ordered by score: %+v", hits)
		}
	}
	hits = search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(dog), TopK: 10})
	wantIDs(t, "dog", hits, ID(5), ID(6), ID(1))
}

func testIDF(t *testing.T, s vectorstore.Store) {
	const common, rare, filler = 10, 20, 30
	pts := []vectorstore.Point{
		{ChunkID: ID(1), KBID: kbA, DocumentID: "d", Sparse: Sp(map[uint32]float32{rare: 1, filler: 1})},
		{ChunkID: ID(2), KBID: kbA, DocumentID: "d", Sparse: Sp(map[uint32]float32{common: 2})},
	}
	for i := 3; i <= 10; i++ {
		pts = append(pts, vectorstore.Point{ChunkID: ID(i), KBID: kbA, DocumentID: "d", Sparse: Sp(map[uint32]float32{common: 1})})
	}
	upsert(t, s, pts...)
	hits := search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(common, rare), TopK: 3})
	wantIDs(t, "common rare", hits, ID(1), ID(2), ID(3))
	if len(hits) == 3 {
		// N = 10 points, the rare term in 1, the common one in 9.
		wantScore(t, "rare", hits[0].Score, vectorstore.IDF(10, 1), 1e-5)
		wantScore(t, "common×2", hits[1].Score, 2*vectorstore.IDF(10, 9), 1e-5)
		wantScore(t, "common×1", hits[2].Score, vectorstore.IDF(10, 9), 1e-5)
	}
	// Query weights multiply.
	q := Sp(map[uint32]float32{common: 3})
	hits = search(t, s, vectorstore.Query{KBID: kbA, Sparse: q, TopK: 1})
	if len(hits) == 1 {
		wantScore(t, "query weight", hits[0].Score, 6*vectorstore.IDF(10, 9), 1e-5)
	}
}

func testDense(t *testing.T, s vectorstore.Store) {
	upsert(t, s,
		vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d", Dense: []float32{1, 0, 0}},
		vectorstore.Point{ChunkID: ID(2), KBID: kbA, DocumentID: "d", Dense: []float32{0, 1, 0}},
		vectorstore.Point{ChunkID: ID(3), KBID: kbA, DocumentID: "d", Dense: []float32{5, 5, 0}},
		vectorstore.Point{ChunkID: ID(4), KBID: kbA, DocumentID: "d", Dense: []float32{-1, 0, 0}},
	)
	hits := search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{2, 0.1, 0}, TopK: 10})
	wantIDs(t, "near x", hits, ID(1), ID(3), ID(2), ID(4))
	if len(hits) == 4 {
		n := math.Sqrt(4 + 0.01)
		wantScore(t, "cos 1", hits[0].Score, 2/n, 1e-5)
		wantScore(t, "cos 3", hits[1].Score, 2.1/n/math.Sqrt2, 1e-5)
		wantScore(t, "cos 2", hits[2].Score, 0.1/n, 1e-4)
		wantScore(t, "cos 4", hits[3].Score, -2/n, 1e-5)
	}
	// Cosine ignores length: a tiny query along (1,1,0) matches point 3 exactly.
	hits = search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{0.01, 0.01, 0}, TopK: 1})
	wantIDs(t, "diagonal", hits, ID(3))
	if len(hits) == 1 {
		wantScore(t, "diagonal", hits[0].Score, 1, 1e-5)
	}
}

// testHybridRRF checks fusion on a hand-computed example.
//
//	dense  (query x): A 1, B 0.8, C 0.6, D 0     → ranks A1 B2 C3 D4
//	sparse (term t):  C 3, A 2.5, E 2, D 1       → ranks C1 A2 E3 D4
//	fused: A 1/61+1/62, C 1/63+1/61, D 2/64, B 1/62, E 1/63
//
// hybridTerm is the query term of hybridPoints.
const hybridTerm = 7

// hybridPoints upserts five points of one knowledge base for the hybrid tests and
// returns their ids: a and c in both lists, b dense only, e sparse only, d last in
// both.
func hybridPoints(t *testing.T, s vectorstore.Store) (a, b, c, d, e string) {
	const term = hybridTerm
	a, b, c, d, e = ID(1), ID(2), ID(3), ID(4), ID(5)
	upsert(t, s,
		vectorstore.Point{ChunkID: a, KBID: kbA, DocumentID: "d1", Dense: []float32{1, 0, 0}, Sparse: Sp(map[uint32]float32{term: 2.5})},
		vectorstore.Point{ChunkID: b, KBID: kbA, DocumentID: "d1", Dense: []float32{0.8, 0.6, 0}},
		vectorstore.Point{ChunkID: c, KBID: kbA, DocumentID: "d2", Dense: []float32{0.6, 0.8, 0}, Sparse: Sp(map[uint32]float32{term: 3, 8: 1})},
		vectorstore.Point{ChunkID: d, KBID: kbA, DocumentID: "d2", Dense: []float32{0, 0, 1}, Sparse: Sp(map[uint32]float32{term: 1})},
		vectorstore.Point{ChunkID: e, KBID: kbA, DocumentID: "d3", Sparse: Sp(map[uint32]float32{term: 2, 9: 1})},
	)
	return a, b, c, d, e
}

func testHybridRRF(t *testing.T, s vectorstore.Store) {
	const term = hybridTerm
	a, b, c, d, e := hybridPoints(t, s)
	hits := search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 0, 0}, Sparse: Terms(term), TopK: 10})
	wantIDs(t, "hybrid", hits, a, c, d, b, e)
	want := []float64{1.0/61 + 1.0/62, 1.0/61 + 1.0/63, 2.0 / 64, 1.0 / 62, 1.0 / 63}
	if len(hits) == len(want) {
		for i, h := range hits {
			wantScore(t, "fused "+h.ChunkID, h.Score, want[i], 1e-6)
		}
		if hits[4].DocumentID != "d3" {
			t.Errorf("hit %s document %q, want d3", e, hits[4].DocumentID)
		}
	}
	hits = search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 0, 0}, Sparse: Terms(term), TopK: 2})
	wantIDs(t, "hybrid top 2", hits, a, c)
}

// testHybridFusion: RRF with another k, and weighted fusion of min-max normalised
// scores, on testHybridRRF's points. Dense (cosine) list: a 1, b .8, c .6, d 0;
// sparse list (the term's idf times): c 3, a 2.5, e 2, d 1.
func testHybridFusion(t *testing.T, s vectorstore.Store) {
	const term = hybridTerm
	a, b, c, d, e := hybridPoints(t, s)
	for _, tc := range []struct {
		name   string
		fusion vectorstore.Fusion
		ids    []string
		scores []float64
	}{
		{"rrf k=1", vectorstore.Fusion{Method: vectorstore.FusionRRF, K: 1}, []string{a, c, d, b, e},
			[]float64{1.0/2 + 1.0/3, 1.0/4 + 1.0/2, 2.0 / 5, 1.0 / 3, 1.0 / 4}},
		{"weighted 0.5", vectorstore.Fusion{Method: vectorstore.FusionWeighted, DenseWeight: 0.5}, []string{a, c, b, e, d},
			[]float64{0.5 + 0.5*0.75, 0.5*0.6 + 0.5, 0.5 * 0.8, 0.5 * 0.5, 0}},
		// Equal scores (0) by rank in the heavier list, then the other: d is last
		// in the sparse list, b not in it.
		{"weighted, sparse only", vectorstore.Fusion{Method: vectorstore.FusionWeighted}, []string{c, a, e, d, b},
			[]float64{1, 0.75, 0.5, 0, 0}},
		{"weighted, dense only", vectorstore.Fusion{Method: vectorstore.FusionWeighted, DenseWeight: 1}, []string{a, b, c, d, e},
			[]float64{1, 0.8, 0.6, 0, 0}},
	} {
		hits := search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 0, 0}, Sparse: Terms(term), TopK: 10, Fusion: tc.fusion})
		wantIDs(t, tc.name, hits, tc.ids...)
		if len(hits) == len(tc.scores) {
			for i, h := range hits {
				if tc.scores[i] == 0 {
					if h.Score != 0 {
						t.Errorf("%s: %s scores %v, want 0", tc.name, h.ChunkID, h.Score)
					}
					continue
				}
				wantScore(t, tc.name+" "+h.ChunkID, h.Score, tc.scores[i], 1e-5)
			}
		}
	}
	hits := search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 0, 0}, Sparse: Terms(term), TopK: 2,
		Fusion: vectorstore.Fusion{Method: vectorstore.FusionWeighted, DenseWeight: 0.5}})
	wantIDs(t, "weighted top 2", hits, a, c)
}

func testTopK(t *testing.T, s vectorstore.Store) {
	const term = 1
	var pts []vectorstore.Point
	for i := 1; i <= 25; i++ {
		angle := float64(i) / 25 * math.Pi / 2
		pts = append(pts, vectorstore.Point{
			ChunkID: ID(i), KBID: kbA, DocumentID: "d",
			Dense:  []float32{float32(math.Cos(angle)), float32(math.Sin(angle))},
			Sparse: Sp(map[uint32]float32{term: float32(i)}),
		})
	}
	upsert(t, s, pts...)
	hits := search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(term), TopK: 5})
	wantIDs(t, "sparse top 5", hits, ID(25), ID(24), ID(23), ID(22), ID(21))
	hits = search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 0}, TopK: 3})
	wantIDs(t, "dense top 3", hits, ID(1), ID(2), ID(3))
	hits = search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 0}, Sparse: Terms(term), TopK: 4})
	if len(hits) != 4 {
		t.Errorf("hybrid top 4: %d hits", len(hits))
	}
	hits = search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(term), TopK: 100})
	if len(hits) != 25 {
		t.Errorf("top 100 of 25: %d hits", len(hits))
	}
}

func testFilterKB(t *testing.T, s vectorstore.Store) {
	const term = 3
	inA := map[string]bool{}
	var pts []vectorstore.Point
	for i := 1; i <= 10; i++ {
		kb := kbA
		if i%2 == 0 {
			kb = kbB
		} else {
			inA[ID(i)] = true
		}
		pts = append(pts, vectorstore.Point{
			ChunkID: ID(i), KBID: kb, DocumentID: "same-doc",
			Dense: []float32{1, float32(i)}, Sparse: Sp(map[uint32]float32{term: float32(i)}),
		})
	}
	upsert(t, s, pts...)
	for _, q := range []vectorstore.Query{
		{KBID: kbA, Sparse: Terms(term), TopK: 20},
		{KBID: kbA, Dense: []float32{1, 10}, TopK: 20},
		{KBID: kbA, Dense: []float32{1, 10}, Sparse: Terms(term), TopK: 20},
	} {
		hits := search(t, s, q)
		if len(hits) != len(inA) {
			t.Errorf("query %+v: %d hits, want %d", q, len(hits), len(inA))
		}
		for _, h := range hits {
			if !inA[h.ChunkID] {
				t.Errorf("query %+v: hit %s from another knowledge base", q, h.ChunkID)
			}
		}
	}
	hits := search(t, s, vectorstore.Query{KBID: "kb-unknown", Sparse: Terms(term), TopK: 20})
	wantIDs(t, "unknown kb", hits)
}

func testFilterDocuments(t *testing.T, s vectorstore.Store) {
	const term = 4
	var pts []vectorstore.Point
	for i := 1; i <= 9; i++ {
		pts = append(pts, vectorstore.Point{
			ChunkID: ID(i), KBID: kbA, DocumentID: fmt.Sprintf("d%d", i%3),
			Dense: []float32{1, float32(i)}, Sparse: Sp(map[uint32]float32{term: float32(i)}),
		})
	}
	// Same document id in another knowledge base: must not leak in.
	pts = append(pts, vectorstore.Point{ChunkID: ID(100), KBID: kbB, DocumentID: "d1", Dense: []float32{1, 1}, Sparse: Terms(term)})
	upsert(t, s, pts...)
	for _, q := range []vectorstore.Query{
		{KBID: kbA, Sparse: Terms(term), TopK: 20, DocumentIDs: []string{"d1", "d2", "d-none"}},
		{KBID: kbA, Dense: []float32{1, 10}, TopK: 20, DocumentIDs: []string{"d1", "d2"}},
		{KBID: kbA, Dense: []float32{1, 10}, Sparse: Terms(term), TopK: 20, DocumentIDs: []string{"d2", "d1"}},
	} {
		hits := search(t, s, q)
		if len(hits) != 6 {
			t.Errorf("query %+v: %d hits, want 6", q, len(hits))
		}
		for _, h := range hits {
			if h.DocumentID != "d1" && h.DocumentID != "d2" || h.ChunkID == ID(100) {
				t.Errorf("query %+v: hit %+v outside the filter", q, h)
			}
		}
	}
	hits := search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(term), TopK: 20, DocumentIDs: []string{"d-none"}})
	wantIDs(t, "unknown document", hits)
	hits = search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(term), TopK: 2, DocumentIDs: []string{"d0"}})
	wantIDs(t, "d0 top 2", hits, ID(9), ID(6))
}

func testIdempotentUpsert(t *testing.T, s vectorstore.Store) {
	const old, fresh = 1, 2
	p := vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d1", Dense: []float32{1, 0}, Sparse: Terms(old)}
	upsert(t, s, p)
	upsert(t, s, p, p)
	upsert(t, s, vectorstore.Point{ChunkID: ID(2), KBID: kbA, DocumentID: "d1", Dense: []float32{0, 1}, Sparse: Terms(old)})
	hits := search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(old), TopK: 10})
	wantIDs(t, "after repeats", hits, ID(1), ID(2))
	if len(hits) == 2 {
		// N = 2, n = 2: a repeated upsert must not count twice.
		wantScore(t, "idf after repeats", hits[0].Score, vectorstore.IDF(2, 2), 1e-5)
	}

	p = vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d2", Dense: []float32{0, 1}, Sparse: Terms(fresh)}
	upsert(t, s, p)
	wantIDs(t, "old term", search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(old), TopK: 10}), ID(2))
	hits = search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(fresh), TopK: 10})
	wantIDs(t, "new term", hits, ID(1))
	if len(hits) == 1 && hits[0].DocumentID != "d2" {
		t.Errorf("replaced point has document %q, want d2", hits[0].DocumentID)
	}
	hits = search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{0, 1}, TopK: 10})
	if len(hits) != 2 {
		t.Fatalf("dense after replace: %d hits, want 2", len(hits))
	}
	for _, h := range hits {
		wantScore(t, "replaced dense "+h.ChunkID, h.Score, 1, 1e-5)
	}
	// The old document no longer owns the chunk.
	if err := s.DeleteDocument(context.Background(), kbA, "d1"); err != nil {
		t.Fatalf("DeleteDocument: %v", err)
	}
	wantIDs(t, "after deleting d1", search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(fresh), TopK: 10}), ID(1))
}

func testDeleteDocument(t *testing.T, s vectorstore.Store) {
	const term = 5
	ctx := context.Background()
	var pts []vectorstore.Point
	for i := 1; i <= 12; i++ {
		pts = append(pts, vectorstore.Point{
			ChunkID: ID(i), KBID: kbA, DocumentID: fmt.Sprintf("d%d", i%3),
			Dense: []float32{1, float32(i)}, Sparse: Sp(map[uint32]float32{term: float32(i), uint32(100 + i%3): 1}),
		})
	}
	// Same document id in another knowledge base, with its own term so that
	// idf is the same whether a store counts per knowledge base or per
	// collection (Qdrant).
	const otherTerm = 200
	pts = append(pts, vectorstore.Point{ChunkID: ID(50), KBID: kbB, DocumentID: "d1", Dense: []float32{1, 1}, Sparse: Terms(otherTerm)})
	upsert(t, s, pts...)
	if err := s.DeleteDocument(ctx, kbA, "d1"); err != nil {
		t.Fatalf("DeleteDocument: %v", err)
	}
	for _, q := range []vectorstore.Query{
		{KBID: kbA, Sparse: Terms(term), TopK: 20},
		{KBID: kbA, Dense: []float32{1, 5}, TopK: 20},
		{KBID: kbA, Dense: []float32{1, 5}, Sparse: Terms(term), TopK: 20},
	} {
		hits := search(t, s, q)
		if len(hits) != 8 {
			t.Errorf("query %+v after delete: %d hits, want 8", q, len(hits))
		}
		for _, h := range hits {
			if h.DocumentID == "d1" {
				t.Errorf("query %+v: deleted hit %+v", q, h)
			}
		}
	}
	wantIDs(t, "deleted document's own term", search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(101), TopK: 20}))
	// idf follows deletes: N = 8 points left, all with the term.
	hits := search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(term), TopK: 1})
	if len(hits) == 1 {
		wantIDs(t, "top after delete", hits, ID(12))
		wantScore(t, "idf after delete", hits[0].Score, 12*vectorstore.IDF(8, 8), 1e-5)
	}
	// Same document id in another knowledge base survives.
	wantIDs(t, "other kb", search(t, s, vectorstore.Query{KBID: kbB, Sparse: Terms(otherTerm), TopK: 20}), ID(50))
	for _, del := range [][2]string{{kbA, "d1"}, {kbA, "d-none"}, {"kb-none", "d1"}} {
		if err := s.DeleteDocument(ctx, del[0], del[1]); err != nil {
			t.Errorf("DeleteDocument(%q, %q) of nothing: %v", del[0], del[1], err)
		}
	}
	// Deleting everything, then adding again.
	for _, d := range []string{"d0", "d2"} {
		if err := s.DeleteDocument(ctx, kbA, d); err != nil {
			t.Fatalf("DeleteDocument: %v", err)
		}
	}
	wantIDs(t, "all deleted", search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 5}, Sparse: Terms(term), TopK: 20}))
	upsert(t, s, pts[0])
	wantIDs(t, "re-added", search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 5}, Sparse: Terms(term), TopK: 20}), ID(1))
}

func testDeleteKB(t *testing.T, s vectorstore.Store) {
	const term = 6
	ctx := context.Background()
	upsert(t, s,
		vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d", Dense: []float32{1, 0, 0}, Sparse: Terms(term)},
		vectorstore.Point{ChunkID: ID(2), KBID: kbA, DocumentID: "e", Dense: []float32{0, 1, 0}, Sparse: Terms(term)},
		vectorstore.Point{ChunkID: ID(3), KBID: kbB, DocumentID: "d", Dense: []float32{1, 0, 0}, Sparse: Terms(term)},
	)
	if err := s.DeleteKB(ctx, kbA); err != nil {
		t.Fatalf("DeleteKB: %v", err)
	}
	wantIDs(t, "deleted kb sparse", search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(term), TopK: 10}))
	wantIDs(t, "other kb", search(t, s, vectorstore.Query{KBID: kbB, Dense: []float32{1, 0, 0}, Sparse: Terms(term), TopK: 10}), ID(3))
	if err := s.DeleteKB(ctx, kbA); err != nil {
		t.Errorf("DeleteKB of nothing: %v", err)
	}
	// The knowledge base starts over, with a new dimension.
	upsert(t, s, vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d", Dense: []float32{1, 0, 0, 0}, Sparse: Terms(term)})
	wantIDs(t, "recreated", search(t, s, vectorstore.Query{KBID: kbA, Dense: []float32{1, 0, 0, 0}, TopK: 10}), ID(1))
}

func testWrongDimension(t *testing.T, s vectorstore.Store) {
	ctx := context.Background()
	upsert(t, s, vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d", Dense: []float32{1, 0, 0}, Sparse: Terms(1)})
	err := s.Upsert(ctx, []vectorstore.Point{
		{ChunkID: ID(2), KBID: kbA, DocumentID: "d", Dense: []float32{0, 1, 0}, Sparse: Terms(1)},
		{ChunkID: ID(3), KBID: kbA, DocumentID: "d", Dense: []float32{1, 0, 0, 0}},
	})
	if !errors.Is(err, vectorstore.ErrInvalid) {
		t.Errorf("Upsert with a wrong dimension: %v, want ErrInvalid", err)
	}
	// Nothing of the rejected batch was written.
	wantIDs(t, "after rejected batch", search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(1), TopK: 10}), ID(1))
	// Mixed dimensions within one new knowledge base's batch.
	err = s.Upsert(ctx, []vectorstore.Point{
		{ChunkID: ID(4), KBID: kbB, DocumentID: "d", Dense: []float32{1, 0}},
		{ChunkID: ID(5), KBID: kbB, DocumentID: "d", Dense: []float32{1, 0, 0}},
	})
	if !errors.Is(err, vectorstore.ErrInvalid) {
		t.Errorf("Upsert with mixed dimensions: %v, want ErrInvalid", err)
	}
	_, err = s.Search(ctx, vectorstore.Query{KBID: kbA, Dense: []float32{1, 0}, TopK: 1})
	if !errors.Is(err, vectorstore.ErrInvalid) {
		t.Errorf("Search with a wrong dimension: %v, want ErrInvalid", err)
	}
	// Another knowledge base may have another dimension.
	upsert(t, s, vectorstore.Point{ChunkID: ID(6), KBID: kbB, DocumentID: "d", Dense: []float32{1, 0, 0, 0}})
	wantIDs(t, "other dimension", search(t, s, vectorstore.Query{KBID: kbB, Dense: []float32{1, 0, 0, 0}, TopK: 10}), ID(6))
}

func testInvalidInput(t *testing.T, s vectorstore.Store) {
	ctx := context.Background()
	good := vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d", Dense: []float32{1, 0}, Sparse: Terms(1)}
	upsert(t, s, good)
	points := map[string]func(p *vectorstore.Point){
		"chunk id not a uuid": func(p *vectorstore.Point) { p.ChunkID = "chunk-1" },
		"upper-case uuid":     func(p *vectorstore.Point) { p.ChunkID = "0000000A-0000-4000-8000-000000000001" },
		"empty kb":            func(p *vectorstore.Point) { p.KBID = "" },
		"empty document":      func(p *vectorstore.Point) { p.DocumentID = "" },
		"sparse lengths differ": func(p *vectorstore.Point) {
			p.Sparse = vectorstore.Sparse{Indices: []uint32{1, 2}, Values: []float32{1}}
		},
		"sparse unsorted": func(p *vectorstore.Point) {
			p.Sparse = vectorstore.Sparse{Indices: []uint32{2, 1}, Values: []float32{1, 1}}
		},
		"sparse duplicate": func(p *vectorstore.Point) {
			p.Sparse = vectorstore.Sparse{Indices: []uint32{2, 2}, Values: []float32{1, 1}}
		},
		"sparse NaN":  func(p *vectorstore.Point) { p.Sparse.Values = []float32{float32(math.NaN())} },
		"dense Inf":   func(p *vectorstore.Point) { p.Dense = []float32{float32(math.Inf(1)), 0} },
		"dense zero":  func(p *vectorstore.Point) { p.Dense = []float32{0, 0} },
		"dense empty": func(p *vectorstore.Point) { p.Dense = []float32{} },
	}
	for name, mutate := range points {
		p := good
		p.ChunkID = ID(2)
		mutate(&p)
		if err := s.Upsert(ctx, []vectorstore.Point{p}); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Errorf("Upsert, %s: %v, want ErrInvalid", name, err)
		}
	}
	queries := map[string]vectorstore.Query{
		"empty kb":        {Sparse: Terms(1), TopK: 1},
		"top_k 0":         {KBID: kbA, Sparse: Terms(1)},
		"no vectors":      {KBID: kbA, TopK: 1},
		"sparse unsorted": {KBID: kbA, Sparse: vectorstore.Sparse{Indices: []uint32{2, 1}, Values: []float32{1, 1}}, TopK: 1},
		"dense zero":      {KBID: kbA, Dense: []float32{0, 0}, TopK: 1},
		"fusion method":   {KBID: kbA, Sparse: Terms(1), TopK: 1, Fusion: vectorstore.Fusion{Method: "max"}},
		"fusion k":        {KBID: kbA, Sparse: Terms(1), TopK: 1, Fusion: vectorstore.Fusion{K: -1}},
		"fusion weight":   {KBID: kbA, Sparse: Terms(1), TopK: 1, Fusion: vectorstore.Fusion{Method: vectorstore.FusionWeighted, DenseWeight: math.NaN()}},
	}
	for name, q := range queries {
		if _, err := s.Search(ctx, q); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Errorf("Search, %s: %v, want ErrInvalid", name, err)
		}
	}
	wantIDs(t, "after invalid upserts", search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(1), TopK: 10}), ID(1))
}

func testEmptyKB(t *testing.T, s vectorstore.Store) {
	for _, q := range []vectorstore.Query{
		{KBID: kbA, Sparse: Terms(1), TopK: 5},
		{KBID: kbA, Dense: []float32{1, 0}, TopK: 5},
		{KBID: kbA, Dense: []float32{1, 0}, Sparse: Terms(1), TopK: 5},
		{KBID: kbA, Sparse: Terms(1), TopK: 5, DocumentIDs: []string{"d"}},
	} {
		wantIDs(t, "empty store", search(t, s, q))
	}
	// A knowledge base with sparse-only points: a dense query finds nothing,
	// a term nobody has finds nothing.
	upsert(t, s, vectorstore.Point{ChunkID: ID(1), KBID: kbA, DocumentID: "d", Sparse: Terms(1)})
	wantIDs(t, "unknown term", search(t, s, vectorstore.Query{KBID: kbA, Sparse: Terms(2), TopK: 5}))
	wantIDs(t, "other kb", search(t, s, vectorstore.Query{KBID: kbB, Sparse: Terms(1), TopK: 5}))
}

func testConcurrent(t *testing.T, s vectorstore.Store) {
	const writers, perWriter, searchers, searches = 4, 40, 4, 100
	ctx := context.Background()
	kbOf := func(w int) string { return fmt.Sprintf("kb-%d", w%2) }
	var wg sync.WaitGroup
	errs := make(chan error, writers+searchers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				n := w*1000 + i
				p := vectorstore.Point{
					ChunkID: ID(n), KBID: kbOf(w), DocumentID: fmt.Sprintf("doc-%d", w),
					Dense:  []float32{1, float32(i), float32(w)},
					Sparse: Sp(map[uint32]float32{1: 1, uint32(100 + w): float32(i + 1)}),
				}
				if err := s.Upsert(ctx, []vectorstore.Point{p}); err != nil {
					errs <- fmt.Errorf("writer %d: %w", w, err)
					return
				}
				if i%10 == 9 {
					if err := s.DeleteDocument(ctx, kbOf(w), fmt.Sprintf("doc-gone-%d", w)); err != nil {
						errs <- fmt.Errorf("writer %d: %w", w, err)
						return
					}
				}
			}
		})
	}
	for r := range searchers {
		wg.Go(func() {
			for i := range searches {
				q := vectorstore.Query{KBID: kbOf(r), Sparse: Terms(1, uint32(100+r)), TopK: 5}
				if i%2 == 1 {
					q.Dense = []float32{1, float32(i), 0}
				}
				hits, err := s.Search(ctx, q)
				if err != nil {
					errs <- fmt.Errorf("searcher %d: %w", r, err)
					return
				}
				if len(hits) > 5 {
					errs <- fmt.Errorf("searcher %d: %d hits for top 5", r, len(hits))
					return
				}
				for _, h := range hits {
					var w int
					if _, err := fmt.Sscanf(h.DocumentID, "doc-%d", &w); err != nil || kbOf(w) != q.KBID {
						errs <- fmt.Errorf("searcher %d: hit %+v from another knowledge base", r, h)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for w := range writers {
		hits := search(t, s, vectorstore.Query{KBID: kbOf(w), Sparse: Terms(uint32(100 + w)), TopK: 1000})
		if len(hits) != perWriter {
			t.Errorf("writer %d: %d hits after the writes, want %d", w, len(hits), perWriter)
		}
	}
}
