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
		"any":       r.Uint32,
		"few":       func() uint32 { return uint32(r.IntN(7)) * 0x9e3779b9 },
		"low bits":  func() uint32 { return uint32(r.IntN(300)) },
		"high bits": func() uint32 { return uint32(r.IntN(300)) << 22 },
		"one":       func() uint32 { return 0xdeadbeef },
	}
	for name, term := range terms {
		for _, n := range []int{0, 1, 2, 1000, 50_000} {
			ps := make([]pending, n)
			for i := range ps {
				ps[i] = pending{term: term(), slot: int32(i), w: float32(i)}
			}
			want := slices.Clone(ps)
			slices.SortStableFunc(want, func(a, b pending) int { return cmp.Compare(a.term, b.term) })
			got, _ := sortByTerm(ps, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("%s, %d postings: not sorted stably by term", name, n)
			}
		}
	}
}

// TestPostingsInBatches: a store upserted a chunk at a time and one upserted in
// batches (several knowledge bases mixed, chunks replaced and moved within a batch,
// the adder's bound crossed often) hold the same postings, slot for slot, with the
// same document frequencies and bounds; weights by slot match the postings; and
// every search path scores the same.
func TestPostingsInBatches(t *testing.T) {
	buildBySlot(t)
	old := adderMax
	adderMax = 500
	t.Cleanup(func() { adderMax = old })

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
	// Compactions come at other times (at the end of an Upsert): slots differ, the
	// live postings in slot order do not.
	type live struct {
		id string
		w  float32
	}
	liveOf := func(k *kb, pl *postings) []live {
		var out []live
		for i, s := range pl.slots {
			if i > 0 && s <= pl.slots[i-1] {
				t.Fatalf("%s: postings out of slot order", k.id)
			}
			if !k.dead[s] {
				out = append(out, live{k.ids[s], pl.weights[i]})
			}
		}
		return out
	}
	for id, a := range one.kbs {
		b := batched.kbs[id]
		if b == nil || a.nSparse != b.nSparse || len(a.slotOf) != len(b.slotOf) {
			t.Fatalf("%s: the stores differ in shape", id)
		}
		for term, pa := range a.post {
			pb := b.post[term]
			if pa.df == 0 && pb == nil {
				continue // compacted away in b
			}
			if pb == nil || !slices.Equal(liveOf(a, pa), liveOf(b, pb)) || pa.df != pb.df || pa.lo != pb.lo || pa.hi != pb.hi {
				t.Fatalf("%s: term %d: postings differ: %+v against %+v", id, term, pa, pb)
			}
		}
		for _, k := range []*kb{a, b} {
			for term, pl := range k.post {
				if int(pl.df) != len(liveOf(k, pl)) {
					t.Fatalf("%s: term %d: df %d, %d live postings", id, term, pl.df, len(liveOf(k, pl)))
				}
				ws := k.bySlot[term]
				if len(ws) != int(pl.bySlot) {
					t.Fatalf("%s: term %d: %d weights by slot, postings say %d", id, term, len(ws), pl.bySlot)
				}
				want := make([]float32, pl.bySlot)
				for i, s := range pl.slots {
					if s < pl.bySlot {
						want[s] = pl.weights[i]
					}
				}
				if !slices.Equal(ws, want) {
					t.Fatalf("%s: term %d: weights by slot differ from its postings", id, term)
				}
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
