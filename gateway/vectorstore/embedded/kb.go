package embedded

import (
	"cmp"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viterin/vek/vek32"
	"golang.org/x/sys/cpu"

	"github.com/ragway/ragway/gateway/vectorstore"
)

// kb is the index of one knowledge base. Points live in slots; a replaced or
// deleted point leaves a dead slot until compaction renumbers the live ones.
type kb struct {
	id  string
	dim int // dense dimension, 0 until the first dense vector

	// Per slot.
	ids      []string
	keys     []idKey // of ids: ties between hits are broken by them
	doc      []int32 // index into docNames
	dead     []bool
	terms    [][]uint32 // sparse term ids, to maintain document frequencies on delete
	denseRow []int32    // row in dense, or -1

	dense     slab    // normalised vectors
	denseSlot []int32 // row → slot

	slotOf   map[string]int32 // live chunk id → slot
	docNames []string
	docIdx   map[string]int32
	docSlots [][]int32 // by doc index; may list dead slots

	post    map[uint32]*postings
	bySlot  map[uint32][]float32 // by term: its weights by slot (postings.bySlot)
	nSparse int                  // live points with a non-empty sparse vector: N of idf
	nDead   int

	// The approximate dense index of the first rows, the others are scanned
	// exactly: nil until the first build completes (and below annMinRows).
	// building is set while background work on it runs; gen counts compactions,
	// which renumber the rows it read.
	ann      *ivf
	building bool
	gen      int
	written  time.Time // the last write: work on the index waits for annQuiet after it
	tended   time.Time // the last work on the index (or the creation): it waits annMaxDefer at most
	waiting  bool      // a timer will call tend
	builds   int       // builds installed (tests)
	// gone: deleted, or its store closed. Background work on the index stops at
	// its next step (read without the store's lock).
	gone atomic.Bool
}

// postings of one term, as parallel arrays in slot order. They may include
// dead slots; df counts only live ones. lo and hi bound the weights (of every
// posting added, so they may be loose). A term held by half the slots or more also
// has its weights by slot (kb.bySlot), for the slots [0, bySlot).
//
// 64 bytes: a rare term's are seldom in cache when an upsert reaches them, and a
// struct over 64 bytes (96 with its size class) lies across two cache lines one time
// in two. Upserting the bench's million chunks (sparse vectors only) when postings
// were added one by one, 4 alternating rounds in one process: 33.3 s on average
// against 35.0 s with the weights by slot in the struct (88 bytes).
type postings struct {
	slots   []int32
	weights []float32
	df      int32
	lo, hi  float32
	bySlot  int32
}

// A term held by half the slots or more, in a knowledge base of bySlotMin slots or
// more, keeps its weights by slot as well, for the slots [0, len(bySlot)) (0 where
// it is absent): a search adds those with vector instructions, at a third of the
// time a posting takes (measured: 0.35 ns a slot against 1.2 ns a posting), for 4
// bytes a slot (no more than its postings take when built). They are built again
// for all the slots when those grow by a third (so a term's are built a few times
// as a knowledge base grows); the postings of later slots are only in postings.
// Every path rounds a product before adding it, as the vector instructions do (the
// float32 conversions: Go may otherwise fuse a multiply and an add), so a score does
// not depend on the path. A variable so that tests can build them for small
// knowledge bases.
var bySlotMin = 1 << 16

// bySlotFor reports whether a term of n postings keeps its weights by slot in a
// knowledge base of slots slots.
func bySlotFor(n, slots int) bool { return slots >= bySlotMin && 2*n >= slots }

// wantsBySlot reports whether pl's weights by slot should be built (again).
func (k *kb) wantsBySlot(pl *postings) bool {
	n := len(k.ids)
	return bySlotFor(len(pl.slots), n) && 4*int(pl.bySlot) < 3*n
}

// buildBySlot sets the weights by slot of term t (postings pl) for the slots [0, n).
func (k *kb) buildBySlot(t uint32, pl *postings, n int) {
	d := make([]float32, n)
	for i, s := range pl.slots {
		d[s] = pl.weights[i]
	}
	k.bySlot[t], pl.bySlot = d, int32(n)
}

