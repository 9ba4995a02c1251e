package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aarondl/sqlboiler/v4/queries/qm"
	"github.com/lib/pq"
)

// Defaults of [Options].
const (
	DefaultQueryTimeout = 5 * time.Second
	DefaultMaxOpenConns = 20
)

// connMaxIdleTime closes pooled connections idle for this long.
const connMaxIdleTime = 5 * time.Minute

// Options tunes a Store. Zero values take the defaults.
type Options struct {
	// QueryTimeout bounds one store operation (default 5s): a Postgres that hangs
	// gives ErrUnavailable instead of a hung request.
	QueryTimeout time.Duration
	// MaxOpenConns bounds the connection pool (default 20).
	MaxOpenConns int
	// Origin names this gateway on its database sessions (ragway.origin): the
	// changes it makes carry it in the change feed (it skips them when it follows the
	// feed), and so do the answers it generates (FailOrphaned); "" for tools.
	Origin string
}

// Store is the repository. It is safe for concurrent use.
type Store struct {
	db   *sql.DB
	dsn  string // the connection string, for the feed's listening connection
	url  string // the database's URL with its password masked, for messages ("": a key=value string)
	opts Options

	mu    sync.Mutex
	stmts map[string]*sql.Stmt // prepared statements of the hot paths, by query

	schemaOK atomic.Bool // Ready found the schema this build's
}

// Open returns a Store over the database at dsn, a postgres:// URL or a libpq
// key=value connection string. It does not need Postgres to be up (connections are
// made on use and remade after an outage); a malformed dsn is an error that names the
// problem without repeating the password.
func Open(dsn string, opts Options) (*Store, error) {
	redacted, err := checkURL(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	// OpenDB over pq's Connector rather than sql.Open: the Connector dials with the
	// operation's context, so a server that does not answer costs QueryTimeout, not
	// the operating system's connect timeout.
	if opts.Origin != "" {
		dsn = withOrigin(dsn, opts.Origin)
	}
	connector, err := pq.NewConnector(dsn)
	switch {
	case err != nil && redacted == "":
		// pq's messages may quote pieces of a malformed string: a password among them.
		return nil, errors.New("store: malformed database connection string: want a postgres://user:password@host:port/database URL or libpq key=value pairs (quote values holding spaces in single quotes)")
	case err != nil:
		return nil, fmt.Errorf("store: database %s: %w", redacted, err)
	}
	if opts.QueryTimeout <= 0 {
		opts.QueryTimeout = DefaultQueryTimeout
	}
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = DefaultMaxOpenConns
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(opts.MaxOpenConns)
	db.SetMaxIdleConns(opts.MaxOpenConns)
	db.SetConnMaxIdleTime(connMaxIdleTime)
	return &Store{db: db, dsn: dsn, url: redacted, opts: opts, stmts: map[string]*sql.Stmt{}}, nil
}

// withOrigin adds ragway.origin=origin to dsn's run-time parameters: every session of
// the gateway then names it (the change feed's triggers and an answer's gateway read
// it).
func withOrigin(dsn, origin string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("ragway.origin", origin)
		u.RawQuery = q.Encode()
		return u.String()
	}
	quoted := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(origin)
	return dsn + " ragway.origin='" + quoted + "'"
}

