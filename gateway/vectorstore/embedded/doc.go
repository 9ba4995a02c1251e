// Package embedded is the default vectorstore.Store: an in-process index kept
// in memory, rebuilt from Postgres at start and updated on ingest.
//
// Per knowledge base it keeps an inverted index for sparse vectors (term →
// postings of slot and weight, with live document frequencies for idf) and
// the dense vectors normalised in one contiguous slab searched by brute force.
// Deletes leave tombstones; a knowledge base is compacted when more than a
// quarter of its slots are dead.
//
// It is not persistent and not distributed: for more than one gateway or for
// indexes larger than memory, use the Qdrant store.
package embedded
