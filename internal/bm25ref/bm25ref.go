package bm25ref

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"unicode"
)

// Parameters of the textbook setting.
const (
	WindowTokens  = 400
	OverlapTokens = 60
	K1            = 1.2
	B             = 0.75
)

// Chunk is a window of a document.
type Chunk struct {
	Doc, Text string
	terms     map[string]int
	length    int
}

// Index is a BM25 index over chunks.
type Index struct {
	chunks []Chunk
	df     map[string]int
	avgdl  float64
}

// isCJK reports characters of scripts written without spaces.
func isCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul)
}

// tokens cuts text into tokens (Latin words with what follows them, CJK characters),
// keeping the text between them, so that windows can be joined back into text.
func tokens(text string) []string {
	var out []string
	var cur strings.Builder
	inWord := false
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	for _, r := range text {
		switch {
		case isCJK(r):
			flush()
			out = append(out, string(r))
			inWord = false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			if !inWord {
				flush()
			}
			cur.WriteRune(r)
			inWord = true
		default:
			cur.WriteRune(r) // punctuation and space stay with the token before
			inWord = false
		}
	}
	flush()
	return out
}

// Terms are the terms BM25 counts: lower-cased Latin words, CJK character bigrams
// (a lone CJK character by itself).
func Terms(text string) []string {
	var out []string
	var word strings.Builder
	var run []rune
	flushWord := func() {
		if word.Len() > 1 {
			out = append(out, strings.ToLower(word.String()))
		}
		word.Reset()
	}
	flushRun := func() {
		switch len(run) {
		case 0:
		case 1:
			out = append(out, string(run))
		default:
			for i := 0; i+1 < len(run); i++ {
				out = append(out, string(run[i:i+2]))
			}
		}
		run = run[:0]
	}
	for _, r := range text {
		switch {
		case isCJK(r):
			flushWord()
			run = append(run, r)
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			flushRun()
			word.WriteRune(r)
		default:
			flushWord()
			flushRun()
		}
	}
	flushWord()
	flushRun()
	return out
}

// Add cuts doc's text into windows and indexes them.
func (ix *Index) Add(doc, text string) {
	toks := tokens(text)
	step := WindowTokens - OverlapTokens
	for start := 0; start < len(toks); start += step {
		end := min(start+WindowTokens, len(toks))
		c := Chunk{Doc: doc, Text: strings.Join(toks[start:end], ""), terms: map[string]int{}}
		for _, t := range Terms(c.Text) {
			c.terms[t]++
			c.length++
		}
		ix.chunks = append(ix.chunks, c)
		if end == len(toks) {
			break
		}
	}
}

// finish computes document frequencies and the average length.
func (ix *Index) finish() {
	if ix.df != nil {
		return
	}
	ix.df = map[string]int{}
	total := 0
	for _, c := range ix.chunks {
		for t := range c.terms {
			ix.df[t]++
		}
		total += c.length
	}
	ix.avgdl = float64(total) / float64(max(len(ix.chunks), 1))
}

// Search returns the k best chunks for query, best first.
func (ix *Index) Search(query string, k int) []Chunk {
	ix.finish()
	qterms := Terms(query)
	slices.Sort(qterms)
	qterms = slices.Compact(qterms)
	n := float64(len(ix.chunks))
	type scored struct {
		i int
		s float64
	}
	var hits []scored
	for i, c := range ix.chunks {
		s := 0.0
		for _, t := range qterms {
			tf := float64(c.terms[t])
			if tf == 0 {
				continue
			}
			df := float64(ix.df[t])
			idf := math.Log(1 + (n-df+0.5)/(df+0.5))
			s += idf * tf * (K1 + 1) / (tf + K1*(1-B+B*float64(c.length)/ix.avgdl))
		}
		if s > 0 {
			hits = append(hits, scored{i, s})
		}
	}
	slices.SortStableFunc(hits, func(a, b scored) int { return cmp.Compare(b.s, a.s) }) // best first
	out := make([]Chunk, 0, min(k, len(hits)))
	for _, h := range hits[:min(k, len(hits))] {
		out = append(out, ix.chunks[h.i])
	}
	return out
}
