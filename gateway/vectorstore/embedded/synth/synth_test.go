package synth

import "testing"

func cos(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// TestShape checks the cosines the package promises: same document > same topic >
// unrelated, and unrelated texts still alike (the common direction).
func TestShape(t *testing.T) {
	c := New(384, 100, 1)
	avg := func(f func(i int) (a, b []float32)) float64 {
		var s float64
		for i := range 200 {
			a, b := f(i)
			s += cos(a, b)
		}
		return s / 200
	}
	sameDoc := avg(func(i int) ([]float32, []float32) { return c.Chunk(i * 40), c.Chunk(i*40 + 1) })
	sameTopic := avg(func(i int) ([]float32, []float32) {
		d := i * DocsPerTopic * 3
		return c.Near(d), c.Near(d + 1)
	})
	other := avg(func(i int) ([]float32, []float32) { return c.Near(i * DocsPerTopic), c.Near((i + 37) * DocsPerTopic) })
	t.Logf("mean cosine: same document %.3f, same topic %.3f, unrelated %.3f", sameDoc, sameTopic, other)
	if !(sameDoc > sameTopic+0.05 && sameTopic > other+0.05 && other > 0.1 && sameDoc < 0.95) {
		t.Fatalf("shape: same document %.3f, same topic %.3f, unrelated %.3f", sameDoc, sameTopic, other)
	}
}

// TestChunkIsAFunction: a chunk's vector depends on its number only, not on what
// was drawn before (two stores built from one corpus hold the same vectors).
func TestChunkIsAFunction(t *testing.T) {
	a, b := New(16, 4, 9), New(16, 4, 9)
	a.Near(3)
	a.Chunk(7)
	for _, i := range []int{0, 7, 1000} {
		if cos(a.Chunk(i), b.Chunk(i)) < 0.99999 {
			t.Fatalf("chunk %d differs between two corpora of one seed", i)
		}
	}
}
