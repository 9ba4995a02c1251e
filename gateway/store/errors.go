package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/lib/pq"
)

var (
	// ErrNotFound: no such row for this user (or an id that is not a UUID).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the row would break a unique constraint (a knowledge base name
	// taken, a duplicate document, a user name taken).
	ErrConflict = errors.New("already exists")
	// ErrInvalid: a value the schema rejects (a check constraint, an unknown role,
	// status or scope).
	ErrInvalid = errors.New("invalid value")
	// ErrUnavailable: Postgres cannot be reached, refuses connections for now, or did
	// not answer within the store's QueryTimeout.
	ErrUnavailable = errors.New("database unavailable")
	// ErrSchema: the database's schema is older than this ragway.
	ErrSchema = errors.New("database schema out of date")
	// ErrDatabase: any other failure of Postgres (a missing table, a closed pool):
	// the operator's to look at, a 500 for clients.
	ErrDatabase = errors.New("database error")
)

// classify maps driver errors to this package's sentinels: an outage wraps the
// original error too; a constraint's error keeps Postgres's words only.
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) ||
		errors.Is(err, ErrUnavailable) || errors.Is(err, ErrSchema) || errors.Is(err, ErrDatabase) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if IsUnavailable(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code.Class() {
		case "23": // integrity constraint violation
			switch pe.Code {
			case "23505": // unique_violation
				return fmt.Errorf("%w: %s", ErrConflict, pe.Detail)
			case "23503": // foreign_key_violation: the row referred to (a user, a knowledge base) is gone
				return fmt.Errorf("%w: %s", ErrNotFound, pe.Detail)
			}
			return fmt.Errorf("%w: %s", ErrInvalid, pe.Message)
		case "22": // data exception (a malformed uuid, a value out of range)
			return fmt.Errorf("%w: %s", ErrInvalid, pe.Message)
		}
	}
	return fmt.Errorf("%w: %w", ErrDatabase, err)
}

// IsUnavailable reports whether err means Postgres could not be reached or is not
// accepting work: refused or reset connections, a dead session, the server shutting
// down or starting up, too many connections, or a store operation that exceeded the
// store's own query timeout. A cancelled or expired context of the caller is not.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, errQueryTimeout) {
		// A query deadline of the store's own (not the caller's) means Postgres hangs.
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		// The caller's (context.DeadlineExceeded is a net.Error too).
		return false
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch {
		case pe.Code.Class() == "08": // connection exception
			return true
		case pe.Code.Class() == "57": // operator intervention: admin/crash shutdown, cannot connect now
			return pe.Code != "57014" // query_canceled is the caller's own doing
		case pe.Code == "53300": // too_many_connections
			return true
		}
	}
	var ne net.Error // *net.OpError among them
	return errors.As(err, &ne)
}

// errQueryTimeout marks a store operation that exceeded the store's own deadline.
var errQueryTimeout = errors.New("database did not answer in time")

// DuplicateError is CreateDocument's error for content its knowledge base already
// holds (the same SHA-256): errors.Is(err, ErrConflict) holds, and Existing is the
// stored document.
type DuplicateError struct {
	Existing Document
}

// Error names the stored document with the same content.
func (e *DuplicateError) Error() string {
	return fmt.Sprintf("%v: document %s (%q) has the same content", ErrConflict, e.Existing.ID, e.Existing.Title)
}

// Unwrap returns ErrConflict.
func (e *DuplicateError) Unwrap() error { return ErrConflict }

// FieldError is an ErrInvalid about one field of the input, found before any write:
// Field names it as the API does ("title", "messages[1].content"), Reason says what is
// wrong with it in words for the client (never Postgres's).
type FieldError struct {
	Field  string
	Reason string
}

// Error is "field: reason".
func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// ConflictError is a request the present state of what it names refuses (an answer
// no longer the last of its conversation): Field names it. It wraps ErrConflict.
type ConflictError struct {
	Field  string
	Reason string
}

// Error is "field: reason".
func (e *ConflictError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap returns ErrConflict.
func (e *ConflictError) Unwrap() error { return ErrConflict }
