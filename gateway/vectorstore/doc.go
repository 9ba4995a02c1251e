// Package vectorstore defines the index that RAG retrieval searches: the Store
// interface, its point and query types, and the scoring rules every
// implementation follows (BM25 with the store's idf for sparse vectors, cosine
// for dense vectors, reciprocal rank fusion for hybrid queries).
//
// Implementations live in sub-packages: embedded (the default, in-process
// index) and, later, a Qdrant client. Package vectorstoretest is the contract
// test kit both run.
//
// It is not the source of truth: chunks, documents and knowledge bases live in
// Postgres, and a store can always be rebuilt from there. It does not tokenise
// or embed; package rag turns text into Sparse and dense vectors.
package vectorstore
