// Package knowledge is the service behind the knowledge-base routes: a user's
// knowledge bases and their documents, an upload's life from its bytes to its indexed
// chunks, and searching a knowledge base.
//
// A transport (package api) decodes and validates a request, then calls a [Service]
// method with the caller's user id; results are this package's own types ([Base],
// [Document], [Hit]), never the store's. Errors are the domain's: [ErrNotFound],
// [ErrConflict] and the store's other classes, which chat.APIError maps to the wire;
// [DuplicateError], [UploadError], [ErrExtract] and [ErrInvalidFilter], which the
// transport maps to messages that name what was sent.
//
// An upload ([Service.AddDocument]) is detected, its text extracted (PDF in a child
// process, through Options.Extract), and stored as a pending document; it is then
// indexed (chunked, stored, put in the vector index: rag.Indexer) before the call
// returns when asked to wait, else in the background. Background indexing belongs to
// the gateway, not to the request: it runs under Options.Context, one document at a
// time by default (Options.Ingests) so that it never crowds chats out, and a document
// the gateway stops before indexing is marked failed (upload it again) rather than
// left pending. Options.Indexing counts these goroutines for a shutdown to wait on.
//
// Postgres is the source of truth: deleting a knowledge base or a document deletes
// its rows first; index entries a failed vector-store delete leaves behind are never
// shown (their chunks are gone) and `ragway reindex` clears them.
//
// The package is not HTTP (no status codes, no parameter names), does not chunk or
// retrieve itself (package rag) and does not parse files (package ingest).
package knowledge
