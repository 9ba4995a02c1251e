package embedded

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ragway/ragway/gateway/vectorstore"
)

// TestSortByTerm: the radix sort orders by term and keeps the order of equal terms,
// for terms over all 32 bits, terms sharing their low or high digits (skipped
// passes), one posting and none.
func TestSortByTerm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	terms := map[string]func() uint32{
		"any":        r.Uint32,
		"two digits": func() uint32 { return r.Uint32() >> 10 },
		"few":        func() uint32 { return uint32(r.IntN(7)) * 0x9e3779b9 },
		"low bits":   func() uint32 { return uint32(r.IntN(300)) },
		"high bits":  func() uint32 { return uint32(r.IntN(300)) << 22 },
		"one":        func() uint32 { return 0xdeadbeef },
	}
	for name, term := range terms {
		for _, n := range []int{0, 1, 2, 1000, 50_000} {
			ps := make([]pending, n)
			for i := range ps {
				ps[i] = pending{term: term(), slot: int32(i), w: float32(i)}
			}
			want := slices.Clone(ps)
			slices.SortStableFunc(want, func(a, b pending) int { return cmp.Compare(a.term, b.term) })
			// The other buffer: none, too small, larger, and holding stale postings.
			tmp := [][]pending{nil, make([]pending, n/2), make([]pending, 2*n+1)}[n%3]
			for i := range tmp {
				tmp[i] = pending{term: r.Uint32(), slot: -1}
			}
			got, other := sortByTerm(ps, tmp)
			if !slices.Equal(got, want) {
				t.Fatalf("%s, %d postings: not sorted stably by term", name, n)
			}
			if n > 1 && &got[0] == &other[0] {
				t.Fatalf("%s, %d postings: the two buffers returned are one", name, n)
			}
		}
	}
}

