package embedded

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

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
	building int               // index work running, waiting or timed
	idle     *sync.Cond        // broadcast when building drops to 0; L is mu's write lock
	work     chan struct{}     // a token: one knowledge base's index work at a time
	exact    bool
	adds     adder // Upsert's postings, added in batches
	stopped  int   // index work not done, or not finished, because its knowledge base went (tests)
}

// Option configures a Store.
type Option func(*Store)

// Exact makes every dense search scan all the rows, however large the knowledge
// base: no approximate index is built (the baseline the benchmark compares it with).
func Exact() Option { return func(s *Store) { s.exact = true } }

// New returns an empty store.
func New(opts ...Option) *Store {
	s := &Store{kbs: make(map[string]*kb), owner: make(map[string]string), work: make(chan struct{}, 1)}
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

// tend starts the background work k's approximate index is due, if none runs: a
// build from a snapshot of the rows (the slab is only appended to, and compaction
// makes a new one) when there is no index, the knowledge base has twice the rows it
// was built from, or the rows it does not cover are a quarter of those it does;
// else the assignment of the rows not covered to their lists. Either is computed
// without the lock and installed under it, unless a compaction renumbered the rows
// meanwhile (then it is done again). Rows not covered yet are scanned exactly by
// searches; adding a row costs nothing more. Called with s.mu held for writing.
func (s *Store) tend(k *kb) {
	if s.exact || k.building {
		return
	}
	rows := len(k.denseSlot)
	covered := k.covered()
	build := rows >= annMinRows && (k.ann == nil || rows >= 2*k.ann.rows || rows-covered >= max(covered/4, 1))
	if !build && (k.ann == nil || rows == covered) {
		return
	}
	if time.Since(k.written) < annQuiet && time.Since(k.tended) < annMaxDefer {
		// Still being written to (a bulk load would outgrow each build at once):
		// wait until it has been quiet a while, or for annMaxDefer at most.
		s.later(k)
		return
	}
	k.building = true
	s.building++
	gen, dense := k.gen, k.dense.snapshot()
	ann := k.ann
	go func() {
		// One at a time: each uses every core, and holds a build's memory.
		s.work <- struct{}{}
		var x *ivf
		var lists []int32
		var done bool // not stopped because k went meanwhile
		if build {
			x = buildIVF(dense, 1, k.gone.Load)
			done = x != nil
		} else {
			lists = ann.assign(dense, covered, k.gone.Load)
			done = lists != nil
		}
		<-s.work
		s.mu.Lock()
		defer s.mu.Unlock()
		s.building--
		defer func() {
			if s.building == 0 {
				s.idle.Broadcast()
			}
		}()
		if !done {
			s.stopped++
		}
		if k.gone.Load() { // (set under the lock by DeleteKB and Close)
			return
		}
		k.building = false
		k.tended = time.Now() // (also when dropped: the next try waits to be quiet too)
		if k.gen == gen {
			if build {
				k.ann = x
				k.builds++
			} else if k.ann == ann && ann.covered() == covered {
				ann.extend(lists, covered, k.row)
			}
		}
		s.tend(k)
	}()
}

// later calls tend for k once it may have been quiet for annQuiet.
func (s *Store) later(k *kb) {
	if k.waiting {
		return
	}
	k.waiting = true
	s.building++
	time.AfterFunc(annQuiet, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.building--
		k.waiting = false
		if !s.closed && s.kbs[k.id] == k {
			s.tend(k)
		}
		if s.building == 0 {
			s.idle.Broadcast()
		}
	})
}

// Upsert implements vectorstore.Store.
func (s *Store) Upsert(ctx context.Context, points []vectorstore.Point) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("upsert: %w", err)
	}
	postings := 0
	for i := range points {
		if err := points[i].Validate(); err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
		postings += len(points[i].Sparse.Indices)
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
	s.adds.reserve(postings)
	defer s.adds.release()
	for i := range points {
		p := &points[i]
		if old, ok := s.owner[p.ChunkID]; ok {
			if k := s.kbs[old]; k != nil {
				s.adds.before(k, p.ChunkID) // the chunk may be one of this batch's
				k.remove(p.ChunkID)
				touched[k] = true
			}
		}
		k := s.kbs[p.KBID]
		if k == nil {
			k = newKB(p.KBID)
			s.kbs[p.KBID] = k
		}
		k.add(p, &s.adds)
		s.owner[p.ChunkID] = p.KBID
		touched[k] = true
	}
	s.adds.flush()
	now := time.Now()
	for k := range touched {
		k.written = now
		k.maybeCompact()
		s.tend(k)
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
	k.written = time.Now()
	k.maybeCompact()
	s.tend(k)
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
	k.gone.Store(true)
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
	indexed := false // the dense side goes through the approximate index
	if qd != nil {
		var share float64
		indexed, share = k.viaIndex(allowed)
		dense = k.searchDense(qd, limit, allowed, indexed, share)
	}
	if hasSparse {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		sc, _ := s.pool.Get().(*scratch)
		if sc == nil {
			sc = new(scratch)
		}
		sparse = k.searchSparse(sc, q.Sparse, limit, allowed, indexed)
		sc.release()
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
	for _, k := range s.kbs {
		k.gone.Store(true)
	}
	s.kbs = nil
	s.owner = nil
	return nil
}

func normalised(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	inv := 1 / math.Sqrt(n) // in float64: a tiny vector's inverse norm overflows float32
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}
