package oai

import (
	"crypto/rand"
	"encoding/hex"
)

// NewID returns a random 24-hex-digit id for responses and requests.
func NewID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
