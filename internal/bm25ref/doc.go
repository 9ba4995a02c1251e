// Package bm25ref is a textbook BM25 retriever, the yardstick ragway's retrieval is
// measured against (issue: retrieval that beats BM25): documents cut into windows of
// 400 tokens overlapping by 60 (a token: a Latin word or a CJK character), scored
// with k1 = 1.2, b = 0.75, the corpus's own average length and Robertson–Spärck Jones
// IDF, over terms that are lower-cased words for Latin script and character bigrams
// for CJK. It is test tooling, not shipped code: it holds everything in memory and
// scans every window for every query.
package bm25ref
