// Package rag prepares documents for retrieval-augmented chat: it normalises text,
// cuts it into chunks that keep their heading path, and turns text into sparse
// lexical vectors (BM25-style term weights) for the vector store.
//
// The pipeline for one document is
//
//	text := Normalize(raw)
//	for _, c := range Split(Document{Title: t, Text: text, Markdown: md}, opts) {
//		v := DocVector(c.Heading + "\n" + c.Text) // the heading makes its words findable
//		...
//	}
//
// and for a query, QueryVector(q); the store applies IDF at query time.
//
// Everything here is pure and deterministic: no I/O, no model, no tokenizer. Token
// counts are estimates (EstimateTokens), conservative so that a chunk fits the budget
// the caller sized it for. What the package is not: it does not parse HTML or PDF
// (callers hand it text or Markdown), it does not embed (dense vectors come from an
// embedding model elsewhere), and it does not store or search anything (package
// vectorstore does).
//
// One responsibility per file: normalize.go (text clean-up), tokens.go (token
// estimate), sections.go (Markdown headings and code fences), segment.go (paragraph,
// sentence, line, clause and hard boundaries), chunk.go (packing and overlap),
// terms.go (the lexical analyser), sparse.go (BM25 weights and vectors).
package rag