func newKB(id string) *kb {
	return &kb{
		id:     id,
		tended: time.Now(),
		slotOf: make(map[string]int32),
		docIdx: make(map[string]int32),
		post:   make(map[uint32]*postings),
		bySlot: make(map[uint32][]float32),
	}
}

// add puts p in a new slot; its postings go through a (a.flush adds them).
func (k *kb) add(p *vectorstore.Point, a *adder) {
	slot := int32(len(k.ids))
	d, ok := k.docIdx[p.DocumentID]
	if !ok {
		d = int32(len(k.docNames))
		k.docNames = append(k.docNames, p.DocumentID)
		k.docIdx[p.DocumentID] = d
		k.docSlots = append(k.docSlots, nil)
	}
	k.ids = append(k.ids, p.ChunkID)
	k.keys = append(k.keys, keyOf(p.ChunkID))
	k.doc = append(k.doc, d)
	k.dead = append(k.dead, false)
	k.docSlots[d] = append(k.docSlots[d], slot)
	k.slotOf[p.ChunkID] = slot

	row := int32(-1)
	if p.Dense != nil {
		if k.dim == 0 {
			k.dim = len(p.Dense)
			k.dense.dim = k.dim
		}
		row = int32(len(k.denseSlot))
		k.denseSlot = append(k.denseSlot, slot)
		v := normalised(p.Dense)
		k.dense.append(v)
	}
	k.denseRow = append(k.denseRow, row)

	var terms []uint32
	if n := len(p.Sparse.Indices); n > 0 {
		terms = slices.Clone(p.Sparse.Indices)
		a.add(k, terms, p.Sparse.Values, slot)
		k.nSparse++
	}
	k.terms = append(k.terms, terms)
}

// remove marks the live point chunkID dead, if there is one.
func (k *kb) remove(chunkID string) {
	slot, ok := k.slotOf[chunkID]
	if !ok {
		return
	}
	k.kill(slot)
}

// kill marks slot dead. Its postings must have been added (adder.flush).
func (k *kb) kill(slot int32) {
	k.dead[slot] = true
	k.nDead++
	delete(k.slotOf, k.ids[slot])
	if terms := k.terms[slot]; len(terms) > 0 {
		for _, t := range terms {
			k.post[t].df--
		}
		k.nSparse--
	}
	k.terms[slot] = nil
}

// removeDocument kills every live point of documentID and returns their ids.
func (k *kb) removeDocument(documentID string) []string {
	d, ok := k.docIdx[documentID]
	if !ok {
		return nil
	}
	var ids []string
	for _, slot := range k.docSlots[d] {
		if !k.dead[slot] {
			ids = append(ids, k.ids[slot])
			k.kill(slot)
		}
	}
	k.docSlots[d] = nil
	return ids
}

