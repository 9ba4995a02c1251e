package ws

import (
	"crypto/rand"
	"encoding/hex"
)

// newRequestID returns a random id for sdk.GenerateRequest.RequestID.
func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "ws-" + hex.EncodeToString(b[:])
}
