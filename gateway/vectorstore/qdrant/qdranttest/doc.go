// Package qdranttest is an in-process stand-in for a Qdrant server, for tests
// of the Qdrant vector store. It serves the gRPC API through the go-client's
// own generated server interfaces (qdrant.RegisterCollectionsServer,
// RegisterPointsServer, RegisterQdrantServer) and implements exactly the calls
// package qdrant makes, with Qdrant's semantics:
//
//   - Collections: Create (named dense vectors with a size and distance Cosine
//     or Dot, named sparse vectors with an optional IDF modifier), Get, List,
//     CollectionExists, Delete.
//   - Points: Upsert (replace by id; wrong dense dimension or unknown vector
//     name → InvalidArgument), Delete (by ids or by filter), CreateFieldIndex
//     (recorded, idempotent), Query.
//   - Query: nearest on a named vector (dense cosine: vectors stored
//     normalised, score = dot product; sparse: Σ q·w over shared indices, with
//     q multiplied by ln(1 + (N − n + 0.5)/(n + 0.5)) under the IDF modifier,
//     N = points of the collection that have the sparse vector, n = those
//     containing the index; only points sharing an index are found), and
//     fusion of prefetches by reciprocal rank fusion: Σ 1/(k + position) with
//     0-based positions, k from Rrf.K or 2 (Fusion RRF, or Rrf without K).
//     The query's filter also applies to its prefetches, as in Qdrant.
//   - Filters: must / should / must_not of match keyword, match any keywords,
//     has_id and nested filters.
//   - Qdrant.HealthCheck.
//
// Unknown collection → NotFound. Request fields the store never sets
// (offset, score threshold, update filters, other query kinds ...) are
// rejected with Unimplemented rather than silently ignored. Qdrant leaves
// the order of equal scores unspecified; the stand-in orders them by point id
// descending, the reverse of what vectorstore asks for, so that a client
// re-sorting its results is exercised.
//
// FailNext makes the next calls fail with a chosen code, to test retries.
package qdranttest