// maybeCompact renumbers the live slots when more than a quarter are dead.
func (k *kb) maybeCompact() {
	if k.nDead == 0 || k.nDead*4 <= len(k.ids) {
		return
	}
	remap := make([]int32, len(k.ids))
	rowRemap := make([]int32, len(k.denseSlot))
	live := len(k.ids) - k.nDead
	ids := make([]string, 0, live)
	keys := make([]idKey, 0, live)
	doc := make([]int32, 0, live)
	terms := make([][]uint32, 0, live)
	denseRow := make([]int32, 0, live)
	dense := slab{dim: k.dim}
	var denseSlot []int32
	docNames := make([]string, 0, len(k.docNames))
	docIdx := make(map[string]int32, len(k.docNames))
	var docSlots [][]int32
	for old := range k.ids {
		if k.dead[old] {
			remap[old] = -1
			if r := k.denseRow[old]; r >= 0 {
				rowRemap[r] = -1
			}
			continue
		}
		slot := int32(len(ids))
		remap[old] = slot
		ids = append(ids, k.ids[old])
		keys = append(keys, k.keys[old])
		name := k.docNames[k.doc[old]]
		d, ok := docIdx[name]
		if !ok {
			d = int32(len(docNames))
			docNames = append(docNames, name)
			docIdx[name] = d
			docSlots = append(docSlots, nil)
		}
		doc = append(doc, d)
		docSlots[d] = append(docSlots[d], slot)
		terms = append(terms, k.terms[old])
		row := int32(-1)
		if r := k.denseRow[old]; r >= 0 {
			row = int32(len(denseSlot))
			rowRemap[r] = row
			denseSlot = append(denseSlot, slot)
			dense.append(k.row(int(r)))
		}
		denseRow = append(denseRow, row)
		k.slotOf[k.ids[old]] = slot
	}
	for t, pl := range k.post {
		if pl.df == 0 {
			delete(k.post, t)
			delete(k.bySlot, t)
			continue
		}
		n := 0
		for i, s := range pl.slots {
			if ns := remap[s]; ns >= 0 {
				pl.slots[n] = ns
				pl.weights[n] = pl.weights[i]
				n++
			}
		}
		pl.slots = slices.Clip(pl.slots[:n])
		pl.weights = slices.Clip(pl.weights[:n])
		if pl.bySlot != 0 { // renumbered: again, or none if the term is no longer as common
			delete(k.bySlot, t)
			pl.bySlot = 0
			if bySlotFor(len(pl.slots), live) {
				k.buildBySlot(t, pl, live)
			}
		}
	}
	k.ids, k.keys, k.doc, k.terms, k.denseRow = ids, keys, doc, terms, denseRow
	k.dead = make([]bool, len(ids))
	k.dense, k.denseSlot = dense, denseSlot
	k.docNames, k.docIdx, k.docSlots = docNames, docIdx, docSlots
	k.nDead = 0
	k.gen++
	if k.ann != nil {
		if len(denseSlot) < annMinRows/2 {
			k.ann = nil // small again: exact
		} else {
			k.ann.renumber(rowRemap)
		}
	}
}

// covered is the number of rows the approximate index covers (the first ones).
func (k *kb) covered() int {
	if k.ann == nil {
		return 0
	}
	return k.ann.covered()
}

func (k *kb) row(r int) []float32 { return k.dense.row(r) }

// allowedDocs turns a document filter into a mask by doc index: nil means
// every document; any is false when no listed document exists.
func (k *kb) allowedDocs(documentIDs []string) (mask []bool, found bool) {
	if len(documentIDs) == 0 {
		return nil, true
	}
	mask = make([]bool, len(k.docNames))
	for _, id := range documentIDs {
		if d, ok := k.docIdx[id]; ok {
			mask[d] = true
			found = true
		}
	}
	return mask, found
}

// scratch is per-search working memory for sparse scoring, pooled.
type scratch struct {
	acc     []float32 // by slot; valid for the slots touched
	seen    []uint64  // a bit by slot: touched by this search (small enough to stay in cache)
	touched []int32
	mark    []byte // by slot: touched by this search (sparseRange, unless positive)
	terms   []queryTerm
	// positive: every term adds more than zero to the score of each slot it holds,
	// so a slot was touched if and only if its score is above zero.
	positive bool
	byID     termTable // of terms (sparseApprox)
}

// queryTerm is a query term's postings, weights by slot (if it has them) and
// weight: IDF × the query's value.
type queryTerm struct {
	pl     *postings
	bySlot []float32
	qw     float32
	id     uint32
}

// weightOf returns the weight of t in slot s (0 if s lacks it).
func (t queryTerm) weightOf(s int32) float32 {
	if int(s) < len(t.bySlot) {
		return t.bySlot[s]
	}
	if j, found := slices.BinarySearch(t.pl.slots, s); found {
		return t.pl.weights[j]
	}
	return 0
}

// in returns the postings of t in the slots [lo, hi).
func (t queryTerm) in(lo, hi int32) ([]int32, []float32) {
	slots := t.pl.slots
	j0, _ := slices.BinarySearch(slots, lo)
	j1, _ := slices.BinarySearch(slots[j0:], hi)
	ss, ws := slots[j0:j0+j1], t.pl.weights[j0:j0+j1]
	return ss, ws[:len(ss)]
}

// release drops what sc holds of a knowledge base (it goes back to a pool).
func (sc *scratch) release() {
	clear(sc.terms)
	sc.terms = sc.terms[:0]
	clear(sc.byID.cells)
}

