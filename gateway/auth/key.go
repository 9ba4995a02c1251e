package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"strings"
)

// Key shape: "rgw_" + PrefixRandLen lowercase alphanumerics (the visible prefix, PrefixLen
// characters in all) + "_" + SecretLen base62 characters.
const (
	KeyScheme     = "rgw_"
	PrefixRandLen = 8
	PrefixLen     = len(KeyScheme) + PrefixRandLen // 12
	SecretLen     = 40
	KeyLen        = PrefixLen + 1 + SecretLen // 53
)

const (
	prefixAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
)

// NewKey makes a new random key and returns it with its visible prefix and its hash
// (what the database stores). The key must be shown to its owner once and then
// forgotten.
func NewKey() (key, prefix string, hash []byte, err error) {
	p, err := randomString(prefixAlphabet, PrefixRandLen)
	if err != nil {
		return "", "", nil, fmt.Errorf("new API key: %w", err)
	}
	s, err := randomString(secretAlphabet, SecretLen)
	if err != nil {
		return "", "", nil, fmt.Errorf("new API key: %w", err)
	}
	prefix = KeyScheme + p
	key = prefix + "_" + s
	return key, prefix, Hash(key), nil
}

// randomString returns n characters drawn uniformly from alphabet (at most 256
// characters) with crypto/rand: bytes that would bias the draw are rejected.
func randomString(alphabet string, n int) (string, error) {
	limit := 256 - 256%len(alphabet) // the largest multiple of len(alphabet) ≤ 256
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit {
				out = append(out, alphabet[int(b)%len(alphabet)])
				if len(out) == n {
					break
				}
			}
		}
	}
	return string(out), nil
}

// Hash returns the SHA-256 of key: what the database stores instead of the key.
func Hash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// PrefixOf returns the visible prefix of key if key has the shape of a ragway key
// (length, scheme, separators and character sets); it does not tell whether the key
// exists.
func PrefixOf(key string) (string, bool) {
	if len(key) != KeyLen || !ValidPrefix(key[:PrefixLen]) || key[PrefixLen] != '_' {
		return "", false
	}
	for i := PrefixLen + 1; i < len(key); i++ {
		if !isBase62(key[i]) {
			return "", false
		}
	}
	return key[:PrefixLen], true
}

// ValidPrefix reports whether s has the shape of a key's visible prefix
// ("rgw_" + 8 lowercase letters or digits).
func ValidPrefix(s string) bool {
	if len(s) != PrefixLen || !strings.HasPrefix(s, KeyScheme) {
		return false
	}
	for i := len(KeyScheme); i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isBase62(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// BearerToken extracts the key from an Authorization header value ("Bearer <key>", the
// scheme in any case). It returns ErrNoKey when the header is empty or names no key,
// and ErrInvalidKey when it is not a bearer token. Whether the token is a valid key
// is the Authenticator's to say.
func BearerToken(authorizationHeader string) (string, error) {
	f := strings.Fields(authorizationHeader)
	switch {
	case len(f) == 0:
		return "", ErrNoKey
	case !strings.EqualFold(f[0], "Bearer"):
		return "", fmt.Errorf("%w: the Authorization header must be \"Bearer <key>\"", ErrInvalidKey)
	case len(f) == 1:
		return "", ErrNoKey
	case len(f) > 2:
		return "", ErrInvalidKey
	}
	return f[1], nil
}
