package embedded

import (
	"cmp"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"time"
)

// ivf is an inverted-file index over a knowledge base's dense rows: spherical
// k-means centroids part the rows into lists, and a search scans only the lists of
// the centroids nearest the query. It covers the first rows of the knowledge base:
// it is built in the background from a snapshot of the rows (buildIVF), rows added
// later are assigned to their nearest lists in the background too (assign, then
// extend under the lock), and a list grown to twice the size lists had when built is
// split in two (2-means over its rows), so that rows unlike those of the build (a new
// topic) get lists of their own before the next build; compaction renumbers the
// rows of the lists.
type ivf struct {
	dim       int
	centroids []float32 // nlist × dim, unit length
	cc        codes     // the centroids' codes: a row's nearest list is found with codes
	groups    *groups   // the centroids in groups, to find a row's nearest fast (nil: few centroids)
	listOf    []int32   // by dense row: its list
	lists     [][]int32 // by list: its rows, ascending; they may include dead rows
	cdim      int       // codeDim(dim)
	codes     []codes   // by list: its rows' codes (quant.go), in the order of lists (a scan reads memory in order, not row after scattered row)
	splitAt   []int     // by list: the length at which it is split
	size      int       // rows a list had on average when built
	rows      int       // rows when built: a knowledge base twice as large is built again
}

// Tuning, measured with the synth corpus (bench -only search prints recall with it).
var (
	// annMinRows is the number of dense rows from which a knowledge base is searched
	// through an ivf; below it an exact scan costs less than a millisecond or two.
	annMinRows = 20_000
	// annProbeFraction of the rows (at least annMinProbe lists) is scanned by a
	// search: recall@10 0.988 at a million synth rows in bench -only search (0.985
	// at 10 %, against a target of 0.98).
	annProbeFraction = 0.12
	// annQuiet is how long a knowledge base goes unwritten before work on its
	// index starts, and annMaxDefer how long that waits at most (Store.tend).
	annQuiet    = 500 * time.Millisecond
	annMaxDefer = time.Minute
)

const (
	annMinProbe   = 8
	annIterations = 8
	annSamplePer  = 40 // k-means trains on this many rows per list
)

func (x *ivf) nlist() int { return len(x.lists) }

// nlistFor is the number of lists for rows rows: √rows, so a list holds about √rows
// rows (a million rows: 1,000 lists of 1,000).
func nlistFor(rows int) int {
	return min(max(int(math.Sqrt(float64(rows))), 16), 4096)
}

// buildIVF clusters the rows of the slab snapshot dense (unit rows) and assigns
// every one of them. It reads dense only: the caller may go on appending to the
// slab it was taken from. It returns nil as soon as stop (called between rounds)
// reports true.
func buildIVF(dense slab, seed uint64, stop func() bool) *ivf {
	n, dim := dense.len(), dense.dim
	nlist := nlistFor(n)
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	// The training sample: rows drawn at random (with repetition, harmless).
	ns := min(n, nlist*annSamplePer)
	sample := make([]int32, ns)
	if ns == n {
		for i := range sample {
			sample[i] = int32(i)
		}
	} else {
		for i := range sample {
			sample[i] = int32(r.IntN(n))
		}
	}
	row := func(i int32) []float32 { return dense.row(int(i)) }
	cents := make([]float32, nlist*dim)
	for c := range nlist {
		copy(cents[c*dim:], row(sample[r.IntN(ns)]))
	}
	x := &ivf{dim: dim, cdim: codeDim(dim), centroids: cents, lists: make([][]int32, nlist), rows: n}
	assign := make([]int32, ns)
	for range annIterations {
		if stop() {
			return nil
		}
		x.cc = codesOf(cents, dim, x.cdim)
		x.groups = newGroups(cents, dim, x.cdim, r.Uint64())
		x.nearestRows(assign, func(i int) []float32 { return row(sample[i]) })
		sums := make([]float64, nlist*dim)
		counts := make([]int, nlist)
		for i, c := range assign {
			counts[c]++
			s := sums[int(c)*dim : int(c+1)*dim]
			for j, v := range row(sample[i]) {
				s[j] += float64(v)
			}
		}
		for c := range nlist {
			cv := cents[c*dim : (c+1)*dim]
			if counts[c] == 0 { // an empty list starts again from a random row
				copy(cv, row(sample[r.IntN(ns)]))
				continue
			}
			unit(cv, sums[c*dim:(c+1)*dim])
		}
	}
	if stop() {
		return nil
	}
	x.cc = codesOf(cents, dim, x.cdim)
	x.groups = newGroups(cents, dim, x.cdim, r.Uint64())
	x.listOf = make([]int32, n)
	x.nearestRows(x.listOf, func(i int) []float32 { return row(int32(i)) })
	sizes := make([]int, nlist)
	for _, c := range x.listOf {
		sizes[c]++
	}
	x.size = max(n/nlist, 1)
	x.splitAt = make([]int, nlist)
	for c := range x.lists {
		x.lists[c] = make([]int32, 0, sizes[c])
		x.splitAt[c] = 2 * x.size
	}
	for i, c := range x.listOf {
		x.lists[c] = append(x.lists[c], int32(i))
	}
	// k-means leaves some lists much longer than others (a dense region): split
	// them now, as growth would (before the vectors are copied to the lists).
	rowOf := func(r int) []float32 { return row(int32(r)) }
	for c := 0; c < len(x.lists); c++ {
		for len(x.lists[c]) >= x.splitAt[c] {
			x.split(int32(c), rowOf)
		}
	}
	x.codes = make([]codes, len(x.lists))
	parallel(len(x.lists), func(lo, hi int) {
		for c := lo; c < hi; c++ {
			n := len(x.lists[c])
			cs := codes{q: make([]int8, 0, n*x.cdim), scale: make([]float32, 0, n)}
			for _, r := range x.lists[c] {
				cs.add(row(r), x.cdim)
			}
			x.codes[c] = cs
		}
	})
	return x
}

