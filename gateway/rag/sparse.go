package rag

import (
	"slices"

	"github.com/ragway/ragway/gateway/vectorstore"
)

// BM25 parameters.
const (
	// K1 is BM25's term-frequency saturation.
	K1 = 1.2
	// B is BM25's document-length normalisation.
	B = 0.75
	// AvgDocTerms stands for BM25's average document length (in terms), which
	// depends on the corpus and would change every stored vector as it grows. A
	// fixed value keeps document vectors independent of each other: 256 terms is
	// about a default chunk (400 estimated tokens of Chinese make ~400 bigrams, of
	// English ~200 words after stopwords). Chunks are all about that size, so the
	// length normalisation matters little either way.
	AvgDocTerms = 256
)

// DocVector is the sparse vector of a chunk: for each distinct term (by TermID) the
// BM25 document-side weight tf·(K1+1) / (tf + K1·(1 − B + B·dl/AvgDocTerms)), where
// tf is the term's count and dl the number of terms of text. It has no IDF: the
// store multiplies by IDF at query time (as Qdrant's "idf" modifier does), so stored
// vectors stay valid as the corpus changes. Indices are increasing.
func DocVector(text string) vectorstore.Sparse {
	return docVector(termIDs(nil, text))
}

// HeadingWeight is how many times the terms of a chunk's heading path count in its
// vector (ChunkVector): a heading says what its text is about, so it weighs more
// than a word of the text (a field weight).
const HeadingWeight = 2

// ChunkVector is the sparse vector of a chunk: DocVector of its heading path (counted
// HeadingWeight times) and its text. What the index stores for every chunk, so what
// re-analysing a stored chunk computes again (Analyzer).
func ChunkVector(heading, text string) vectorstore.Sparse {
	ids := termIDs(nil, heading)
	n := len(ids)
	for range HeadingWeight - 1 {
		ids = append(ids, ids[:n]...)
	}
	return docVector(termIDs(ids, text))
}

// Analyzer names the rules of Terms, HeadingWeight and the BM25 weights that made a
// stored sparse vector; every stored chunk records it. Chunks of older rules are
// analysed again when a gateway starts, and when another gateway indexes a document
// (Reanalyze, ReanalyzeDocument), so that documents and questions always meet on the
// same terms. Raise it with every change of those rules.
const Analyzer = 2

func docVector(ids []uint32) vectorstore.Sparse {
	if len(ids) == 0 {
		return vectorstore.Sparse{}
	}
	norm := K1 * (1 - B + B*float64(len(ids))/AvgDocTerms)
	slices.Sort(ids)
	v := vectorstore.Sparse{Indices: make([]uint32, 0, len(ids)/2+1), Values: make([]float32, 0, len(ids)/2+1)}
	for i := 0; i < len(ids); {
		j := i + 1
		for j < len(ids) && ids[j] == ids[i] {
			j++
		}
		tf := float64(j - i)
		v.Indices = append(v.Indices, ids[i])
		v.Values = append(v.Values, float32(tf*(K1+1)/(tf+norm)))
		i = j
	}
	return v
}

// QueryVector is the sparse vector of a query: each distinct term with weight 1, so
// that a chunk's score is the sum over shared terms of IDF × its BM25 weight.
// Indices are increasing.
func QueryVector(text string) vectorstore.Sparse {
	ids := termIDs(nil, text)
	if len(ids) == 0 {
		return vectorstore.Sparse{}
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	values := make([]float32, len(ids))
	for i := range values {
		values[i] = 1
	}
	return vectorstore.Sparse{Indices: ids, Values: values}
}

// termIDs appends the TermID of each term of text, with repeats, to ids.
func termIDs(ids []uint32, text string) []uint32 {
	ids = slices.Grow(ids, len(text)/4+1)
	forEachTerm(text, nil, func(t []byte) { ids = append(ids, termIDBytes(t)) })
	return ids
}
