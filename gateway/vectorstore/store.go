package vectorstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Sentinel errors callers branch on. Implementations wrap them with %w.
var (
	// ErrInvalid: malformed input (empty ids, a ChunkID that is not a UUID,
	// mismatched or unsorted sparse arrays, NaN/Inf values, a zero dense
	// vector, TopK not 1 to MaxTopK, a query with neither vector) or a dense vector whose
	// dimension differs from the one its knowledge base already has.
	ErrInvalid = errors.New("vectorstore: invalid input")
	// ErrUnavailable: the store cannot be reached; retrying later may work.
	ErrUnavailable = errors.New("vectorstore: unavailable")
	// ErrClosed: the Store was used after Close.
	ErrClosed = errors.New("vectorstore: closed")
)

// RRFK is the default rank constant of reciprocal rank fusion: a point at
// 1-based rank r in a list contributes 1/(k + r). (Qdrant counts positions from
// 0 and defaults to k = 2, so a Qdrant store must ask for k+1 explicitly.)
const RRFK = 60

// MaxRRFK bounds Fusion.K.
const MaxRRFK = 100000

// Fusion methods.
const (
	// FusionRRF is reciprocal rank fusion: Σ 1/(k + rank) over the lists.
	FusionRRF = "rrf"
	// FusionWeighted is a weighted sum of scores normalised per list: each list's
	// scores are scaled to [0, 1] by its best and worst candidate (min-max), and a
	// point scores DenseWeight·dense + (1 − DenseWeight)·sparse, 0 for a list it is
	// not in. Unlike RRF it keeps how far apart the scores of a list are.
	FusionWeighted = "weighted"
)

// Fusion is how a hybrid query's dense and sparse lists become one. The zero value
// is RRF with k = RRFK.
type Fusion struct {
	// Method is FusionRRF ("" too) or FusionWeighted.
	Method string
	// K is RRF's rank constant, 1 to MaxRRFK; 0 means RRFK.
	K int
	// DenseWeight is the weighted method's share of the dense list, 0 to 1.
	DenseWeight float64
}

// Validate reports whether f is well formed.
func (f Fusion) Validate() error {
	switch f.Method {
	case "", FusionRRF, FusionWeighted:
	default:
		return fmt.Errorf("%w: fusion method %q", ErrInvalid, f.Method)
	}
	if f.K < 0 || f.K > MaxRRFK {
		return fmt.Errorf("%w: rrf k %d is not in [0, %d]", ErrInvalid, f.K, MaxRRFK)
	}
	if !(f.DenseWeight >= 0 && f.DenseWeight <= 1) {
		return fmt.Errorf("%w: dense weight %v is not in [0, 1]", ErrInvalid, f.DenseWeight)
	}
	return nil
}

// Fuse fuses a hybrid query's dense and sparse lists (each best first, up to
// PrefetchLimit candidates) by f and returns the top topK.
func (f Fusion) Fuse(topK int, dense, sparse []Hit) []Hit {
	if f.Method == FusionWeighted {
		return FuseWeighted(topK, f.DenseWeight, dense, sparse)
	}
	return FuseRRF(topK, cmp.Or(f.K, RRFK), dense, sparse)
}

// PrefetchLimit is how many candidates a hybrid search takes from each of the
// dense and sparse lists before fusing them: max(4·topK, 20).
func PrefetchLimit(topK int) int {
	return max(4*topK, 20)
}

// IDF is the inverse document frequency of a term that occurs in n of the N
// points of a knowledge base: ln(1 + (N − n + 0.5)/(n + 0.5)), the formula of
// Qdrant's IDF modifier. Sparse vectors carry weights without idf; the store
// applies it at query time, so it always reflects the current contents.
func IDF(N, n int) float64 {
	return math.Log(1 + (float64(N)-float64(n)+0.5)/(float64(n)+0.5))
}

// Point is one chunk as the store indexes it.
type Point struct {
	// ChunkID identifies the point across the whole store: a UUID in canonical
	// lower-case form (Qdrant point ids are UUIDs). Upserting an existing
	// ChunkID replaces the point. A chunk belongs to one knowledge base for
	// its lifetime; callers do not move it to another.
	ChunkID    string
	KBID       string
	DocumentID string
	// Dense is the embedding, or nil when the knowledge base has no
	// embedding model. All dense vectors of one knowledge base have the same
	// dimension, fixed by the first one stored (until DeleteKB).
	Dense []float32
	// Sparse holds document-side term weights (BM25 term-frequency part,
	// without idf). It may be empty: the point is then found only by Dense.
	Sparse Sparse
}

// MaxTopK bounds Query.TopK: a store sizes its lists of hits by it. The gateway
// asks for 200 at most (rerank candidates).
const MaxTopK = 10_000

