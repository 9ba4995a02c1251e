// Package pgtest gives tests real Postgres databases: a fresh, migrated database per
// call to [Database], on the server DATABASE_URL names or else on the project-local
// cluster (.data/pg, started if needed: the one `task db:up` runs), and private
// clusters ([Cluster]) that a test may stop and start.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	_ "github.com/lib/pq" // the driver

	"github.com/ragway/ragway/db/migrations"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgcluster"
)

// Server returns the URL of a database on the test server whose role may create
// databases: DATABASE_URL when set, else the project-local cluster's "postgres"
// database (the cluster is created and started if needed).
func Server(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	u, err := pgcluster.UpProject(ctx, repoRoot())
	if err != nil {
		tb.Fatalf("pgtest: the project-local Postgres cluster: %v (set DATABASE_URL to use another server)", err)
	}
	return u
}

// EmptyDatabase creates a database without any migration, dropped when the test ends,
// and returns its URL.
func EmptyDatabase(tb testing.TB) string {
	tb.Helper()
	server := Server(tb)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := "t_empty_" + randHex(8)
	if err := pgcluster.CreateDatabase(ctx, server, name, "template0"); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := pgcluster.DropDatabase(context.Background(), server, name); err != nil {
			tb.Logf("pgtest: %v", err)
		}
	})
	return withDatabase(server, name)
}

// Database creates a fresh database with every migration applied, dropped when the
// test ends, and returns its URL.
func Database(tb testing.TB) string {
	tb.Helper()
	return databaseOn(tb, Server(tb))
}

func databaseOn(tb testing.TB, server string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tmpl, err := ensureTemplate(ctx, server)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	name := "t_" + randHex(8)
	if err := pgcluster.CreateDatabase(ctx, server, name, tmpl); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := pgcluster.DropDatabase(ctx, server, name); err != nil {
			tb.Logf("pgtest: %v", err)
		}
	})
	return withDatabase(server, name)
}

// ensureTemplate makes the template database for the current migrations: named after
// their hash, so a changed migration gets a new template. Several processes may call it
// at once: an advisory lock lets one build it.
func ensureTemplate(ctx context.Context, server string) (string, error) {
	name := "ragway_tmpl_" + migrationsHash()
	db, err := sql.Open("postgres", server)
	if err != nil {
		return "", err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(server), err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7412093)`); err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(server), err)
	}
	defer conn.ExecContext(context.Background(), `SELECT pg_advisory_unlock(7412093)`)
	var ready bool
	err = conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)`, name).Scan(&ready)
	if err != nil || ready {
		return name, err
	}
	// A half-built template from a killed run is dropped and rebuilt.
	if err := pgcluster.DropDatabase(ctx, server, name); err != nil {
		return "", err
	}
	if err := pgcluster.CreateDatabase(ctx, server, name, "template0"); err != nil {
		return "", err
	}
	tdb, err := sql.Open("postgres", withDatabase(server, name))
	if err != nil {
		return "", err
	}
	_, err = store.Migrate(ctx, tdb)
	tdb.Close()
	if err != nil {
		return "", fmt.Errorf("migrate the template database: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `UPDATE pg_database SET datistemplate = true WHERE datname = $1`, name); err != nil {
		return "", err
	}
	return name, nil
}

func migrationsHash() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(migrations.FS, p)
		fmt.Fprintf(h, "%s\x00%d\x00", p, len(b))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// withDatabase returns server's URL naming database name instead.
func withDatabase(server, name string) string {
	u, err := url.Parse(server)
	if err != nil || u.Scheme == "" {
		panic(fmt.Sprintf("pgtest: DATABASE_URL must be a postgres:// URL, got %q", redact(server)))
	}
	u.Path = "/" + name
	return u.String()
}

func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Cluster is a private Postgres cluster for one test (in a temporary directory, on a
// free port), which the test may Stop and Start; it is removed when the test ends.
type Cluster struct {
	*pgcluster.Cluster
	tb testing.TB
}

// NewCluster creates and starts a private cluster.
func NewCluster(tb testing.TB) *Cluster {
	tb.Helper()
	base, err := os.MkdirTemp("", "ragway-pgtest-")
	if err != nil {
		tb.Fatal(err)
	}
	// The server user must reach the data directory.
	if err := os.Chmod(base, 0o755); err != nil {
		tb.Fatal(err)
	}
	c := &Cluster{Cluster: &pgcluster.Cluster{Dir: filepath.Join(base, "pg"), Port: freePort(tb)}, tb: tb}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.Init(ctx); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.Cluster.Stop(ctx); err != nil {
			tb.Logf("pgtest: stop: %v", err)
		}
		os.RemoveAll(base)
	})
	c.Start()
	return c
}

// Start starts the server and waits until it accepts connections.
func (c *Cluster) Start() {
	c.tb.Helper()
	c.must(c.Cluster.Start)
}

// Stop stops the server (fast shutdown).
func (c *Cluster) Stop() {
	c.tb.Helper()
	c.must(c.Cluster.Stop)
}

// Crash stops the server as a crash would: what was not yet on disk is lost.
func (c *Cluster) Crash() {
	c.tb.Helper()
	c.must(c.Cluster.Crash)
}

// must runs op on the cluster, failing the test on an error.
func (c *Cluster) must(op func(context.Context) error) {
	c.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := op(ctx); err != nil {
		c.tb.Fatalf("pgtest: %v", err)
	}
}

// Database creates a fresh migrated database on this cluster and returns its URL.
func (c *Cluster) Database() string {
	c.tb.Helper()
	u, err := c.URL("postgres")
	if err != nil {
		c.tb.Fatal(err)
	}
	return databaseOn(c.tb, u)
}

func freePort(tb testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
