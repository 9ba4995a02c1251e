package ingest

import "crypto/sha256"

// SHA256 returns the SHA-256 digest of a document's raw bytes, as uploaded (before
// extraction): two uploads of the same file have the same digest, which is what the
// store's per-knowledge-base duplicate check compares.
func SHA256(data []byte) []byte {
	sum := sha256.Sum256(data)
	return sum[:]
}