// Query is one search within one knowledge base.
type Query struct {
	KBID string
	// Dense is the query embedding; nil for a sparse-only search.
	Dense []float32
	// Sparse holds query term weights (rag uses 1 per term); empty for a
	// dense-only search. At least one of Dense and Sparse must be given.
	Sparse Sparse
	// TopK is the number of hits wanted, 1 to MaxTopK.
	TopK int
	// DocumentIDs, if not empty, restricts hits to these documents.
	DocumentIDs []string
	// Fusion is how a hybrid query's lists are fused (zero: RRF, k = RRFK).
	Fusion Fusion
}

// Hit is one search result.
type Hit struct {
	ChunkID    string
	DocumentID string
	// Score depends on the query: for sparse-only, Σ q·idf·w over shared
	// terms; for dense-only, the cosine similarity; for hybrid, the fused
	// score (Fusion): Σ 1/(k + rank) over the dense and sparse lists, or the
	// weighted sum of their normalised scores.
	Score float64
}

// Store is a searchable index of chunk vectors, partitioned by knowledge base.
// Implementations are safe for concurrent use.
//
// Search semantics:
//   - Only points of q.KBID (and of q.DocumentIDs, if given) are ever returned.
//   - Sparse list: points sharing at least one term with q.Sparse, scored
//     Σ q_t · IDF(N, n_t) · w_t, where N is the number of points with a
//     non-empty sparse vector in the knowledge base and n_t the number of
//     those containing t. (Qdrant keeps these statistics per collection,
//     which may hold several knowledge bases of one embedding space.)
//   - Dense list: points with a dense vector, scored by cosine similarity.
//   - Only one of q.Dense and q.Sparse given: the top q.TopK of that list with
//     its scores. Both given: the top PrefetchLimit(q.TopK) of each list,
//     fused by q.Fusion (Fusion.Fuse), then the top q.TopK.
//   - Hits are ordered by score descending, then ChunkID ascending (weighted
//     fusion: equal fused scores by their ranks in the lists first, see
//     FuseWeighted).
//   - Hits are ordered by score descending, then ChunkID ascending.
//   - A knowledge base with no points yields no hits and no error; a dense
//     query against one without dense vectors has an empty dense list.
type Store interface {
	// Upsert inserts or replaces points, keyed by ChunkID. Replacing is
	// idempotent: upserting the same point twice leaves one point. The batch
	// is validated as a whole; on ErrInvalid nothing is written.
	Upsert(ctx context.Context, points []Point) error
	// DeleteDocument removes every point of one document. Deleting what does
	// not exist is not an error.
	DeleteDocument(ctx context.Context, kbID, documentID string) error
	// DeleteKB removes every point of a knowledge base and forgets its dense
	// dimension. Deleting what does not exist is not an error.
	DeleteKB(ctx context.Context, kbID string) error
	// Search returns at most q.TopK hits; see the Store documentation.
	Search(ctx context.Context, q Query) ([]Hit, error)
	// Close releases the store; later calls return ErrClosed.
	Close() error
}

// KBLister is an index that can list the knowledge bases it holds (the embedded one):
// what a reload drops the deleted ones by.
type KBLister interface {
	KBIDs() []string
}

// Validate reports whether s is well formed: as many values as indices,
// indices strictly increasing, values finite.
func (s Sparse) Validate() error {
	if len(s.Indices) != len(s.Values) {
		return fmt.Errorf("%w: sparse vector has %d indices and %d values", ErrInvalid, len(s.Indices), len(s.Values))
	}
	for i, v := range s.Values {
		if i > 0 && s.Indices[i] <= s.Indices[i-1] {
			return fmt.Errorf("%w: sparse indices not strictly increasing at %d", ErrInvalid, i)
		}
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: sparse value %d is not finite", ErrInvalid, i)
		}
	}
	return nil
}

// Validate checks everything about p that does not depend on the store's
// contents (not the dense dimension).
func (p Point) Validate() error {
	if !IsUUID(p.ChunkID) {
		return fmt.Errorf("%w: chunk id %q is not a lower-case UUID", ErrInvalid, p.ChunkID)
	}
	if p.KBID == "" || p.DocumentID == "" {
		return fmt.Errorf("%w: chunk %s: empty kb or document id", ErrInvalid, p.ChunkID)
	}
	if p.Dense != nil {
		if err := validateDense(p.Dense); err != nil {
			return fmt.Errorf("chunk %s: %w", p.ChunkID, err)
		}
	}
	if err := p.Sparse.Validate(); err != nil {
		return fmt.Errorf("chunk %s: %w", p.ChunkID, err)
	}
	return nil
}

