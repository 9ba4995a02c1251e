package rag

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/vectorstore"
)

func TestParseSettings(t *testing.T) {
	good, err := ParseSettings([]byte(`{"fusion": "weighted", "dense_weight": 0, "rrf_k": 10, "chunk_tokens": 300, "chunk_overlap": 0}`), "retrieval")
	if err != nil || good.Fusion != "weighted" || good.DenseWeight == nil || *good.DenseWeight != 0 || good.RRFK != 10 ||
		good.ChunkTokens != 300 || good.ChunkOverlap == nil || *good.ChunkOverlap != 0 {
		t.Fatalf("ParseSettings = %+v, %v", good, err)
	}
	if s, err := ParseSettings(nil, "retrieval"); err != nil || s.String() != "{}" {
		t.Errorf("no settings: %v, %v", s, err)
	}
	if s, err := ParseSettings([]byte("null"), "retrieval"); err != nil || s.String() != "{}" {
		t.Errorf("null: %v, %v", s, err)
	}
	for in, field := range map[string]string{
		`{"fusion": "max"}`:                           "retrieval.fusion",
		`{"rrf_k": -1}`:                               "retrieval.rrf_k",
		`{"rrf_k": 100001}`:                           "retrieval.rrf_k",
		`{"rrf_k": "60"}`:                             "retrieval.rrf_k",
		`{"dense_weight": 1.5}`:                       "retrieval.dense_weight",
		`{"dense_weight": -0.1}`:                      "retrieval.dense_weight",
		`{"chunk_tokens": 9000}`:                      "retrieval.chunk_tokens",
		`{"chunk_tokens": 100, "chunk_overlap": 100}`: "retrieval.chunk_overlap",
		`{"chunk_tokens": 100, "chunk_overlap": 51}`:  "retrieval.chunk_overlap",
		`{"FUSION": "rrf"}`:                           "retrieval.FUSION",
		`{"fusion": "rrf", "fusion": "weighted"}`:     "retrieval",
		`{"dense_weight": 1e400}`:                     "retrieval.dense_weight",
		`{"rerank": "yes"}`:                           "retrieval.rerank",
		`{"rerank_candidates": 201}`:                  "retrieval.rerank_candidates",
		`{"chunk_overlap": -1}`:                       "retrieval.chunk_overlap",
		`{"fussion": "rrf"}`:                          "retrieval.fussion",
		`[1]`:                                         "retrieval",
		`{} {}`:                                       "retrieval",
	} {
		_, err := ParseSettings([]byte(in), "retrieval")
		var se *SettingsError
		if !errors.As(err, &se) || se.Field != field {
			t.Errorf("ParseSettings(%s) = %v, want an error naming %s", in, err, field)
		}
	}
	_, err = ParseSettings([]byte(`{"fussion": "rrf"}`), "retrieval")
	const known = "(known: fusion, rrf_k, dense_weight, rerank, rerank_candidates, chunk_tokens, chunk_overlap)"
	if err == nil || !strings.HasSuffix(err.Error(), known) {
		t.Errorf("an unknown setting: %v, want the known ones listed %s", err, known)
	}
	if err := (Settings{ChunkTokens: 300}).CheckSearch("retrieval"); err == nil {
		t.Error("a search may not set chunk_tokens")
	}
}

func TestSettingsOver(t *testing.T) {
	half, zero := 0.5, 0
	base := Settings{Fusion: "rrf", RRFK: 60, DenseWeight: &half, ChunkTokens: 800}
	got := Settings{Fusion: "weighted", ChunkOverlap: &zero}.Over(base)
	if got.Fusion != "weighted" || got.RRFK != 60 || *got.DenseWeight != 0.5 || got.ChunkTokens != 800 || *got.ChunkOverlap != 0 {
		t.Errorf("Over = %+v", got)
	}
	if f := got.VectorFusion(); f != (vectorstore.Fusion{Method: "weighted", K: 60, DenseWeight: 0.5}) {
		t.Errorf("VectorFusion = %+v", f)
	}
	// Chunk sizes: a new size without an overlap takes the default share of it; an
	// overlap of 0 is none.
	if o := (Settings{ChunkTokens: 200}).ChunkOptions(Options{ChunkTokens: 800, Overlap: 120}); o != (Options{ChunkTokens: 200}) {
		t.Errorf("ChunkOptions = %+v", o)
	}
	if o := (Settings{ChunkOverlap: &zero}).ChunkOptions(Options{ChunkTokens: 800, Overlap: 120}); o != (Options{ChunkTokens: 800, Overlap: -1}) {
		t.Errorf("ChunkOptions = %+v", o)
	}
}

// recordingStore is a vectorstore.Store that records its queries.
type recordingStore struct {
	vectorstore.Store
	queries []vectorstore.Query
}

func (r *recordingStore) Search(ctx context.Context, q vectorstore.Query) ([]vectorstore.Hit, error) {
	r.queries = append(r.queries, q)
	return nil, nil
}

// TestRetrieveSettings: a search's settings over the knowledge base's over the
// gateway's reach the index.
func TestRetrieveSettings(t *testing.T) {
	half, most := 0.5, 0.9
	rec := &recordingStore{}
	r := &Retriever{Vectors: rec, Chunks: newMemChunks("alice"), Defaults: Settings{Fusion: "rrf", RRFK: 60, DenseWeight: &half}}
	for _, tc := range []struct {
		kb, search Settings
		want       vectorstore.Fusion
	}{
		{Settings{}, Settings{}, vectorstore.Fusion{Method: "rrf", K: 60, DenseWeight: 0.5}},
		{Settings{RRFK: 5}, Settings{}, vectorstore.Fusion{Method: "rrf", K: 5, DenseWeight: 0.5}},
		{Settings{RRFK: 5}, Settings{Fusion: "weighted", DenseWeight: &most}, vectorstore.Fusion{Method: "weighted", K: 5, DenseWeight: 0.9}},
	} {
		rec.queries = nil
		if _, err := r.Retrieve(context.Background(), Request{UserID: "alice", KBID: kbA, Query: "reconnects", TopK: 3, KB: tc.kb, Search: tc.search}); err != nil {
			t.Fatal(err)
		}
		if len(rec.queries) != 1 || rec.queries[0].Fusion != tc.want {
			t.Errorf("kb %v, search %v: queries %+v, want fusion %+v", tc.kb, tc.search, rec.queries, tc.want)
		}
	}
}
