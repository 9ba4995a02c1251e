package rag

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/vectorstore"
)

func checkSorted(t *testing.T, v vectorstore.Sparse) {
	t.Helper()
	if len(v.Indices) != len(v.Values) {
		t.Fatalf("%d indices, %d values", len(v.Indices), len(v.Values))
	}
	for i := 1; i < len(v.Indices); i++ {
		if v.Indices[i-1] >= v.Indices[i] {
			t.Fatalf("indices not strictly increasing at %d: %v", i, v.Indices)
		}
	}
}

func weightOf(v vectorstore.Sparse, term string) float32 {
	if i, ok := slices.BinarySearch(v.Indices, TermID(term)); ok {
		return v.Values[i]
	}
	return 0
}

func TestDocVector(t *testing.T) {
	tests := []struct {
		name  string
		text  string
		terms map[string]int // term -> tf
	}{
		{"empty", "", nil},
		{"stopwords only", "the and of", nil},
		{"english repeats merged", "cache miss cache hit cache", map[string]int{"cach": 3, "miss": 1, "hit": 1}},
		{"chinese", "网关返回503错误，网关重试", map[string]int{"网关": 2, "关返": 1, "返回": 1, "503": 1, "错误": 1, "关重": 1, "重试": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := DocVector(tt.text)
			checkSorted(t, v)
			if len(v.Indices) != len(tt.terms) {
				t.Fatalf("%d entries, want %d", len(v.Indices), len(tt.terms))
			}
			dl := 0
			for _, tf := range tt.terms {
				dl += tf
			}
			for term, tf := range tt.terms {
				f := float64(tf)
				want := f * (K1 + 1) / (f + K1*(1-B+B*float64(dl)/AvgDocTerms))
				if got := weightOf(v, term); math.Abs(float64(got)-want) > 1e-6 {
					t.Errorf("weight(%q) = %v, want %v", term, got, want)
				}
			}
		})
	}
}

func TestDocVectorMonotonicInTF(t *testing.T) {
	// Same document length, more occurrences of "redis": its weight grows, and stays
	// below K1+1.
	prev := float32(0)
	for tf := 1; tf <= 20; tf++ {
		words := make([]string, 0, 40)
		for i := 0; i < 40; i++ {
			if i < tf {
				words = append(words, "redis5")
			} else {
				words = append(words, "w"+strings.Repeat("x", i%7+1)+string(rune('a'+i%26)))
			}
		}
		w := weightOf(DocVector(strings.Join(words, " ")), "redis5")
		if w <= prev || w >= K1+1 {
			t.Fatalf("tf=%d: weight %v after %v (cap %v)", tf, w, prev, K1+1)
		}
		prev = w
	}
	// Longer documents weigh the same tf less.
	short := weightOf(DocVector("redis cache"), "redi")
	long := weightOf(DocVector("redis "+strings.Repeat("cache ", 500)), "redi")
	if long >= short {
		t.Errorf("length normalisation: long %v >= short %v", long, short)
	}
}

func TestQueryVector(t *testing.T) {
	v := QueryVector("Redis 缓存 redis 缓存失效")
	checkSorted(t, v)
	want := map[string]bool{"redi": true, "缓存": true, "存失": true, "失效": true}
	if len(v.Indices) != len(want) {
		t.Fatalf("QueryVector has %d terms, want %d", len(v.Indices), len(want))
	}
	for term := range want {
		if weightOf(v, term) != 1 {
			t.Errorf("weight(%q) = %v, want 1", term, weightOf(v, term))
		}
	}
	if e := QueryVector("..."); len(e.Indices) != 0 {
		t.Errorf("empty query: %v", e)
	}
}

// TestChunkVector: a heading's terms count HeadingWeight times, as if the heading
// were written that many times before the text.
func TestChunkVector(t *testing.T) {
	got := ChunkVector("Guide > Install", "Run the installer.")
	want := DocVector(strings.Repeat("Guide > Install\n", HeadingWeight) + "Run the installer.")
	if !slices.Equal(got.Indices, want.Indices) || !slices.Equal(got.Values, want.Values) {
		t.Errorf("ChunkVector = %v, want %v", got, want)
	}
	if weightOf(got, "guid") <= weightOf(got, "run") {
		t.Errorf("a heading term weighs %v, a text term %v", weightOf(got, "guid"), weightOf(got, "run"))
	}
	if v := ChunkVector("", "..."); len(v.Indices) != 0 {
		t.Errorf("no terms: %v", v)
	}
}