func (sc *scratch) reset(n int) {
	if len(sc.acc) < n {
		size := n + n/4 // (a knowledge base being written to grows between searches)
		sc.acc = make([]float32, size)
		sc.seen = make([]uint64, (size+63)/64)
		sc.mark = make([]byte, size)
	} else {
		clear(sc.seen[:(n+63)/64])
	}
	sc.touched = sc.touched[:0]
}

// Sparse search accumulates scores term after term. A query whose postings are few
// next to the slots (less than 1/sparseDenseShare of them: the break-even measured
// at 1M slots) keeps a list of the slots it touched; a heavier one (common terms,
// long queries) adds into the whole accumulator array, in slot ranges on up to
// GOMAXPROCS goroutines (a range for each parallelSparseWork postings), marking the
// slots it touches with a byte each. Variables so that tests can take every path on
// small inputs.
var (
	sparseDenseShare   = 2
	parallelSparseWork = 1 << 19
	bySlotScan         = true // (kb.bySlot)
)

func (k *kb) searchSparse(sc *scratch, q vectorstore.Sparse, limit int, allowed []bool, approx bool) []vectorstore.Hit {
	terms := sc.terms[:0]
	work := 0
	positive := true
	for i, t := range q.Indices {
		pl := k.post[t]
		if pl == nil || pl.df == 0 {
			continue
		}
		qw := float32(vectorstore.IDF(k.nSparse, int(pl.df))) * q.Values[i]
		var d []float32
		if pl.bySlot != 0 {
			d = k.bySlot[t]
		}
		terms = append(terms, queryTerm{pl, d, qw, t})
		work += len(pl.slots)
		// Float products are monotonic in each factor: the least of qw × weight is
		// one of these two. An infinite qw (a huge query value) is not positive:
		// ∞ × 0, the weight by slot of a slot without the term, is NaN.
		positive = positive && min(qw*pl.lo, qw*pl.hi) > 0 && !math.IsInf(float64(qw), 0)
	}
	sc.terms, sc.positive = terms, positive
	if work == 0 {
		return nil
	}
	if approx && positive && work > sparseApproxFrom && work > 2*(sparseBudget+rescoreDepth(limit)*rescoreCost) {
		return k.sparseApprox(sc, work, limit, allowed)
	}
	h := k.sparseTop(sc, work, limit, allowed)
	return h.hits()
}

// sparseTop scores the query terms of sc (work postings) and keeps the best limit
// slots that allowed (when not nil) lets through.
func (k *kb) sparseTop(sc *scratch, work, limit int, allowed []bool) topK {
	n := len(k.ids)
	sc.reset(n)
	if work*sparseDenseShare < n {
		return k.sparseTouched(sc, limit, allowed)
	}
	// Ranges of whole cache lines, so that no two goroutines write one.
	lines := (n + 63) / 64
	parts := min(runtime.GOMAXPROCS(0), max(work/parallelSparseWork, 1), lines)
	return k.merge(limit, parts, func(p int, h *topK) {
		k.sparseRange(sc, h, int32(lines*p/parts*64), int32(min(lines*(p+1)/parts*64, n)), allowed)
	})
}

// The sparse side of a hybrid search whose dense side goes through the approximate
// index (kb.viaIndex) is approximate for a query of more than sparseApproxFrom
// postings (≈ 5 ms of adds on two cores at a million chunks; a pasted paragraph of a
// few hundred terms reads tens of millions): it reads at most sparseBudget postings
// in full (or the rarest term's, if more), those of the query's terms of the fewest
// postings, the highest IDF; the rescoreDepth best slots by those terms alone are
// then scored with every term, exactly, and the best of them kept. A slot's
// rescoring costs about what rescoreCost postings do (its terms looked up, its
// weights found: ≈ 5 µs for a chunk of a few hundred terms), so the search stays
// exact unless its postings are more than twice what the approximate one would cost
// (a large limit: many candidates). Variables so that tests can take the path on
// small inputs.
var (
	sparseApproxFrom = 1 << 23
	sparseBudget     = 3 << 19
	rescoreCost      = 1 << 12
)

