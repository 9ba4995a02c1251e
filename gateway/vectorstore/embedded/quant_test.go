package embedded

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDot8MatchesLoop checks the AVX2 dot product of codes against the loop,
// with the extreme codes and lengths of several steps.
func TestDot8MatchesLoop(t *testing.T) {
	if !useDot8AVX2 {
		t.Log("no AVX2 here: dot8 is the loop")
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 32, 64, 96, 384, 1024, 4096} {
		for trial := range 50 {
			a, b := make([]int8, n), make([]int8, n)
			for i := range a {
				switch trial {
				case 0: // the largest products, all of one sign
					a[i], b[i] = -128, -128
				case 1:
					a[i], b[i] = 127, -128
				default:
					a[i], b[i] = int8(r.IntN(256)-128), int8(r.IntN(256)-128)
				}
			}
			var want int64
			for i := range a {
				want += int64(a[i]) * int64(b[i])
			}
			if got := dot8(a, b); int64(got) != want {
				t.Fatalf("n %d trial %d: dot8 %d, want %d", n, trial, got, want)
			}
			if got := dot8Go(a, b); int64(got) != want {
				t.Fatalf("n %d trial %d: dot8Go %d, want %d", n, trial, got, want)
			}
		}
	}
}

// TestQuantise checks that a code times its scale is within half a step of the
// vector, that the padding is zero, and that a zero vector codes as zero.
func TestQuantise(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, dim := range []int{1, 5, 31, 32, 384, 385} {
		v := make([]float32, dim)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		v = normalised(v)
		dst := make([]int8, codeDim(dim))
		for i := range dst {
			dst[i] = 99
		}
		scale := quantise(dst, v)
		for i, f := range v {
			if d := math.Abs(float64(f) - float64(scale)*float64(dst[i])); d > float64(scale)/2*1.0001 {
				t.Fatalf("dim %d: component %d: %v coded %d × %v", dim, i, f, dst[i], scale)
			}
		}
		for i := dim; i < len(dst); i++ {
			if dst[i] != 0 {
				t.Fatalf("dim %d: padding %d is %d", dim, i, dst[i])
			}
		}
		if s := quantise(dst, make([]float32, dim)); s != 0 || dot8(dst, dst) != 0 {
			t.Fatalf("dim %d: a zero vector codes with scale %v", dim, s)
		}
	}
}

func BenchmarkDot8(b *testing.B) {
	x, y := make([]int8, 384), make([]int8, 384)
	for i := range x {
		x[i], y[i] = int8(i), int8(-i)
	}
	var s int32
	for b.Loop() {
		s += dot8(x, y)
	}
	_ = s
}
