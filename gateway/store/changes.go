package store

import (
	"context"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// ChangeKind says what a Change changed.
type ChangeKind string

// The kinds of changes (db/migrations/00005_changes.sql writes them, by trigger).
const (
	// ChangeDocumentIndexed: document DocumentID of KBID got its chunks (again).
	ChangeDocumentIndexed ChangeKind = "document_indexed"
	// ChangeDocumentDeleted: document DocumentID of KBID is gone with its chunks.
	ChangeDocumentDeleted ChangeKind = "document_deleted"
	// ChangeKBDeleted: knowledge base KBID is gone with its documents.
	ChangeKBDeleted ChangeKind = "kb_deleted"
	// ChangeKeyRevoked: the API key with prefix KeyPrefix was revoked.
	ChangeKeyRevoked ChangeKind = "key_revoked"
	// ChangeModelChanged: the model deployment called Model was added, changed or
	// deleted (db/migrations/00010_model_changes.sql).
	ChangeModelChanged ChangeKind = "model_changed"
)

// Change is one entry of the change feed: what gateways sharing the database keep in
// memory and must follow.
type Change struct {
	// ID orders the feed: a change with a higher id committed after every change
	// with a lower one.
	ID         int64
	At         time.Time
	Kind       ChangeKind
	KBID       string
	DocumentID string
	KeyPrefix  string
	Model      string
	// Origin names the gateway that made the change (Options.Origin), "" for anyone
	// else (the CLI, psql).
	Origin string
}

// ChangesChannel is the LISTEN/NOTIFY channel on which every change is announced, at
// its commit.
const ChangesChannel = "ragway_changes"

// Changes returns at most limit changes after id after, in order, and the feed's
// horizon: the highest id pruned. A follower whose position is below the horizon
// missed changes and must reload.
func (s *Store) Changes(ctx context.Context, after int64, limit int) ([]Change, int64, error) {
	var (
		out     []Change
		horizon int64
	)
	err := s.do(ctx, "read changes", func(ctx context.Context) error {
		out = out[:0]
		rows, err := s.db.QueryContext(ctx, `SELECT id, at, kind, coalesce(kb_id::text, ''), coalesce(document_id::text, ''),
			coalesce(key_prefix, ''), coalesce(model, ''), origin FROM changes WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var c Change
			if err := rows.Scan(&c.ID, &c.At, &c.Kind, &c.KBID, &c.DocumentID, &c.KeyPrefix, &c.Model, &c.Origin); err != nil {
				return err
			}
			out = append(out, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		// The horizon after the rows: a prune between the two reads shows as a horizon
		// past the position (the caller reloads), never as a gap in the rows unseen.
		return s.db.QueryRowContext(ctx, `SELECT pruned_through FROM change_horizon`).Scan(&horizon)
	})
	return out, horizon, err
}

// LastChange returns the id of the latest change (0: none yet), the position a
// gateway follows the feed from once it loaded what the database holds.
func (s *Store) LastChange(ctx context.Context) (int64, error) {
	var id int64
	err := s.do(ctx, "last change", func(ctx context.Context) error {
		return s.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM changes`).Scan(&id)
	})
	return id, err
}

// PruneChanges deletes the changes older than keep and returns how many it deleted.
// Gateways that were away longer than keep reload instead of reading on.
func (s *Store) PruneChanges(ctx context.Context, keep time.Duration) (int64, error) {
	var n int64
	err := s.do(ctx, "prune changes", func(ctx context.Context) error {
		return s.db.QueryRowContext(ctx, `SELECT ragway_prune_changes($1 * interval '1 millisecond')`, keep.Milliseconds()).Scan(&n)
	})
	return n, err
}

// ListenChanges wakes the caller when changes may have been made: a value on the
// returned channel for each notification, and one when the listening connection was
// (re)made, since notifications may have been missed meanwhile. It runs until ctx
// ends, reconnecting with backoff when Postgres goes away; the channel is closed then.
func (s *Store) ListenChanges(ctx context.Context) <-chan struct{} {
	wake := make(chan struct{}, 1)
	signal := func() {
		select {
		case wake <- struct{}{}:
		default: // a wake-up is pending already: it covers this one
		}
	}
	l := pq.NewListener(s.dsn, 100*time.Millisecond, 10*time.Second, func(ev pq.ListenerEventType, _ error) {
		if ev == pq.ListenerEventConnected || ev == pq.ListenerEventReconnected {
			signal()
		}
	})
	go func() {
		defer close(wake)
		defer l.Close()
		// Not connected yet is not an error here: the listener remembers the channel
		// and listens on every connection it makes.
		_ = l.Listen(ChangesChannel)
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-l.Notify:
				if !ok {
					return
				}
				signal()
			}
		}
	}()
	return wake
}

// EachDocumentChunks calls fn with the chunks of document docID of knowledge base kbID,
// batch at a time, in ordinal order: what a follower of the feed reads of a document
// indexed elsewhere. It is not scoped by user (the gateway's path, never a client's).
func (s *Store) EachDocumentChunks(ctx context.Context, kbID, docID string, batch int, fn func([]Chunk) error) error {
	if !validIDs(kbID, docID) {
		return fmt.Errorf("store: document chunks: %w", ErrNotFound)
	}
	return s.eachChunks(ctx, "document chunks", kbID, docID, batch, fn)
}