// rescoreDepth is how many candidates sparseApprox scores with every term, for a
// search of limit hits.
func rescoreDepth(limit int) int { return 10 * limit }

// sparseApprox is the approximate sparse search (above) of a positive query of work
// postings. A hit's score is its exact score: the sum, in the query's order, that
// sparseTop adds. When the rarest terms are in fewer than limit slots (that allowed
// lets through), the search is done exactly.
func (k *kb) sparseApprox(sc *scratch, work, limit int, allowed []bool) []vectorstore.Hit {
	all := sc.terms
	byID := func(a, b queryTerm) int { return cmp.Compare(a.id, b.id) } // the query's order
	slices.SortStableFunc(all, func(a, b queryTerm) int { return cmp.Compare(len(a.pl.slots), len(b.pl.slots)) })
	read, first := 0, 0
	for first < len(all) && (first == 0 || read+len(all[first].pl.slots) <= sparseBudget) {
		read += len(all[first].pl.slots)
		first++
	}
	// In the query's order again: the sums of an exact search for these terms alone.
	slices.SortFunc(all[:first], byID)
	sc.terms = all[:first]
	cands := k.sparseTop(sc, read, rescoreDepth(limit), allowed)
	sc.terms = all
	if len(cands.e) < limit {
		slices.SortFunc(all, byID)
		h := k.sparseTop(sc, work, limit, allowed)
		return h.hits()
	}
	sc.byID.index(all)
	scores := make([]float32, len(cands.e))
	parts := min(runtime.GOMAXPROCS(0), max(len(cands.e)*len(all)/rescoreWork, 1))
	inParts(parts, func(p int) {
		for i := len(scores) * p / parts; i < len(scores)*(p+1)/parts; i++ {
			scores[i] = k.sparseScore(sc, cands.e[i].slot)
		}
	})
	h := topK{k: k, limit: limit}
	for i, e := range cands.e {
		h.offer(scores[i], e.slot)
	}
	return h.hits()
}

// rescoreWork is the number of candidate × term pairs above which sparseApprox
// scores its candidates on every core. A variable so that tests can take both ways.
var rescoreWork = 4096

// sparseScore is the score of slot s for the query terms indexed in sc.byID: the
// terms of s (in increasing order, as the query's) looked up one after the other.
func (k *kb) sparseScore(sc *scratch, s int32) float32 {
	var score float32
	for _, id := range k.terms[s] {
		if t := sc.byID.find(id); t.pl != nil {
			score += float32(t.qw * t.weightOf(s))
		}
	}
	return score
}

// termTable finds a query term by id: open addressing with linear probing, at
// least four cells a term (most lookups, a slot's terms the query lacks, miss). The
// hash multiplies by a random odd number drawn for each query (multiply-shift
// hashing): term ids are a public hash of words, so a fixed multiplier would let a
// question's words be chosen to pile up in one run of cells.
type termTable struct {
	cells []queryTerm // pl nil: empty
	mul   uint32
	shift uint8
}

// index makes t find terms (of distinct ids).
func (t *termTable) index(terms []queryTerm) {
	bits := uint8(4)
	for 1<<bits < 4*len(terms) {
		bits++
	}
	size := 1 << bits
	if cap(t.cells) < size {
		t.cells = make([]queryTerm, size)
	}
	t.cells = t.cells[:size]
	clear(t.cells)
	t.shift = 32 - bits
	t.mul = rand.Uint32() | 1
	for _, q := range terms {
		i := t.home(q.id)
		for t.cells[i].pl != nil {
			i = (i + 1) & (size - 1)
		}
		t.cells[i] = q
	}
}

func (t *termTable) home(id uint32) int { return int((id * t.mul) >> t.shift) }

// find returns the term of id, or one without postings.
func (t *termTable) find(id uint32) queryTerm {
	mask := len(t.cells) - 1
	for i := t.home(id); ; i = (i + 1) & mask {
		if c := t.cells[i]; c.pl == nil || c.id == id {
			return c
		}
	}
}