// parallel runs fn over [0, n) in GOMAXPROCS parts.
func parallel(n int, fn func(lo, hi int)) {
	parts := min(runtime.GOMAXPROCS(0), max(n/256, 1))
	inParts(parts, func(p int) { fn(n*p/parts, n*(p+1)/parts) })
}

// nearestRows sets out[i] to the list nearest row(i), for every i of out, in
// parallel.
func (x *ivf) nearestRows(out []int32, row func(i int) []float32) {
	parallel(len(out), func(lo, hi int) {
		code := make([]int8, x.cdim)
		for i := lo; i < hi; i++ {
			quantise(code, row(i))
			out[i] = x.nearest(code)
		}
	})
}

// nearest is the list whose centroid is nearest the row coded code (by the codes'
// dot products): found among the centroids of the groups nearest it when there are
// groups, else among all.
func (x *ivf) nearest(code []int8) int32 {
	if x.groups != nil {
		return x.groups.nearest(code, x.cc, x.cdim)
	}
	c, _ := nearestCode(code, x.cc, x.cdim, nil)
	return c
}

// nearestCode is the code of cs nearest code, among those listed in only when it is
// not nil, and its dot product with code (in code's scale).
func nearestCode(code []int8, cs codes, cdim int, only []int32) (int32, float32) {
	best, bestScore := int32(-1), float32(math.Inf(-1))
	score := func(c int32) {
		if s := cs.scale[c] * float32(dot8(code, cs.q[int(c)*cdim:int(c+1)*cdim])); s > bestScore || best < 0 {
			best, bestScore = c, s
		}
	}
	if only == nil {
		for c := range int32(len(cs.scale)) {
			score(c)
		}
	} else {
		for _, c := range only {
			score(c)
		}
	}
	return best, bestScore
}

// nearestOf is the vector of vs (n × dim) nearest v.
func nearestOf(v, vs []float32, dim int) int32 {
	best, bestScore := int32(0), float32(math.Inf(-1))
	for c := range len(vs) / dim {
		if s := dot(v, vs[c*dim:(c+1)*dim]); s > bestScore {
			best, bestScore = int32(c), s
		}
	}
	return best
}

// groups part the centroids of an ivf into about √nlist groups of like centroids
// (spherical k-means over the centroids), so that a row's nearest centroid is looked
// for among the centroids of the groupProbe groups nearest it: about 11√nlist dot
// products of codes instead of nlist (a million rows: 350 instead of 1,000). A row
// whose nearest centroid is in none of those groups goes to a near one instead (a
// fifth of the rows at a million synth rows), which costs recall only where it was
// a close call. Measured with the index alone at a million synth rows (300
// queries): recall@10 0.984 at a 10 % probe and 0.991 at 15 %, built in 14 s; √rows/2
// lists with every centroid scored in float gave 0.939 and 0.966, built in 15 s.
// A split's new centroid joins the group nearest it; the centroid split stays in its
// group until the next build.
type groups struct {
	centres []float32 // by group, unit length
	cc      codes     // the centres' codes
	members [][]int32 // by group: its centroids
}

const (
	groupsFrom = 64 // fewer centroids are all scored
	groupProbe = 10
)

