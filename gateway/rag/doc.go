// Package rag is retrieval-augmented chat's text side: it normalises text, cuts it into
// chunks that keep their heading path, turns text into sparse lexical vectors
// (BM25-style term weights); an Indexer stores a document's chunks (Postgres first,
// the source of truth, then the vector index), a Retriever finds the chunks that answer
// a question, and Augment puts them in the prompt as numbered sources to cite.
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
// The text functions are pure and deterministic: no I/O, no model, no tokenizer. Token
// counts are estimates (tokens.Estimate), conservative so that a chunk fits the budget
// the caller sized it for. Indexer and Retriever reach storage only through small
// interfaces (*store.Store and a vectorstore.Store implement them). With an embedding
// model (EmbeddingModel; NewModelEmbedder serves rag.embedding_model through the
// workers) the Indexer has the model count each chunk's tokens and splits a chunk over
// the model's limit per input (Resplit) so that every chunk is embedded whole, and the
// Retriever embeds a question over the limit truncated (the sparse side has it all).
// What the package is not: it does not parse HTML or PDF (package ingest does), it
// does not run models (package workers does), and it does not index or search vectors
// itself (package vectorstore does).
//
// One responsibility per file: normalize.go (text clean-up), tokens.go (token
// estimate), sections.go (Markdown headings and code fences), segment.go (paragraph,
// sentence, line, clause and hard boundaries), chunk.go (packing and overlap),
// terms.go (the lexical analyser), sparse.go (BM25 weights and vectors), embedding.go
// (the embedding model), fit.go (chunks that fit it), index.go (storing a document's
// chunks), retrieve.go (finding sources), prompt.go (citing them).
package rag