// sparseTouched scores the query terms of sc into sc.acc, listing the slots touched.
func (k *kb) sparseTouched(sc *scratch, limit int, allowed []bool) topK {
	acc, seen := sc.acc, sc.seen
	touched := sc.touched
	for _, t := range sc.terms {
		weights := t.pl.weights[:len(t.pl.slots)]
		for j, s := range t.pl.slots {
			if w, b := s>>6, uint64(1)<<(s&63); seen[w]&b == 0 {
				seen[w] |= b
				acc[s] = 0
				touched = append(touched, s)
			}
			acc[s] += float32(t.qw * weights[j])
		}
	}
	sc.touched = touched
	h := topK{k: k, limit: limit}
	for _, s := range touched {
		if !h.below(acc[s]) && k.visible(s, allowed) {
			h.offer(acc[s], s)
		}
	}
	return h
}

// sparseRange scores the query terms of sc for the slots [lo, hi) (multiples of 64,
// hi: or the last slot) into sc.acc and offers those touched to h. For a positive
// query (sc.positive) a score above zero marks a slot touched, and a term's weights
// by slot (queryTerm.bySlot), if it has them, are added with vector instructions:
// the same products and sums as one by one (an absent term adds 0 × its weight).
// For another query touched slots are marked with a byte each, not a bit: a bit
// would make each posting read the word the previous one wrote (postings of a
// common term are a few slots apart), a chain of store-to-load latencies.
func (k *kb) sparseRange(sc *scratch, h *topK, lo, hi int32, allowed []bool) {
	acc := sc.acc[:hi]
	clear(acc[lo:hi])
	var mark []byte // nil: the query is positive
	if !sc.positive {
		mark = sc.mark[:hi]
		clear(mark[lo:hi])
	}
	var buf [2048]float32
	for _, t := range sc.terms {
		from := lo
		if d := t.bySlot; mark == nil && bySlotScan && int(lo) < len(d) {
			from = min(hi, int32(len(d)))
			for b := lo; b < from; b += int32(len(buf)) {
				e := min(b+int32(len(buf)), from)
				tmp := vek32.MulNumber_Into(buf[:0], d[b:e], t.qw)
				vek32.Add_Inplace(acc[b:e], tmp)
			}
		}
		ss, ws := t.in(from, hi)
		if mark == nil {
			for j, s := range ss {
				acc[s] += float32(t.qw * ws[j])
			}
			continue
		}
		for j, s := range ss {
			acc[s] += float32(t.qw * ws[j])
			mark[s] = 1
		}
	}
	// Most slots score below the worst kept hit once there are limit of them: that
	// test comes first, reading the scores in order, then whether it was touched.
	for s := lo; s < hi; s++ {
		if !h.below(acc[s]) && (mark == nil && acc[s] > 0 || mark != nil && mark[s] != 0) && k.visible(s, allowed) {
			h.offer(acc[s], s)
		}
	}
}

// visible reports whether slot s is live and allowed (when not nil) lets it through.
func (k *kb) visible(s int32, allowed []bool) bool {
	return !k.dead[s] && (allowed == nil || allowed[k.doc[s]])
}

// viaIndex reports whether a dense search that allowed (nil: all) filters goes
// through the approximate index, and the share of the rows allowed lets through (1
// for nil): a filter letting through a quarter of the rows or less is searched
// exactly, by document.
func (k *kb) viaIndex(allowed []bool) (bool, float64) {
	if k.ann == nil {
		return false, 1
	}
	if allowed == nil {
		return true, 1
	}
	n := 0
	for d, ok := range allowed {
		if ok {
			n += len(k.docSlots[d])
		}
	}
	share := float64(n) / float64(max(len(k.denseSlot), 1))
	return share > 0.25, share
}

