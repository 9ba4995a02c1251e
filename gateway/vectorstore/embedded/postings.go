package embedded

import "slices"

// adder adds postings to their terms' postings in batches. Adding postings one by
// one reaches a term's postings once for each (the map, the struct, the slices'
// ends: cache misses, most of what loading a knowledge base cost); sorted by term
// first, a term's postings are reached once for all of a batch's. In the bench's
// corpus a batch of 4,000 chunks has some 950,000 postings but 21,000 runs of one
// term. Loading a million chunks from Postgres took 68.7 s with postings added one
// by one, 26.9 s in batches (docs/retrieval.md).
//
// It holds the postings of one knowledge base at a time, and adds them (flush)
// before it takes another's, when it holds adderMax, and whenever the caller is to
// read or change postings: Store.Upsert flushes before it removes a point and before
// it lets go of the lock.
type adder struct {
	k       *kb
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
	for i, t := range terms {
		a.ps = append(a.ps, pending{t, slot, weights[i]})
	}
	if len(a.ps) >= adderMax {
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
}

// release lets go of the buffers of a large batch (a small one's are kept for the
// next) and of the knowledge base. The postings must have been flushed.
func (a *adder) release() {
	a.k = nil
	if cap(a.ps) > adderKeep {
		a.ps, a.tmp = nil, nil
	}
}

// adderKeep is the capacity release keeps.
const adderKeep = 1 << 16

// sortByTerm sorts ps by term, stably, with tmp (grown as needed) as the other
// buffer of a least-significant-digit radix sort, and returns both buffers (the
// sorted one first). A pass whose digit is the same in every posting is skipped.
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
