package embedded

import "math"

// The approximate index keeps its lists' vectors as int8 codes with a scale each
// (a quarter of the memory of float32, and a scan is bound by memory bandwidth:
// 1,536 bytes a row at 384 dimensions took 170 ns to read, 384 bytes take about 45),
// ranks a list's rows by the codes' dot products and scores the best of them again
// with the float vectors (rerankDepth).

// codeDim is the length of a code for dim dimensions: a multiple of 32, the
// width of dot8's loop, padded with zeros.
func codeDim(dim int) int { return (dim + 31) / 32 * 32 }

// quantise writes the code of v to dst (codeDim(len(v)) long, zeroed past v) and
// returns its scale: v[i] ≈ scale × dst[i], with the largest |v[i]| coded as 127.
// v is a unit vector (the store normalises every vector, validated finite), so
// 127/max|v[i]| is finite.
func quantise(dst []int8, v []float32) float32 {
	var m float32
	for _, f := range v {
		m = max(m, abs32(f))
	}
	if m == 0 {
		clear(dst)
		return 0
	}
	inv := 127 / m
	for i, f := range v {
		// Rounded half away from zero (|f × inv| ≤ 127: the conversion truncates),
		// without a branch on the sign, which is random.
		x := f * inv
		half := math.Float32frombits(math.Float32bits(x)&(1<<31) | math.Float32bits(0.5))
		dst[i] = int8(x + half)
	}
	clear(dst[len(v):])
	return m / 127
}

func abs32(f float32) float32 {
	if f < 0 {
		return -f
	}
	return f
}

// codes are the int8 codes of a list's rows, in the list's order.
type codes struct {
	q     []int8    // row i at [i×cdim, (i+1)×cdim)
	scale []float32 // by row
}

// add appends the code of v.
func (c *codes) add(v []float32, cdim int) {
	n := len(c.q)
	c.q = append(c.q, make([]int8, cdim)...)
	c.scale = append(c.scale, quantise(c.q[n:], v))
}

// set sets the code of row i to that of v.
func (c *codes) set(i int, v []float32, cdim int) {
	c.scale[i] = quantise(c.q[i*cdim:(i+1)*cdim], v)
}

// codesOf codes the vectors vs (n × dim).
func codesOf(vs []float32, dim, cdim int) codes {
	n := len(vs) / dim
	c := codes{q: make([]int8, 0, n*cdim), scale: make([]float32, 0, n)}
	for i := range n {
		c.add(vs[i*dim:(i+1)*dim], cdim)
	}
	return c
}

// addCode appends the code of row i of from.
func (c *codes) addCode(from codes, i, cdim int) {
	c.q = append(c.q, from.q[i*cdim:(i+1)*cdim]...)
	c.scale = append(c.scale, from.scale[i])
}

// keep keeps the codes of the rows i for which keep(i) is true, in order.
func (c *codes) keep(cdim int, keep func(i int) bool) {
	n := 0
	for i := range c.scale {
		if keep(i) {
			copy(c.q[n*cdim:(n+1)*cdim], c.q[i*cdim:(i+1)*cdim])
			c.scale[n] = c.scale[i]
			n++
		}
	}
	c.q, c.scale = c.q[:n*cdim], c.scale[:n]
}

// dot8 is the dot product of two codes of one length, a multiple of 32: with AVX2
// where the processor has it.
func dot8(a, b []int8) int32 {
	b = b[:len(a)]
	if useDot8AVX2 && len(a)%32 == 0 {
		return dot8AVX2(a, b)
	}
	return dot8Go(a, b)
}

func dot8Go(a, b []int8) int32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 int32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += int32(a[i]) * int32(b[i])
		s1 += int32(a[i+1]) * int32(b[i+1])
		s2 += int32(a[i+2]) * int32(b[i+2])
		s3 += int32(a[i+3]) * int32(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += int32(a[i]) * int32(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}