// searchDense searches the dense rows; indexed and share are k.viaIndex(allowed).
func (k *kb) searchDense(q []float32, limit int, allowed []bool, indexed bool, share float64) []vectorstore.Hit {
	h := topK{k: k, limit: limit}
	if k.dim == 0 {
		return nil
	}
	rows := len(k.denseSlot)
	if allowed != nil && !indexed {
		// A few documents (or no index): their rows, exactly.
		for d, ok := range allowed {
			if !ok {
				continue
			}
			for _, s := range k.docSlots[d] {
				if r := k.denseRow[s]; r >= 0 && !k.dead[s] {
					h.offer(dot(q, k.row(int(r))), s)
				}
			}
		}
		return h.hits()
	}
	if indexed {
		return k.searchANN(q, limit, allowed, share)
	}
	parts := min(runtime.GOMAXPROCS(0), rows*k.dim/parallelDenseWork)
	if parts <= 1 {
		k.scanRows(&h, q, 0, rows, nil)
		return h.hits()
	}
	// Large knowledge base: scan slices of the slab in parallel, then merge.
	h = k.merge(limit, parts, func(p int, h *topK) {
		k.scanRows(h, q, rows*p/parts, rows*(p+1)/parts, nil)
	})
	return h.hits()
}

// searchANN scans the rows of the lists nearest q; share is the fraction of the rows
// that allowed (nil: all) lets through, so that as many allowed rows are scanned.
// The lists' rows are ranked by their codes; the rerankDepth best of each part of
// the scan are scored again with their vectors, with the rows the index does not
// cover yet (scanned exactly).
func (k *kb) searchANN(q []float32, limit int, allowed []bool, share float64) []vectorstore.Hit {
	lists := k.ann.probe(q, share)
	covered, rows := k.ann.covered(), len(k.denseSlot)
	work := rows - covered
	for _, c := range lists {
		work += len(k.ann.lists[c])
	}
	qc := make([]int8, k.ann.cdim)
	qscale := quantise(qc, q)
	parts := max(min(runtime.GOMAXPROCS(0), work*k.dim/parallelDenseWork), 1)
	ranked, exact := make([]topK, parts), make([]topK, parts)
	inParts(parts, func(p int) {
		ranked[p], exact[p] = topK{k: k, limit: rerankDepth(limit)}, topK{k: k, limit: limit}
		for i := p; i < len(lists); i += parts { // nearest lists spread over the parts
			k.scanList(&ranked[p], qc, qscale, lists[i], allowed)
		}
		k.scanRows(&exact[p], q, covered+(rows-covered)*p/parts, covered+(rows-covered)*(p+1)/parts, allowed)
	})
	h := topK{k: k, limit: limit}
	for p := range parts {
		for _, e := range ranked[p].e {
			h.offer(dot(q, k.row(int(k.denseRow[e.slot]))), e.slot)
		}
		for _, e := range exact[p].e {
			h.offer(e.score, e.slot)
		}
	}
	return h.hits()
}

// rerankDepth is how many rows ranked by their codes a part of a search scores
// again with their vectors, for a search of limit hits.
func rerankDepth(limit int) int { return max(4*limit, 40) }

// scanList offers the live rows of list c that allowed (when not nil) lets through,
// scored by their codes against the query's code qc (scale qscale).
func (k *kb) scanList(h *topK, qc []int8, qscale float32, c int32, allowed []bool) {
	cs, cdim := k.ann.codes[c], k.ann.cdim
	for i, r := range k.ann.lists[c] {
		// The codes are read in order; a row's slot and liveness are a cache miss each
		// (a list's rows are spread over the slab), so they are read only for the few
		// rows that score above the worst kept.
		score := qscale * cs.scale[i] * float32(dot8(qc, cs.q[i*cdim:(i+1)*cdim]))
		if h.below(score) {
			continue
		}
		if s := k.denseSlot[r]; k.visible(s, allowed) {
			h.offer(score, s)
		}
	}
}

// merge runs scan for parts parts and merges their heaps.
func (k *kb) merge(limit, parts int, scan func(p int, h *topK)) topK {
	heaps := make([]topK, parts)
	inParts(parts, func(p int) {
		heaps[p] = topK{k: k, limit: limit}
		scan(p, &heaps[p])
	})
	h := topK{k: k, limit: limit}
	for _, ph := range heaps {
		for _, e := range ph.e {
			h.offer(e.score, e.slot)
		}
	}
	return h
}

// inParts runs fn(0), …, fn(parts−1) on as many goroutines (the last on this one)
// and waits for them.
func inParts(parts int, fn func(p int)) {
	if parts < 1 {
		return
	}
	var wg sync.WaitGroup
	for p := range parts - 1 {
		wg.Go(func() { fn(p) })
	}
	fn(parts - 1)
	wg.Wait()
}

