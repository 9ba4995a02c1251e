// Package auth is the gateway's access control: API keys, the scopes they carry, and
// per-key rate limits.
//
// A key looks like
//
//	rgw_k3x9q2ab_<40 base62 characters>
//
// Its first 12 characters ("rgw_" and 8 lowercase letters or digits) are the visible
// prefix: stored in clear, unique, shown in listings, and used to find the key's row.
// Only the SHA-256 of the whole key is stored ([Hash]); the key itself is shown once,
// when it is made ([NewKey]).
//
// An [Authenticator] turns a key into a [Principal] (who calls, with which scopes and
// limits). It asks the database on every call, so a revocation takes effect at once, on
// every gateway sharing the database; if the database is unreachable it keeps accepting
// keys it validated shortly before (stale-if-error), so chat that needs no storage
// survives a Postgres outage. A [Limiter] enforces requests-per-minute and
// tokens-per-minute limits with token buckets.
//
// The package knows nothing of HTTP or WebSocket: callers extract the key
// ([BearerToken] parses an Authorization header), call [Authenticator.Authenticate],
// [RequireScope] and [Limiter.Admit], and map the sentinel errors ([ErrNoKey],
// [ErrInvalidKey], [ErrRevokedKey], [ErrMissingScope], [ErrRateLimited]) to their
// protocol's status codes. Keys and their hashes are never logged, and no error carries
// a key.
package auth