// Validate checks everything about q that does not depend on the store's
// contents (not the dense dimension).
func (q Query) Validate() error {
	if q.KBID == "" {
		return fmt.Errorf("%w: empty kb id", ErrInvalid)
	}
	if q.TopK < 1 || q.TopK > MaxTopK {
		return fmt.Errorf("%w: top_k %d is not 1 to %d", ErrInvalid, q.TopK, MaxTopK)
	}
	if q.Dense == nil && len(q.Sparse.Indices) == 0 {
		return fmt.Errorf("%w: query has neither a dense nor a sparse vector", ErrInvalid)
	}
	if q.Dense != nil {
		if err := validateDense(q.Dense); err != nil {
			return fmt.Errorf("query: %w", err)
		}
	}
	if err := q.Sparse.Validate(); err != nil {
		return fmt.Errorf("query: %w", err)
	}
	if err := q.Fusion.Validate(); err != nil {
		return fmt.Errorf("query: %w", err)
	}
	return nil
}

func validateDense(v []float32) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: empty dense vector", ErrInvalid)
	}
	var norm float64
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%w: dense vector has a non-finite value", ErrInvalid)
		}
		norm += float64(x) * float64(x)
	}
	if norm == 0 {
		return fmt.Errorf("%w: zero dense vector", ErrInvalid)
	}
	return nil
}

// IsUUID reports whether s is a UUID in canonical lower-case form
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// FuseRRF fuses ranked lists (each best first) by reciprocal rank fusion with
// rank constant k and returns the top topK, ordered by fused score descending,
// then ChunkID.
func FuseRRF(topK, k int, lists ...[]Hit) []Hit {
	return fuse(topK, len(lists), func(i int) ([]Hit, func(r int, h Hit) float64) {
		return lists[i], func(r int, _ Hit) float64 { return 1 / float64(k+r+1) }
	})
}

// FuseWeighted fuses a dense and a sparse list (each best first) by the weighted
// sum of their min-max normalised scores (FusionWeighted) and returns the top
// topK, ordered by fused score descending; equal scores by their rank in the list
// weighted more (dense at 0.5), then in the other (a hit not in a list ranks after
// every hit in it), then ChunkID, so that a list weighted 0, or the only list
// there is, still orders its hits. A list whose scores are all equal normalises
// them to 1.
func FuseWeighted(topK int, denseWeight float64, dense, sparse []Hit) []Hit {
	weights := [2]float64{denseWeight, 1 - denseWeight}
	lists := [2][]Hit{dense, sparse}
	order := []int{0, 1}
	if denseWeight < 0.5 {
		order = []int{1, 0}
	}
	return fuseBy(topK, 2, order, func(i int) ([]Hit, func(r int, h Hit) float64) {
		l := lists[i]
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, h := range l {
			lo, hi = min(lo, h.Score), max(hi, h.Score)
		}
		w := weights[i]
		return l, func(_ int, h Hit) float64 {
			if hi == lo {
				return w
			}
			return w * (h.Score - lo) / (hi - lo)
		}
	})
}

// fuse sums, for each point of n lists, what list(i)'s score function gives it
// at its (0-based) rank, and returns the top topK, ordered by score, then ChunkID.
func fuse(topK, n int, list func(i int) ([]Hit, func(r int, h Hit) float64)) []Hit {
	return fuseBy(topK, n, nil, list)
}

// fuseBy is fuse with equal scores ordered by the points' ranks in the lists
// named by order, in that order, before ChunkID.
func fuseBy(topK, n int, order []int, list func(i int) ([]Hit, func(r int, h Hit) float64)) []Hit {
	type acc struct {
		Hit
		ranks []int // by list; math.MaxInt when not in it
	}
	m := make(map[string]*acc)
	for i := range n {
		l, score := list(i)
		for r, h := range l {
			a := m[h.ChunkID]
			if a == nil {
				a = &acc{Hit: Hit{ChunkID: h.ChunkID, DocumentID: h.DocumentID}, ranks: make([]int, n)}
				for k := range a.ranks {
					a.ranks[k] = math.MaxInt
				}
				m[h.ChunkID] = a
			}
			a.Score += score(r, h)
			a.ranks[i] = min(a.ranks[i], r)
		}
	}
	out := make([]*acc, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b *acc) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		for _, i := range order {
			if c := cmp.Compare(a.ranks[i], b.ranks[i]); c != 0 {
				return c
			}
		}
		return strings.Compare(a.ChunkID, b.ChunkID)
	})
	hits := make([]Hit, min(len(out), topK))
	for i := range hits {
		hits[i] = out[i].Hit
	}
	return hits
}

// SortHits orders hits by score descending, then ChunkID ascending.
func SortHits(h []Hit) {
	slices.SortFunc(h, func(a, b Hit) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return strings.Compare(a.ChunkID, b.ChunkID)
	})
}
