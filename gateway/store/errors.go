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
	// ErrNotFound: no such row for this user.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the row would break a unique constraint (a knowledge base name
	// taken, a duplicate document, a user name taken).
	ErrConflict = errors.New("already exists")
	// ErrInvalid: a value the schema rejects (a check constraint, a malformed id).
	ErrInvalid = errors.New("invalid value")
	// ErrUnavailable: Postgres cannot be reached, or refuses connections for now.
	ErrUnavailable = errors.New("database unavailable")
	// ErrSchema: the database's schema is older than this ragway.
	ErrSchema = errors.New("database schema out of date")
)

// classify maps driver errors to this package's sentinels (wrapping the original).
func classify(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid) ||
		errors.Is(err, ErrUnavailable) || errors.Is(err, ErrSchema) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if IsUnavailable(err) {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code.Class() {
		case "23": // integrity constraint violation
			if pe.Code == "23505" {
				return fmt.Errorf("%w: %s", ErrConflict, pe.Detail)
			}
			return fmt.Errorf("%w: %s", ErrInvalid, pe.Message)
		case "22": // data exception (a malformed uuid, a value out of range)
			return fmt.Errorf("%w: %s", ErrInvalid, pe.Message)
		}
	}
	return err
}

// IsUnavailable reports whether err means Postgres could not be reached or is not
// accepting work: refused or reset connections, a dead session, the server shutting
// down or starting up, too many connections.
func IsUnavailable(err error) bool {
	if err == nil {
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
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return true
	}
	// A query deadline of the store's own (not the caller's) means Postgres hangs.
	return errors.Is(err, errQueryTimeout)
}

// errQueryTimeout marks a store operation that exceeded the store's own deadline.
var errQueryTimeout = errors.New("database did not answer in time")

var _ = context.Canceled
