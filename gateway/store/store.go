package store

import (
	"context"
	"database/sql"
	"errors"
	"time"
)

// RevocationChannel is the Postgres NOTIFY channel RevokeAPIKey signals, with the
// revoked key's prefix as payload ([Store.ListenRevocations]).
const RevocationChannel = "ragway_api_key_revoked"

// Options tunes a Store. Zero values take the defaults.
type Options struct {
	// QueryTimeout bounds one store operation (default 5s): a Postgres that hangs
	// gives ErrUnavailable instead of a hung request.
	QueryTimeout time.Duration
	// MaxOpenConns bounds the connection pool (default 20).
	MaxOpenConns int
}

// Store is the repository. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	url  string
	opts Options
}

var errUnimplemented = errors.New("store: not implemented yet")

// Open returns a Store over the database at url. It does not need Postgres to be up
// (connections are made on use and remade after an outage); a malformed url is an error.
func Open(url string, opts Options) (*Store, error) { return nil, errUnimplemented }

// DB returns the underlying pool (for migrations).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error { return errUnimplemented }

// ListenRevocations calls revoked with the prefix of every key revoked from now on
// (by any gateway or the CLI), and reset whenever revocations may have been missed
// (the listening connection was lost and is back): the caller must then forget
// whatever it cached. It returns when ctx ends.
func (s *Store) ListenRevocations(ctx context.Context, revoked func(prefix string), reset func()) {}

// EnsureUser returns the user called name, creating it if needed.
func (s *Store) EnsureUser(ctx context.Context, name string) (User, error) {
	return User{}, errUnimplemented
}

// UserByName returns the user called name.
func (s *Store) UserByName(ctx context.Context, name string) (User, error) {
	return User{}, errUnimplemented
}

// CountUsers returns the number of users.
func (s *Store) CountUsers(ctx context.Context) (int, error) { return 0, errUnimplemented }

// CreateAPIKey stores a key.
func (s *Store) CreateAPIKey(ctx context.Context, k NewAPIKey) (APIKey, error) {
	return APIKey{}, errUnimplemented
}

// APIKeyByPrefix returns the key with that prefix (revoked ones included), with its
// user's name.
func (s *Store) APIKeyByPrefix(ctx context.Context, prefix string) (APIKey, error) {
	return APIKey{}, errUnimplemented
}

// ListAPIKeys lists the keys of the user called userName ("" : every user's), oldest
// first.
func (s *Store) ListAPIKeys(ctx context.Context, userName string) ([]APIKey, error) {
	return nil, errUnimplemented
}

// RevokeAPIKey revokes the key with that prefix and notifies RevocationChannel in the
// same transaction. Revoking a revoked key keeps its first revocation time.
func (s *Store) RevokeAPIKey(ctx context.Context, prefix string) (APIKey, error) {
	return APIKey{}, errUnimplemented
}

// TouchAPIKey sets the key's last use.
func (s *Store) TouchAPIKey(ctx context.Context, id string, at time.Time) error {
	return errUnimplemented
}

// CreateConversation starts an empty conversation of userID.
func (s *Store) CreateConversation(ctx context.Context, userID string, c NewConversation) (Conversation, error) {
	return Conversation{}, errUnimplemented
}

// ListConversations lists userID's conversations, most recently updated first.
func (s *Store) ListConversations(ctx context.Context, userID string, p Page) ([]Conversation, error) {
	return nil, errUnimplemented
}

// GetConversation returns userID's conversation id.
func (s *Store) GetConversation(ctx context.Context, userID, id string) (Conversation, error) {
	return Conversation{}, errUnimplemented
}

// DeleteConversation deletes userID's conversation id and its messages.
func (s *Store) DeleteConversation(ctx context.Context, userID, id string) error {
	return errUnimplemented
}

// ListMessages returns the messages of userID's conversation id, in order.
func (s *Store) ListMessages(ctx context.Context, userID, conversationID string) ([]Message, error) {
	return nil, errUnimplemented
}

// BeginTurn stores t's messages and an in-progress assistant message in userID's
// conversation, in one transaction, and returns them with the history.
func (s *Store) BeginTurn(ctx context.Context, userID, conversationID string, t Turn) (TurnStarted, error) {
	return TurnStarted{}, errUnimplemented
}

// FinishMessage ends userID's in-progress assistant message messageID.
func (s *Store) FinishMessage(ctx context.Context, userID, messageID string, f Finish) (Message, error) {
	return Message{}, errUnimplemented
}

// RecordUsage stores one usage row.
func (s *Store) RecordUsage(ctx context.Context, u Usage) error { return errUnimplemented }
