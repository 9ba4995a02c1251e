package vectorstore

import (
	"errors"
	"math"
	"testing"
)

func TestIDF(t *testing.T) {
	for _, tc := range []struct {
		name string
		N, n int
		want float64
	}{
		{"rare", 10, 1, math.Log(1 + 9.5/1.5)},
		{"everywhere", 10, 10, math.Log(1 + 0.5/10.5)},
		{"half", 100, 50, math.Ln2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := IDF(tc.N, tc.n); math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("IDF(%d, %d) = %v, want %v", tc.N, tc.n, got, tc.want)
			}
		})
	}
	if IDF(10, 1) <= IDF(10, 2) {
		t.Error("IDF does not decrease with document frequency")
	}
}

func TestPrefetchLimit(t *testing.T) {
	for topK, want := range map[int]int{1: 20, 5: 20, 6: 24, 50: 200} {
		if got := PrefetchLimit(topK); got != want {
			t.Errorf("PrefetchLimit(%d) = %d, want %d", topK, got, want)
		}
	}
}

func TestFuseRRF(t *testing.T) {
	dense := []Hit{{ChunkID: "a", DocumentID: "d1", Score: 0.9}, {ChunkID: "b", DocumentID: "d1", Score: 0.8}, {ChunkID: "c", DocumentID: "d2", Score: 0.1}}
	sparse := []Hit{{ChunkID: "c", DocumentID: "d2", Score: 7}, {ChunkID: "a", DocumentID: "d1", Score: 3}, {ChunkID: "e", DocumentID: "d3", Score: 1}}
	got := FuseRRF(10, RRFK, dense, sparse)
	want := []Hit{
		{ChunkID: "a", DocumentID: "d1", Score: 1.0/61 + 1.0/62},
		{ChunkID: "c", DocumentID: "d2", Score: 1.0/63 + 1.0/61},
		{ChunkID: "b", DocumentID: "d1", Score: 1.0 / 62},
		{ChunkID: "e", DocumentID: "d3", Score: 1.0 / 63},
	}
	if len(got) != len(want) {
		t.Fatalf("FuseRRF = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].ChunkID != want[i].ChunkID || got[i].DocumentID != want[i].DocumentID || math.Abs(got[i].Score-want[i].Score) > 1e-15 {
			t.Errorf("hit %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := FuseRRF(1, RRFK, dense, sparse); len(got) != 1 || got[0].ChunkID != "a" {
		t.Errorf("FuseRRF top 1 = %+v", got)
	}
	// Equal fused scores order by chunk id.
	got = FuseRRF(10, RRFK, []Hit{{ChunkID: "z"}}, []Hit{{ChunkID: "y"}})
	if len(got) != 2 || got[0].ChunkID != "y" || got[1].ChunkID != "z" {
		t.Errorf("tie order = %+v", got)
	}
}

func TestValidate(t *testing.T) {
	good := Point{ChunkID: "0123abcd-0000-4000-8000-00000000000f", KBID: "kb", DocumentID: "d",
		Dense: []float32{1}, Sparse: Sparse{Indices: []uint32{1, 5}, Values: []float32{1, 0.5}}}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid point: %v", err)
	}
	for _, id := range []string{"", "0123abcd-0000-4000-8000-00000000000", "0123abcd00000-4000-8000-00000000000f", "0123ABCD-0000-4000-8000-00000000000f", "0123abcg-0000-4000-8000-00000000000f"} {
		p := good
		p.ChunkID = id
		if err := p.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("chunk id %q: %v, want ErrInvalid", id, err)
		}
	}
	if err := (Query{KBID: "kb", Dense: []float32{1}, TopK: 1}).Validate(); err != nil {
		t.Errorf("dense-only query: %v", err)
	}
	// A store sizes its hit lists by top_k: it is bounded.
	if err := (Query{KBID: "kb", Dense: []float32{1}, TopK: MaxTopK}).Validate(); err != nil {
		t.Errorf("top_k %d: %v", MaxTopK, err)
	}
	for _, k := range []int{0, -1, MaxTopK + 1, 1 << 40} {
		if err := (Query{KBID: "kb", Dense: []float32{1}, TopK: k}).Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("top_k %d: %v, want ErrInvalid", k, err)
		}
	}
}

func TestFuseWeighted(t *testing.T) {
	dense := []Hit{{ChunkID: "a", Score: 0.9}, {ChunkID: "b", Score: 0.5}, {ChunkID: "c", Score: 0.1}}
	sparse := []Hit{{ChunkID: "c", Score: 7}, {ChunkID: "d", Score: 7}} // equal scores: both 1
	got := FuseWeighted(10, 0.25, dense, sparse)
	want := []Hit{{ChunkID: "c", Score: 0.75}, {ChunkID: "d", Score: 0.75}, {ChunkID: "a", Score: 0.25}, {ChunkID: "b", Score: 0.125}}
	if len(got) != len(want) {
		t.Fatalf("FuseWeighted = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].ChunkID != want[i].ChunkID || math.Abs(got[i].Score-want[i].Score) > 1e-12 {
			t.Fatalf("FuseWeighted = %+v, want %+v", got, want)
		}
	}
	if got := FuseWeighted(10, 0.5, nil, nil); len(got) != 0 {
		t.Errorf("no lists: %+v", got)
	}
	// All weight on an empty list: the other list's order stands.
	got = FuseWeighted(3, 1, nil, []Hit{{ChunkID: "c", Score: 9}, {ChunkID: "a", Score: 5}, {ChunkID: "b", Score: 1}})
	if len(got) != 3 || got[0].ChunkID != "c" || got[1].ChunkID != "a" || got[2].ChunkID != "b" {
		t.Errorf("weight 1 on an empty dense list: %+v, want the sparse order c, a, b", got)
	}
}
