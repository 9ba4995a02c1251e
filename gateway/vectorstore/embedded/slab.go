package embedded

// slab holds the dense rows of a knowledge base in segments of slabRows rows: a row
// is appended without copying the rows before it (one growing slice of a million
// 384-dim rows would be copied, 1.5 GB at a time, as it grew), and a snapshot (the
// segments so far and a row count) stays valid while rows are appended after it.
type slab struct {
	dim  int
	segs [][]float32 // full segments, then the one being filled
	n    int
}

const slabRows = 4096

func (s *slab) len() int { return s.n }

// row is row r's vector (dim floats, not to be appended to).
func (s *slab) row(r int) []float32 {
	o := (r % slabRows) * s.dim
	return s.segs[r/slabRows][o : o+s.dim : o+s.dim]
}

func (s *slab) append(v []float32) {
	if s.n%slabRows == 0 {
		s.segs = append(s.segs, make([]float32, 0, slabRows*s.dim))
	}
	last := len(s.segs) - 1
	s.segs[last] = append(s.segs[last], v...)
	s.n++
}

// snapshot is the rows so far: appending to s later does not change it (the
// segment being filled is only written past the snapshot's rows).
func (s *slab) snapshot() slab {
	return slab{dim: s.dim, segs: append([][]float32(nil), s.segs...), n: s.n}
}
