package rag

import "testing"

// BenchmarkSplit measures chunking throughput on ~1 MB of mixed Chinese, English
// and Japanese Markdown (MB/s is of document bytes).
func BenchmarkSplit(b *testing.B) {
	doc, _ := mixedCorpus(1 << 20)
	d := Document{Title: "Bench", Text: doc, Markdown: true}
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		Split(d, Options{})
	}
}

// BenchmarkSplitDocVector is the ingest path of this package: normalise, split,
// and a sparse vector per chunk (heading included).
func BenchmarkSplitDocVector(b *testing.B) {
	doc, _ := mixedCorpus(1 << 20)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		for _, c := range Split(Document{Title: "Bench", Text: Normalize(doc), Markdown: true}, Options{}) {
			DocVector(c.Heading + "\n" + c.Text)
		}
	}
}

func BenchmarkNormalize(b *testing.B) {
	doc, _ := mixedCorpus(1 << 20)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		Normalize(doc)
	}
}

func BenchmarkDocVector(b *testing.B) {
	doc, _ := mixedCorpus(1 << 20)
	cs := Split(Document{Text: doc, Markdown: true}, Options{})
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		for _, c := range cs {
			DocVector(c.Text)
		}
	}
}
