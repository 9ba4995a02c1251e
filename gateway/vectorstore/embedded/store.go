package embedded

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/ragway/ragway/gateway/vectorstore"
)

var _ vectorstore.Store = (*Store)(nil)

// Store is an in-memory vectorstore.Store. Searches run concurrently with each
// other; writes are serialised and exclude searches.
type Store struct {
	mu       sync.RWMutex
	closed   bool
	kbs      map[string]*kb
	owner    map[string]string // chunk id → kb id, for chunks that move between knowledge bases
	pool     sync.Pool         // *scratch
	building int               // index builds running
	idle     *sync.Cond        // broadcast when building drops to 0; L is mu's write lock
	exact    bool
}

// Option configures a Store.
type Option func(*Store)

// Exact makes every dense search scan all the rows, however large the knowledge
// base: no approximate index is built (the baseline the benchmark compares it with).
func Exact() Option { return func(s *Store) { s.exact = true } }

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{kbs: make(map[string]*kb), owner: make(map[string]string)}
	s.idle = sync.NewCond(&s.mu)
	for _, o := range opts {
		o(s)
	}
	return s
}

// Wait returns once no approximate index is being built (for tests and benchmarks:
// searches never wait for a build, they scan exactly until it is done).
func (s *Store) Wait() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.building > 0 {
		s.idle.Wait()
	}
}

// maybeBuild starts building k's approximate index in the background when one is
// due. The build reads a snapshot of the rows (the slab is only appended to, and
// compaction makes a new one) without the lock, and is installed under it: rows added
// meanwhile join their lists then; a build made before a compaction is dropped and
// started again. Called with s.mu held for writing.
func (s *Store) maybeBuild(k *kb) {
	if s.exact || !k.wantsBuild() {
		return
	}
	k.building = true
	s.building++
	rows, dim, gen := len(k.denseSlot), k.dim, k.gen
	dense := k.dense[: rows*dim : rows*dim]
	go func() {
		x := buildIVF(dense, dim, rows, 1)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.building--
		defer func() {
			if s.building == 0 {
				s.idle.Broadcast()
			}
		}()
		if s.closed || s.kbs[k.id] != k {
			return // gone meanwhile
		}
		k.building = false
		if k.gen == gen {
			for r := rows; r < len(k.denseSlot); r++ {
				x.add(k.row(r), k.row)
			}
			k.ann = x
		}
		s.maybeBuild(k)
	}()
}

// Upsert implements vectorstore.Store.
func (s *Store) Upsert(ctx context.Context, points []vectorstore.Point) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	for i := range points {
		if err := points[i].Validate(); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("upsert: %w", vectorstore.ErrClosed)
	}
	// Check dense dimensions for the whole batch before writing anything.
	dims := make(map[string]int)
	for i := range points {
		p := &points[i]
		if p.Dense == nil {
			continue
		}
		d, ok := dims[p.KBID]
		if !ok {
			if k := s.kbs[p.KBID]; k != nil {
				d = k.dim
			}
		}
		if d == 0 {
			d = len(p.Dense)
		}
		if len(p.Dense) != d {
			return fmt.Errorf("upsert: chunk %s: %w: dense dimension %d, knowledge base %s has %d",
				p.ChunkID, vectorstore.ErrInvalid, len(p.Dense), p.KBID, d)
		}
		dims[p.KBID] = d
	}
	touched := make(map[*kb]bool)
	for i := range points {
		p := &points[i]
		if old, ok := s.owner[p.ChunkID]; ok {
			if k := s.kbs[old]; k != nil {
				k.remove(p.ChunkID)
				touched[k] = true
			}
		}
		k := s.kbs[p.KBID]
		if k == nil {
			k = newKB(p.KBID)
			s.kbs[p.KBID] = k
		}
		k.add(p)
		s.owner[p.ChunkID] = p.KBID
		touched[k] = true
	}
	for k := range touched {
		k.maybeCompact()
		s.maybeBuild(k)
	}
	return nil
}

// DeleteDocument implements vectorstore.Store.
func (s *Store) DeleteDocument(ctx context.Context, kbID, documentID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete document: %w", err)
	}
	if kbID == "" || documentID == "" {
		return fmt.Errorf("delete document: %w: empty kb or document id", vectorstore.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("delete document: %w", vectorstore.ErrClosed)
	}
	k := s.kbs[kbID]
	if k == nil {
		return nil
	}
	for _, id := range k.removeDocument(documentID) {
		delete(s.owner, id)
	}
	k.maybeCompact()
	s.maybeBuild(k)
	return nil
}

// KBIDs implements vectorstore.KBLister: the knowledge bases the index holds.
func (s *Store) KBIDs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.kbs))
	for id := range s.kbs {
		out = append(out, id)
	}
	return out
}

// DeleteKB implements vectorstore.Store.
func (s *Store) DeleteKB(ctx context.Context, kbID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete kb: %w", err)
	}
	if kbID == "" {
		return fmt.Errorf("delete kb: %w: empty kb id", vectorstore.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("delete kb: %w", vectorstore.ErrClosed)
	}
	k := s.kbs[kbID]
	if k == nil {
		return nil
	}
	for id := range k.slotOf {
		delete(s.owner, id)
	}
	delete(s.kbs, kbID)
	return nil
}

// Search implements vectorstore.Store.
func (s *Store) Search(ctx context.Context, q vectorstore.Query) ([]vectorstore.Hit, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	var qd []float32
	if q.Dense != nil {
		qd = normalised(q.Dense)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, fmt.Errorf("search: %w", vectorstore.ErrClosed)
	}
	k := s.kbs[q.KBID]
	if k == nil {
		return nil, nil
	}
	if qd != nil && k.dim != 0 && len(qd) != k.dim {
		return nil, fmt.Errorf("search: %w: dense dimension %d, knowledge base %s has %d",
			vectorstore.ErrInvalid, len(qd), q.KBID, k.dim)
	}
	allowed, found := k.allowedDocs(q.DocumentIDs)
	if !found {
		return nil, nil
	}
	hasSparse := len(q.Sparse.Indices) > 0
	limit := q.TopK
	if qd != nil && hasSparse {
		limit = vectorstore.PrefetchLimit(q.TopK)
	}
	var dense, sparse []vectorstore.Hit
	if qd != nil {
		dense = k.searchDense(qd, limit, allowed)
	}
	if hasSparse {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		sc, _ := s.pool.Get().(*scratch)
		if sc == nil {
			sc = new(scratch)
		}
		sparse = k.searchSparse(sc, q.Sparse, limit, allowed)
		s.pool.Put(sc)
	}
	switch {
	case qd == nil:
		return sparse, nil
	case !hasSparse:
		return dense, nil
	}
	return q.Fusion.Fuse(q.TopK, dense, sparse), nil
}

// Close implements vectorstore.Store. It drops the index.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.kbs = nil
	s.owner = nil
	return nil
}

func normalised(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	inv := float32(1 / math.Sqrt(n))
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}
