// Package embedded is the default vectorstore.Store: an in-process index kept
// in memory, rebuilt from Postgres at start and updated on ingest.
//
// Per knowledge base it keeps an inverted index for sparse vectors (term →
// postings of slot and weight, with live document frequencies for idf; an upsert's
// postings are sorted by term and added a term at a time, postings.go; a query
// with many postings adds into the accumulator of every slot, in slot ranges on
// every core) and the dense vectors normalised in a segmented slab (slab.go).
// Dense search is exact (every row, with AVX2 where the processor has it) below
// annMinRows rows; above, an inverted-file index (ivf.go: spherical k-means
// lists, a row's nearest found through groups of centroids, built and extended in
// the background, searched with the rows it does not cover yet scanned exactly)
// scans the lists nearest the query. A hybrid search through that index is
// approximate on its sparse side too when the query's postings are very many (a
// pasted paragraph): the rarest terms' postings, within a budget, pick candidates
// that are then scored exactly with every term (kb.go: sparseApprox); a sparse-only
// search is always exact. Deletes leave tombstones; a knowledge base is compacted
// when more than a quarter of its slots are dead.
//
// It is not persistent and not distributed: for more than one gateway or for
// indexes larger than memory, use the Qdrant store.
package embedded