// newGroups groups the centroids cents, or returns nil when they are few.
func newGroups(cents []float32, dim, cdim int, seed uint64) *groups {
	n := len(cents) / dim
	if n < groupsFrom {
		return nil
	}
	ng := int(math.Sqrt(float64(n)))
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	g := &groups{centres: make([]float32, ng*dim), members: make([][]int32, ng)}
	for i, c := range r.Perm(n)[:ng] {
		copy(g.centres[i*dim:], cents[c*dim:(c+1)*dim])
	}
	of := make([]int32, n)
	for range 6 {
		sums := make([]float64, ng*dim)
		for c := range n {
			v := cents[c*dim : (c+1)*dim]
			of[c] = nearestOf(v, g.centres, dim)
			s := sums[int(of[c])*dim : int(of[c]+1)*dim]
			for j, f := range v {
				s[j] += float64(f)
			}
		}
		for i := range ng {
			unit(g.centres[i*dim:(i+1)*dim], sums[i*dim:(i+1)*dim]) // (an empty group keeps its centre)
		}
	}
	for c := range n {
		of[c] = nearestOf(cents[c*dim:(c+1)*dim], g.centres, dim)
		g.members[of[c]] = append(g.members[of[c]], int32(c))
	}
	// Groups left empty (centroids alike: seeds alike) are dropped, so that the
	// groups nearest a row hold centroids.
	kept := 0
	for i, m := range g.members {
		if len(m) > 0 {
			copy(g.centres[kept*dim:(kept+1)*dim], g.centres[i*dim:(i+1)*dim])
			g.members[kept] = m
			kept++
		}
	}
	g.centres, g.members = g.centres[:kept*dim], g.members[:kept]
	g.cc = codesOf(g.centres, dim, cdim)
	return g
}

// nearest is the centroid (of codes cc) nearest the row coded code among those of
// the groups nearest it.
func (g *groups) nearest(code []int8, cc codes, cdim int) int32 {
	type gs struct {
		score float32
		group int32
	}
	var best [groupProbe]gs
	n := 0
	for i := range int32(len(g.members)) {
		s := g.cc.scale[i] * float32(dot8(code, g.cc.q[int(i)*cdim:int(i+1)*cdim]))
		if n < groupProbe {
			best[n] = gs{s, i}
			n++
		} else if s <= best[groupProbe-1].score {
			continue
		} else {
			best[groupProbe-1] = gs{s, i}
		}
		for j := n - 1; j > 0 && best[j].score > best[j-1].score; j-- { // sorted, nearest first
			best[j], best[j-1] = best[j-1], best[j]
		}
	}
	c, cs := int32(-1), float32(math.Inf(-1))
	for _, b := range best[:n] {
		if m := g.members[b.group]; len(m) > 0 {
			if o, s := nearestCode(code, cc, cdim, m); c < 0 || s > cs {
				c, cs = o, s
			}
		}
	}
	if c < 0 { // (groups without centroids: newGroups keeps none)
		c, _ = nearestCode(code, cc, cdim, nil)
	}
	return c
}

// add puts the new centroid c (of cents, coded in cc) in the group nearest it.
func (g *groups) add(c int32, cc codes, cdim int) {
	i, _ := nearestCode(cc.q[int(c)*cdim:int(c+1)*cdim], g.cc, cdim, nil)
	g.members[i] = append(g.members[i], c)
}

// covered is the number of rows in the lists: rows [0, covered).
func (x *ivf) covered() int { return len(x.listOf) }

// assign returns the nearest list of each row of dense from row from on, in
// parallel, or nil if stop reports true first. It reads x's centroids, their codes
// and groups without the store's lock: only split changes them, from extend, which
// the store calls only with the result of the one piece of background work a
// knowledge base has at a time (kb.building), after it is done; a search reads them
// too, and writes nothing.
func (x *ivf) assign(dense slab, from int, stop func() bool) []int32 {
	if stop() {
		return nil
	}
	out := make([]int32, dense.len()-from)
	x.nearestRows(out, func(i int) []float32 { return dense.row(from + i) })
	return out
}

// extend puts rows from, from+1, … in the lists assign chose (lists), and splits the
// lists grown too long; row returns a row's vector.
func (x *ivf) extend(lists []int32, from int, row func(int) []float32) {
	for i, c := range lists {
		r := from + i
		x.listOf = append(x.listOf, c)
		x.lists[c] = append(x.lists[c], int32(r))
		x.codes[c].add(row(r), x.cdim)
	}
	for c := 0; c < len(x.lists); c++ {
		for len(x.lists[c]) >= x.splitAt[c] {
			x.split(int32(c), row)
		}
	}
}