// parallelDenseWork is the number of multiply-adds above which a dense scan
// is split across GOMAXPROCS goroutines: about 5,000 rows of 384 dimensions, ≈ 1 ms
// on one core when the rows come from memory (a scan is bound by memory bandwidth:
// 170 ns a row measured, against 29 ns for the arithmetic). A variable so that
// tests can exercise the parallel path on small inputs.
var parallelDenseWork = 1 << 21

// scanRows offers the live rows [lo, hi) that allowed (when not nil) lets through.
func (k *kb) scanRows(h *topK, q []float32, lo, hi int, allowed []bool) {
	for r := lo; r < hi; r++ {
		if s := k.denseSlot[r]; k.visible(s, allowed) {
			h.offer(dot(q, k.row(r)), s)
		}
	}
}

// dot is the dot product of two vectors of one length: with AVX2 and FMA where the
// processor has them (about six times the speed of the loop below at 384
// dimensions).
func dot(a, b []float32) float32 {
	if simdDot && len(a) > 0 {
		return vek32.Dot(a, b[:len(a)])
	}
	return dotGo(a, b)
}

var simdDot = cpu.X86.HasAVX2 && cpu.X86.HasFMA

func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// idKey is a chunk id (a lower-case UUID: Point.Validate) as a 128-bit number:
// keys compare as the ids do, without reading the strings (a tie-break among a
// short query's hits, many of equal score, would read one scattered string each).
type idKey struct{ hi, lo uint64 }

func keyOf(id string) idKey {
	var k idKey
	n := 0
	for i := 0; i < len(id); i++ {
		var d uint64
		switch c := id[i]; {
		case '0' <= c && c <= '9':
			d = uint64(c - '0')
		case 'a' <= c && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			continue // the dashes, at the same places in every id
		}
		if n < 16 {
			k.hi = k.hi<<4 | d
		} else {
			k.lo = k.lo<<4 | d
		}
		n++
	}
	return k
}

func (a idKey) less(b idKey) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

// topK keeps the best limit (score, slot) pairs in a min-heap whose root is
// the worst kept: lower score, or equal score and greater chunk id.
type topK struct {
	k     *kb
	limit int
	e     []entry
}

type entry struct {
	score float32
	slot  int32
}

func (h *topK) worse(a, b entry) bool {
	if a.score != b.score {
		return a.score < b.score
	}
	return h.k.keys[b.slot].less(h.k.keys[a.slot])
}

// below reports whether score is below the worst kept while h is full: offer would
// drop it, tested in line before anything else.
func (h *topK) below(score float32) bool {
	return len(h.e) == h.limit && score < h.e[0].score
}

func (h *topK) offer(score float32, slot int32) {
	e := entry{score, slot}
	if len(h.e) < h.limit {
		h.e = append(h.e, e)
		for i := len(h.e) - 1; i > 0; {
			p := (i - 1) / 2
			if !h.worse(h.e[i], h.e[p]) {
				break
			}
			h.e[i], h.e[p] = h.e[p], h.e[i]
			i = p
		}
		return
	}
	if score < h.e[0].score || !h.worse(h.e[0], e) {
		return
	}
	h.e[0] = e
	for i := 0; ; {
		l, m := 2*i+1, i
		if l < len(h.e) && h.worse(h.e[l], h.e[m]) {
			m = l
		}
		if r := l + 1; r < len(h.e) && h.worse(h.e[r], h.e[m]) {
			m = r
		}
		if m == i {
			break
		}
		h.e[i], h.e[m] = h.e[m], h.e[i]
		i = m
	}
}

func (h *topK) hits() []vectorstore.Hit {
	out := make([]vectorstore.Hit, len(h.e))
	for i, e := range h.e {
		out[i] = vectorstore.Hit{
			ChunkID:    h.k.ids[e.slot],
			DocumentID: h.k.docNames[h.k.doc[e.slot]],
			Score:      float64(e.score),
		}
	}
	vectorstore.SortHits(out)
	return out
}
