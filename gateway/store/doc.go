// Package store is ragway's Postgres repository. It runs the migrations of db/migrations
// ([Migrate]) and reads and writes rows through the sqlboiler models of db/models, and
// returns domain types ([User], [APIKey], [Conversation], [Message], ...) so no other
// package sees the generated code.
//
// Every method a user can reach takes the caller's user id and scopes its query by it: a
// row of another user is [ErrNotFound], exactly like a row that does not exist, and so
// is an id that is not a UUID. Several rows that must change together change in one
// transaction.
//
// Every operation runs under the caller's context bounded by [Options.QueryTimeout].
// Errors: [ErrNotFound], [ErrConflict] (a unique constraint; [*DuplicateError] for a
// document's content), [ErrInvalid] (a value the schema rejects; [*FieldError], naming
// the field, for text checked before any write: NUL or invalid UTF-8 ([CheckText]), a
// knowledge-base name's length) and [ErrUnavailable]
// (Postgres cannot be reached, is shutting down, or did not answer within QueryTimeout:
// the caller answers 503). A caller's own cancellation or deadline is reported as
// context.Canceled or context.DeadlineExceeded, not ErrUnavailable. database/sql
// reconnects by itself, so once Postgres is back the next call succeeds. A deadlock or
// serialization failure (40P01, 40001) is run again a few times before it is
// [ErrDatabase]; locks are taken in one order (a knowledge base before its documents)
// so that deleting a knowledge base and indexing into it do not deadlock.
package store