// TestPostingsInBatches: a store upserted in batches (several knowledge bases
// mixed, chunks replaced and moved within a batch, the adder's bound crossed often)
// holds the postings the operations call for: the live chunks of each term in the
// order of their last upsert, with their weights, document frequencies and bounds;
// weights by slot where a term is common enough, matching its postings; no large
// buffer kept; and every search path scores as in a store upserted a chunk at a time.
func TestPostingsInBatches(t *testing.T) {
	buildBySlot(t)
	oldMax, oldKeep := adderMax, adderKeep
	adderMax, adderKeep = 500, 200
	t.Cleanup(func() { adderMax, adderKeep = oldMax, oldKeep })

	r := rand.New(rand.NewPCG(5, 6))
	c := makeBenchCorpus(3000, 0)
	var ops []vectorstore.Point
	for i := range 6000 {
		p := c.points[r.IntN(len(c.points))]
		if i < len(c.points) {
			p = c.points[i]
		}
		p.KBID = fmt.Sprintf("kb-%d", r.IntN(3))
		if r.IntN(10) == 0 { // a chunk moves between knowledge bases
			p.KBID = "kb-moved"
		}
		ops = append(ops, p)
	}
	// Last, a chunk of terms of its own, twice in a batch: its first postings are
	// still in the adder when the second replaces it.
	fresh := vectorstore.Point{ChunkID: chunkID(1 << 20), KBID: "kb-0", DocumentID: "fresh",
		Sparse: vectorstore.Sparse{Indices: []uint32{7, 8}, Values: []float32{1, 2}}}
	again := fresh
	again.Sparse = vectorstore.Sparse{Indices: []uint32{8, 9}, Values: []float32{3, 4}}
	ops = append(ops, fresh, again)
	ctx := context.Background()
	one, batched := New(Exact()), New(Exact())
	for _, p := range ops {
		if err := one.Upsert(ctx, []vectorstore.Point{p}); err != nil {
			t.Fatal(err)
		}
	}
	for rest := ops; len(rest) > 0; {
		n := min(len(rest), 1+r.IntN(700))
		if len(rest)-n < 2 {
			n = len(rest)
		}
		if err := batched.Upsert(ctx, rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if len(batched.adds.ps) != 0 || batched.adds.k != nil {
		t.Fatalf("the adder holds %d postings after Upsert", len(batched.adds.ps))
	}
	if cap(batched.adds.ps) > adderKeep || cap(batched.adds.tmp) > adderKeep {
		t.Fatalf("the adder keeps buffers of %d and %d postings", cap(batched.adds.ps), cap(batched.adds.tmp))
	}

	// What the postings should be, from the operations: a knowledge base's live
	// chunks in the order of their last upsert, a term's weights within every
	// weight it was given there.
	type live struct {
		id string
		w  float32
	}
	order := map[string][]string{} // by knowledge base: live chunk ids
	last := map[string]vectorstore.Point{}
	span := map[string][2]float32{} // by knowledge base and term: every weight's bounds
	for _, p := range ops {
		if old, ok := last[p.ChunkID]; ok {
			order[old.KBID] = slices.DeleteFunc(order[old.KBID], func(id string) bool { return id == p.ChunkID })
		}
		last[p.ChunkID] = p
		order[p.KBID] = append(order[p.KBID], p.ChunkID)
		for i, term := range p.Sparse.Indices {
			key, w := fmt.Sprint(p.KBID, term), p.Sparse.Values[i]
			b, ok := span[key]
			if !ok {
				b = [2]float32{w, w}
			}
			span[key] = [2]float32{min(b[0], w), max(b[1], w)}
		}
	}
	want := map[string]map[uint32][]live{}
	for kbID, ids := range order {
		want[kbID] = map[uint32][]live{}
		for _, id := range ids {
			p := last[id]
			for i, term := range p.Sparse.Indices {
				want[kbID][term] = append(want[kbID][term], live{id, p.Sparse.Values[i]})
			}
		}
	}
	for kbID, terms := range want {
		k := batched.kbs[kbID]
		if k == nil {
			t.Fatalf("%s: missing", kbID)
		}
		for term := range k.post {
			if terms[term] == nil && k.post[term].df != 0 {
				t.Fatalf("%s: term %d: df %d, no live chunk has it", kbID, term, k.post[term].df)
			}
		}
		for term, wl := range terms {
			pl := k.post[term]
			if pl == nil {
				t.Fatalf("%s: term %d: no postings", kbID, term)
			}
			var got []live
			for i, s := range pl.slots {
				if i > 0 && s <= pl.slots[i-1] {
					t.Fatalf("%s: term %d: postings out of slot order", kbID, term)
				}
				if !k.dead[s] {
					got = append(got, live{k.ids[s], pl.weights[i]})
				}
			}
			if !slices.Equal(got, wl) || int(pl.df) != len(wl) {
				t.Fatalf("%s: term %d: live postings %v (df %d), want %v", kbID, term, got, pl.df, wl)
			}
			b := span[fmt.Sprint(kbID, term)]
			for _, l := range wl {
				if pl.lo > l.w || pl.hi < l.w {
					t.Fatalf("%s: term %d: bounds [%v, %v] leave out %v", kbID, term, pl.lo, pl.hi, l.w)
				}
			}
			if pl.lo < b[0] || pl.hi > b[1] {
				t.Fatalf("%s: term %d: bounds [%v, %v] wider than every weight given, [%v, %v]", kbID, term, pl.lo, pl.hi, b[0], b[1])
			}
			ws := k.bySlot[term]
			if len(ws) != int(pl.bySlot) {
				t.Fatalf("%s: term %d: %d weights by slot, postings say %d", kbID, term, len(ws), pl.bySlot)
			}
			if bySlotFor(len(pl.slots), len(k.ids)) && 4*int(pl.bySlot) < 3*len(k.ids) {
				t.Fatalf("%s: term %d: %d postings of %d slots, weights by slot for %d only", kbID, term, len(pl.slots), len(k.ids), pl.bySlot)
			}
			bySlot := make([]float32, pl.bySlot)
			for i, s := range pl.slots {
				if s < pl.bySlot {
					bySlot[s] = pl.weights[i]
				}
			}
			if !slices.Equal(ws, bySlot) {
				t.Fatalf("%s: term %d: weights by slot differ from its postings", kbID, term)
			}
		}
	}
	for _, q := range c.queries[:100] {
		for id := range one.kbs {
			q.KBID = id
			want := searchEveryPath(t, one, q)
			if got := searchEveryPath(t, batched, q); !slices.Equal(got, want) {
				t.Fatalf("%s: batched store's hits %v, want %v", id, got, want)
			}
		}
	}
}