// split parts list c in two by spherical 2-means over its rows: c keeps one part,
// a new list takes the other. A list that does not part (its rows all alike) is
// tried again at twice its length.
func (x *ivf) split(c int32, row func(int) []float32) {
	rows := x.lists[c]
	dim := x.dim
	// Seeds: a row of the list, and the row least like it.
	a := row(int(rows[len(rows)/2]))
	b, low := a, float32(2)
	for _, r := range rows {
		if d := dot(a, row(int(r))); d < low {
			b, low = row(int(r)), d
		}
	}
	ca, cb := slices.Clone(a), slices.Clone(b)
	side := make([]bool, len(rows)) // true: b's
	nb := 0
	for range 4 {
		sa, sb := make([]float64, dim), make([]float64, dim)
		nb = 0
		for i, r := range rows {
			v := row(int(r))
			side[i] = dot(v, cb) > dot(v, ca)
			s := sa
			if side[i] {
				s, nb = sb, nb+1
			}
			for j, f := range v {
				s[j] += float64(f)
			}
		}
		if nb == 0 || nb == len(rows) {
			x.splitAt[c] = 2 * len(rows)
			return
		}
		unit(ca, sa)
		unit(cb, sb)
	}
	nc := int32(len(x.lists))
	keep := make([]int32, 0, len(rows)-nb+x.size)
	moved := make([]int32, 0, nb+x.size)
	for i, r := range rows {
		if side[i] {
			moved = append(moved, r)
			x.listOf[r] = nc
		} else {
			keep = append(keep, r)
		}
	}
	copy(x.centroids[int(c)*dim:], ca)
	x.centroids = append(x.centroids, cb...)
	x.cc.set(int(c), ca, x.cdim)
	x.cc.add(cb, x.cdim)
	if x.groups != nil {
		x.groups.add(nc, x.cc, x.cdim)
	}
	x.lists[c] = keep
	x.lists = append(x.lists, moved)
	if x.codes != nil { // (a build codes them once it is done splitting)
		var keepC, movedC codes
		old := x.codes[c]
		for i := range rows {
			if side[i] {
				movedC.addCode(old, i, x.cdim)
			} else {
				keepC.addCode(old, i, x.cdim)
			}
		}
		x.codes[c] = keepC
		x.codes = append(x.codes, movedC)
	}
	x.splitAt[c] = 2 * x.size
	x.splitAt = append(x.splitAt, 2*x.size)
}

// unit sets dst to the unit vector along s (unchanged if s is zero).
func unit(dst []float32, s []float64) {
	var norm float64
	for _, v := range s {
		norm += v * v
	}
	if norm == 0 {
		return
	}
	inv := 1 / math.Sqrt(norm)
	for j, v := range s {
		dst[j] = float32(v * inv)
	}
}

// renumber follows a compaction: remap[old row] is the new row, or -1 (rows keep
// their order, so the rows covered are still the first ones). The lists keep their
// order, without the rows gone.
func (x *ivf) renumber(remap []int32) {
	covered := 0
	for _, nr := range remap[:len(x.listOf)] {
		if nr >= 0 {
			covered++
		}
	}
	listOf := make([]int32, covered)
	for old, nr := range remap[:len(x.listOf)] {
		if nr >= 0 {
			listOf[nr] = x.listOf[old]
		}
	}
	x.listOf = listOf
	for c, rs := range x.lists {
		x.codes[c].keep(x.cdim, func(i int) bool { return remap[rs[i]] >= 0 })
		n := 0
		for _, r := range rs {
			if nr := remap[r]; nr >= 0 {
				rs[n] = nr
				n++
			}
		}
		x.lists[c] = rs[:n]
	}
}

// probe returns the lists to scan for q, nearest first: enough to hold the share
// annProbeFraction/share of the rows (share: the fraction of rows a filter allows),
// and at least annMinProbe lists.
func (x *ivf) probe(q []float32, share float64) []int32 {
	n := x.nlist()
	budget := int(math.Ceil(float64(len(x.listOf)) * min(annProbeFraction/share, 1)))
	type cs struct {
		score float32
		list  int32
	}
	all := make([]cs, n)
	for c := range n {
		all[c] = cs{dot(q, x.centroids[c*x.dim:(c+1)*x.dim]), int32(c)}
	}
	slices.SortFunc(all, func(a, b cs) int { // nearest first
		return cmp.Or(cmp.Compare(b.score, a.score), cmp.Compare(a.list, b.list))
	})
	var out []int32
	rows := 0
	for _, c := range all {
		if rows >= budget && len(out) >= annMinProbe {
			break
		}
		out = append(out, c.list)
		rows += len(x.lists[c.list])
	}
	return out
}
