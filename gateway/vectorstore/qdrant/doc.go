// Package qdrant is a vectorstore.Store backed by a Qdrant server, spoken to
// over gRPC with the official github.com/qdrant/go-client.
//
// # Collections
//
// Every knowledge base has its own collection, named after the prefix
// (Config.Collection, default "ragway"), the knowledge base and its
// embedding space:
//
//	<prefix>_kb_<kb id>_d<dim>    a knowledge base with dense vectors of dimension dim
//	<prefix>_kb_<kb id>_sparse    a knowledge base without dense vectors
//
// A kb id made only of ASCII letters, digits and '-' (at most 64 of them; a
// UUID, say) is used as it is; any other is replaced by the first 32 hex
// digits of its SHA-256 and the stem becomes "<prefix>_kbh_<hash>". Since
// neither form contains '_', names never collide or parse ambiguously.
//
// Each collection has the named vectors "dense" (cosine, size dim; _d
// collections only) and "sparse" (modifier IDF), and the payload fields
// kb_id, document_id and chunk_id, each with a keyword index created with the
// collection. The point id is the ChunkID (a UUID).
//
// Why one collection per knowledge base rather than one per embedding space:
// Qdrant's IDF modifier computes N and n over the whole collection, while
// vectorstore.Store scores sparse hits with the statistics of the knowledge
// base alone (and the contract kit asserts exact scores after deletes with
// another knowledge base present in the same space). Separate collections
// make Qdrant's own IDF exactly the knowledge base's.
//
// # Discovery
//
// The knowledge base → collection mapping needs no registry: the collection
// name determines it. The store caches it; on a cache miss (after a restart,
// or for a knowledge base it has not seen) it lists the collections and looks
// for the knowledge base's stem. DeleteKB drops the collection, so the
// dimension is forgotten with it. A knowledge base that already has a
// collection of one embedding space rejects points of another with
// vectorstore.ErrInvalid — including dense points for a knowledge base that
// has so far stored only sparse ones (DeleteKB it first). One Store should
// own a prefix: the cache is not invalidated by other processes' DeleteKB.
//
// # Search
//
// Sparse-only and dense-only queries are a nearest query on one named vector.
// Hybrid queries fused by RRF (the default) are one Query call with two
// prefetches (dense and sparse, limit vectorstore.PrefetchLimit(topK)) fused by
// Qdrant's RRF with k+1 (61 for the default 60): Qdrant scores 1/(k + position)
// with 0-based positions, which is 1/(60 + rank) with 1-based ranks. This needs
// a server that supports the parametrised Rrf query (Qdrant 1.17, the version of
// the client). Hybrid queries fused by weights (vectorstore.FusionWeighted) are
// two Query calls, one per list, fused here: Qdrant has no min-max weighted
// fusion. Qdrant leaves the order of equal scores unspecified, so results
// are re-sorted by score descending then ChunkID, and when the last hit
// wanted ties with the next one the query is repeated with a doubled limit
// until the tied group is complete: the top TopK are then exactly the
// embedded store's. (Ties inside a hybrid query's prefetch lists are ranked
// in Qdrant's order, so fused scores of exactly tied points may differ from
// the embedded store's.)
//
// Sparse statistics: Qdrant applies idf to the query weights, with N and n
// counted over the collection, i.e. over the knowledge base.
//
// # Errors and retries
//
// Every call is bounded by Config.Timeout (all attempts together) and by its
// context. Calls failing with Unavailable, DeadlineExceeded or
// ResourceExhausted are retried with a short exponential backoff (every call
// the store makes is idempotent). InvalidArgument maps to
// vectorstore.ErrInvalid; Unavailable, DeadlineExceeded, ResourceExhausted
// and connection failures to vectorstore.ErrUnavailable.
package qdrant
