// Package store is ragway's Postgres repository. It runs the migrations of db/migrations
// ([Migrate]) and reads and writes rows through the sqlboiler models of db/models, and
// returns domain types ([User], [APIKey], [Conversation], [Message], ...) so no other
// package sees the generated code.
//
// Every method a user can reach takes the caller's user id and scopes its query by it: a
// row of another user is [ErrNotFound], exactly like a row that does not exist. Several
// rows that must change together change in one transaction.
//
// Errors: [ErrNotFound], [ErrConflict] (a unique constraint), [ErrInvalid] (a check
// constraint or malformed id) and [ErrUnavailable] (Postgres cannot be reached or is
// shutting down: the caller answers 503). database/sql reconnects by itself, so once
// Postgres is back the next call succeeds.
package store
