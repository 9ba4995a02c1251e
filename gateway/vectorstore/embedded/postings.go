package embedded

import "slices"

// adder adds postings to their terms' postings in batches. Adding postings one by
// one reaches a term's postings once for each (the map, the struct, the slices'
// ends: cache misses, most of what loading a knowledge base cost); sorted by term
// first, a term's postings are reached once for all of a batch's. In the bench's
// corpus a page of 1,000 chunks has some 239,000 postings but 19,000 runs of one
// term. Loading a million chunks from Postgres took 68.7 s with postings added one
// by one, 23.5 s in batches (docs/retrieval.md).
//
// It holds the postings of one knowledge base at a time (adderMax at most) and adds
// them (flush) before it takes another's, when it holds adderMax, and before a
// point whose postings it may hold is killed (Store.Upsert: before). Store.Upsert
// flushes before it lets go of the lock: searches never see an adder that holds
// postings.
type adder struct {
	k       *kb
	first   int32     // the first slot whose postings it holds
	ps, tmp []pending // tmp: the sort's other buffer
}

// pending is a posting not yet in its term's postings.
type pending struct {
	term uint32
	slot int32
	w    float32
}

// adderMax bounds the postings an adder holds (12 bytes each, twice while sorted).
// A variable so that tests can cross it often.
var adderMax = 1 << 20

// reserve makes room for n postings (adderMax at most) at once, not as they come.
func (a *adder) reserve(n int) {
	a.ps = slices.Grow(a.ps, min(n, adderMax))
}

// add holds the postings of slot of k (terms and their weights).
func (a *adder) add(k *kb, terms []uint32, weights []float32, slot int32) {
	if a.k != k {
		a.flush()
		a.k = k
	}
	if len(a.ps) == 0 {
		a.first = slot
	}
	for i, t := range terms {
		a.ps = append(a.ps, pending{t, slot, weights[i]})
	}
	if len(a.ps) >= adderMax {
		a.flush()
	}
}

// before flushes if the adder may hold postings of k's point chunkID, which is to be
// killed (kill counts its terms out of their postings).
func (a *adder) before(k *kb, chunkID string) {
	if a.k != k || len(a.ps) == 0 {
		return
	}
	if slot, ok := k.slotOf[chunkID]; ok && slot >= a.first {
		a.flush()
	}
}

// flush adds the postings held to their terms' postings, in slot order.
func (a *adder) flush() {
	k := a.k
	if len(a.ps) == 0 {
		return
	}
	a.ps, a.tmp = sortByTerm(a.ps, a.tmp)
	n := len(k.ids)
	ps := a.ps
	for i := 0; i < len(ps); {
		t := ps[i].term
		j := i + 1
		for j < len(ps) && ps[j].term == t {
			j++
		}
		run := ps[i:j]
		pl := k.post[t]
		if pl == nil {
			pl = &postings{lo: run[0].w, hi: run[0].w}
			k.post[t] = pl
		}
		pl.slots = slices.Grow(pl.slots, len(run))
		pl.weights = slices.Grow(pl.weights, len(run))
		for _, e := range run {
			pl.slots = append(pl.slots, e.slot)
			pl.weights = append(pl.weights, e.w)
			pl.lo, pl.hi = min(pl.lo, e.w), max(pl.hi, e.w)
		}
		pl.df += int32(len(run))
		if k.wantsBySlot(pl) {
			k.buildBySlot(t, pl, n)
		}
		i = j
	}
	a.ps = a.ps[:0]
	if cap(a.tmp) > cap(a.ps) { // keep filling the larger buffer (the sort swaps them)
		a.ps, a.tmp = a.tmp[:0], a.ps
	}
}

// release forgets the knowledge base and what is held (flushed already, unless a
// panic cut the upsert short) and lets go of a buffer larger than adderKeep
// postings (a small one is kept for the next upsert).
func (a *adder) release() {
	a.k = nil
	a.ps = a.ps[:0]
	if cap(a.ps) > adderKeep {
		a.ps = nil
	}
	if cap(a.tmp) > adderKeep {
		a.tmp = nil
	}
}

// adderKeep is the capacity release keeps (a variable for tests).
var adderKeep = 1 << 16

// sortByTerm sorts ps by term, stably, with tmp (grown as needed) as the other
// buffer of a least-significant-digit radix sort (digits of 11, 11 and 10 bits), and
// returns both buffers (the sorted one first). A pass whose digit is the same in
// every posting is skipped.
func sortByTerm(ps, tmp []pending) ([]pending, []pending) {
	if len(ps) < 2 {
		return ps, tmp
	}
	const bits = 11
	const buckets = 1 << bits
	tmp = slices.Grow(tmp[:0], len(ps))[:len(ps)]
	var count [buckets]int
	for shift := 0; shift < 32; shift += bits {
		clear(count[:])
		for _, e := range ps {
			count[(e.term>>shift)&(buckets-1)]++
		}
		if count[(ps[0].term>>shift)&(buckets-1)] == len(ps) {
			continue
		}
		at := 0
		for b, c := range count {
			count[b] = at
			at += c
		}
		for _, e := range ps {
			d := (e.term >> shift) & (buckets - 1)
			tmp[count[d]] = e
			count[d]++
		}
		ps, tmp = tmp, ps
	}
	return ps, tmp
}