// dsnPassword matches the password of a key=value connection string.
var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)`)

// RedactURL hides the password of a database URL (postgres://user:pass@…, a
// ?password= parameter, or a key=value connection string's password=…), for messages.
func RedactURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" {
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	if strings.Contains(s, "://") {
		return "(a URL that does not parse)"
	}
	return dsnPassword.ReplaceAllString(s, "${1}xxxxx")
}

// checkURL validates dsn when it is a URL and returns it with its password masked,
// for messages; "" for a key=value connection string.
func checkURL(dsn string) (string, error) {
	scheme, _, isURL := strings.Cut(dsn, "://")
	if !isURL {
		return "", nil
	}
	if scheme != "postgres" && scheme != "postgresql" {
		return "", fmt.Errorf("database url: the scheme must be postgres or postgresql, got %q", scheme)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// url.Error quotes the whole URL, password included: keep only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("malformed database url: %v", err)
	}
	redacted := RedactURL(dsn)
	if _, err := pq.ParseURL(dsn); err != nil {
		return "", fmt.Errorf("malformed database url %s: %v", redacted, err)
	}
	switch mode := u.Query().Get("sslmode"); mode {
	case "", "disable", "require", "verify-ca", "verify-full":
	default:
		return "", fmt.Errorf("database url %s: sslmode must be disable, require, verify-ca or verify-full, got %q", redacted, mode)
	}
	return redacted, nil
}

// DB returns the underlying pool (for migrations).
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the pool.
func (s *Store) Close() error {
	s.mu.Lock()
	for _, st := range s.stmts {
		st.Close()
	}
	s.mu.Unlock()
	return s.db.Close()
}

// prepared returns query as a prepared statement, prepared on first use (database/sql
// prepares it again on every connection that runs it, reconnections included). lib/pq
// runs a prepared statement in one round trip, an unprepared query with parameters in
// two: the hot paths (the key lookup of every request, the start of every chat turn)
// use this.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.stmts[query] = st
	return st, nil
}

// dropPrepared closes the prepared statements: the next use prepares them again.
func (s *Store) dropPrepared() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for q, st := range s.stmts {
		_ = st.Close()
		delete(s.stmts, q)
	}
}

// isStalePlan reports whether err is Postgres refusing a prepared statement whose
// result changed shape since it was prepared (a migration added a column to a table
// it returns whole): 0A000 "cached plan must not change result type".
func isStalePlan(err error) bool {
	var pe *pq.Error
	return errors.As(err, &pe) && pe.Code == "0A000" && strings.Contains(pe.Message, "cached plan must not change result type")
}

// Ping checks that Postgres answers: ErrUnavailable when it does not.
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, strings.TrimSpace("ping "+s.url), s.db.PingContext)
}

// Ready returns nil when the database answers (else ErrUnavailable) and has this
// build's schema ([CheckSchema], else ErrSchema). The schema is checked until it
// passes once, then only the ping: a gateway that started while Postgres was
// unreachable learns whether the database that came back is one it can use.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.Ping(ctx); err != nil {
		return err
	}
	if s.schemaOK.Load() {
		return nil
	}
	if err := CheckSchema(ctx, s.db); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s.schemaOK.Store(true)
	return nil
}

// do runs one store operation: fn under a context that ends after QueryTimeout, its
// error classified ([classify]) and prefixed with "store: op: ". The store's own
// deadline is ErrUnavailable (Postgres hangs); the caller's cancellation or deadline is
// reported as such (wrapping context.Canceled or context.DeadlineExceeded).
//
// A serialization failure or a deadlock (SQLSTATE 40001, 40P01: Postgres rolled the
// statement or transaction back, nothing of it was written) runs fn again, at most
// maxAttempts times in all, within the same deadline: fn must be a unit Postgres rolls
// back whole (one statement, or one transaction it begins itself). A conflict that
// outlasts the attempts is ErrDatabase.
func (s *Store) do(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	qctx, cancel := context.WithTimeoutCause(ctx, s.opts.QueryTimeout, errQueryTimeout)
	defer cancel()
	err := fn(qctx)
	if isStalePlan(err) && qctx.Err() == nil {
		// A migration changed what a prepared statement returns: prepared again.
		s.dropPrepared()
		err = fn(qctx)
	}
	for attempt := 1; attempt < maxAttempts && isTransient(err) && qctx.Err() == nil; attempt++ {
		err = fn(qctx)
	}
	switch {
	case err == nil:
		return nil
	case isOutcome(err):
	case ctx.Err() != nil:
		// The caller gave up: whatever the driver made of it (a cancelled statement,
		// a cancelled dial) is not an outage.
		if errors.Is(err, ctx.Err()) {
			return fmt.Errorf("store: %s: %w", op, ctx.Err())
		}
		return fmt.Errorf("store: %s: %w (%v)", op, ctx.Err(), err)
	case context.Cause(qctx) == errQueryTimeout:
		err = fmt.Errorf("%w: %w", errQueryTimeout, err)
	}
	return fmt.Errorf("store: %s: %w", op, classify(err))
}

// maxAttempts bounds the runs of one store operation that Postgres aborts with a
// serialization failure or a deadlock ([isTransient]).
const maxAttempts = 4

// isTransient reports whether err is a serialization failure (40001) or a deadlock
// (40P01): Postgres rolled the work back and running it again may well succeed.
func isTransient(err error) bool {
	var pe *pq.Error
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// isOutcome reports whether err is an answer about the data (not found, conflict,
// invalid) rather than a failure to get one.
func isOutcome(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalid)
}

// validID reports whether id is a UUID in its canonical text form
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), the form of every id this package returns.
// Other text is no row's id: the methods answer ErrNotFound without a query.
func validID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f', 'A' <= c && c <= 'F':
		default:
			return false
		}
	}
	return true
}

// IsID reports whether s has the form of this package's ids (a UUID): what the CLI
// uses to tell an id from a name.
func IsID(s string) bool { return validID(s) }

// validIDs reports whether every id is valid ([validID]).
func validIDs(ids ...string) bool {
	for _, id := range ids {
		if !validID(id) {
			return false
		}
	}
	return true
}

// Page limits: a listing returns DefaultPageLimit rows unless asked for another
// number, at most MaxPageLimit.
const (
	DefaultPageLimit = 50
	MaxPageLimit     = 200
)

// Size returns how many rows the page holds at most: p.Limit within the limits.
func (p Page) Size() int {
	switch {
	case p.Limit <= 0:
		return DefaultPageLimit
	case p.Limit > MaxPageLimit:
		return MaxPageLimit
	}
	return p.Limit
}

// after is the keyset condition of a listing ordered by (timeCol DESC, id DESC): the
// rows after the row of table whose id is id and whose parentCol is parentID (the
// listing's scope). No such row: no rows.
func after(table, timeCol, id, parentCol, parentID string) qm.QueryMod {
	return qm.Where(fmt.Sprintf(`(%[1]s.%[2]s, %[1]s.id) < (SELECT p.%[2]s, p.id FROM %[1]s p WHERE p.id = ? AND p.%[3]s = ?)`,
		table, timeCol, parentCol), id, parentID)
}

// convert applies f to every element of in.
func convert[M any, T any](in []M, f func(M) T) []T {
	out := make([]T, len(in))
	for i, m := range in {
		out[i] = f(m)
	}
	return out
}
