// Package synth makes dense vectors shaped like sentence embeddings of real text, for
// the embedded store's tests and the project's benchmarks, where running an embedding
// model over a million chunks is out of reach.
//
// The shape follows what such embeddings show: every vector shares a common direction
// (unrelated texts still have a cosine of about 0.25), the variance is spread unevenly
// over the dimensions (a power-law spectrum, so a few directions carry most of it),
// and the vectors are clustered at two scales: chunks of one document lie near each
// other, and documents of one topic lie nearer each other than to the rest. A query is
// drawn like one more chunk of a document: its nearest neighbours are that document's
// chunks, then its topic's.
package synth

import (
	"math"
	"math/rand/v2"
	"sync"
)

// Corpus draws vectors of one collection. It is safe for concurrent use. A chunk's
// vector depends only on the seed and its number; queries are drawn from one stream.
type Corpus struct {
	seed   uint64
	dim    int
	scale  []float32 // per-dimension standard deviation (power law)
	mean   []float32
	topics [][]float32
	mu     sync.Mutex
	r      *rand.Rand // queries' noise
}

// Chunks per document and documents per topic of Chunk's numbering.
const (
	ChunksPerDoc = 20
	DocsPerTopic = 25
)

// Weights of the mixture (each part a unit vector before mixing).
const (
	wMean  = 0.5
	wTopic = 0.6
	wDoc   = 0.45
	wNoise = 0.45
)

// New returns a corpus of dim-dimensional vectors with topics topics.
func New(dim, topics int, seed uint64) *Corpus {
	c := &Corpus{seed: seed, dim: dim, r: c2rand(seed, 1<<62)}
	c.scale = make([]float32, dim)
	for j := range c.scale {
		c.scale[j] = float32(1 / math.Sqrt(float64(j+1)))
	}
	r := c2rand(seed, 1<<61)
	c.mean = c.gauss(r)
	for range topics {
		c.topics = append(c.topics, c.gauss(r))
	}
	return c
}

func c2rand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream^0x9e3779b97f4a7c15))
}

// gauss is a unit vector of independent normal coordinates scaled by the spectrum.
func (c *Corpus) gauss(r *rand.Rand) []float32 {
	v := make([]float32, c.dim)
	var n float64
	for j := range v {
		v[j] = float32(r.NormFloat64()) * c.scale[j]
		n += float64(v[j]) * float64(v[j])
	}
	inv := float32(1 / math.Sqrt(n))
	for j := range v {
		v[j] *= inv
	}
	return v
}

// Chunk returns the vector of chunk i: of document i/ChunksPerDoc, whose topic is
// the document's number / DocsPerTopic modulo the topics.
func (c *Corpus) Chunk(i int) []float32 {
	return c.mix(i/ChunksPerDoc, c.gauss(c2rand(c.seed, uint64(i)<<1|1)))
}

// Near returns a vector drawn like a new chunk of document d (a query about it).
func (c *Corpus) Near(d int) []float32 {
	c.mu.Lock()
	noise := c.gauss(c.r)
	c.mu.Unlock()
	return c.mix(d, noise)
}

// mix is a vector of document d with the noise given.
func (c *Corpus) mix(d int, noise []float32) []float32 {
	topic := c.topics[(d/DocsPerTopic)%len(c.topics)]
	doc := c.gauss(c2rand(c.seed, uint64(d)<<1))
	v := make([]float32, c.dim)
	var n float64
	for j := range v {
		v[j] = wMean*c.mean[j] + wTopic*topic[j] + wDoc*doc[j] + wNoise*noise[j]
		n += float64(v[j]) * float64(v[j])
	}
	inv := float32(1 / math.Sqrt(n))
	for j := range v {
		v[j] *= inv
	}
	return v
}
