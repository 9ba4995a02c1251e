package main

// Scratch databases: the gateway needs a migrated Postgres database and an API key.
// Every gateway the bench spawns gets its own database, created for it (a copy of a
// template migrated once per bench run) and dropped when it stops; whatever is left
// (an error, an interrupt) is dropped when the run ends. The server is the one
// DATABASE_URL names (its role must be allowed to create databases), else the
// project-local cluster of `task db:up` (.data/pg),
// initialized and started if needed.

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "github.com/lib/pq" // the driver of store.Migrate's connection

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgcluster"
)

// scratchDBs creates and drops the bench's databases on one server.
type scratchDBs struct {
	admin  string // URL of a database on the server whose role may create databases
	binDir string // holds ragway, for `ragway keys create`
	prefix string // of every database name of this run: ragway_bench_<random>
	tmpl   string // the migrated template ("" until the first database)

	mu   sync.Mutex
	n    int
	live map[string]bool // databases to drop at the end, template included
}

// dbs is the run's scratch databases (set by run before any gateway starts).
var dbs *scratchDBs

// openScratchDBs finds the server: DATABASE_URL, else the project-local cluster.
func openScratchDBs(ctx context.Context, binDir string) (*scratchDBs, error) {
	admin := os.Getenv("DATABASE_URL")
	where := "DATABASE_URL"
	if admin == "" {
		var err error
		if admin, err = localCluster(ctx); err != nil {
			return nil, err
		}
		where = "the project-local cluster (.data/pg)"
	}
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("%s must be a postgres:// URL", where)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	s := &scratchDBs{admin: admin, binDir: binDir, prefix: "ragway_bench_" + hex.EncodeToString(b), live: map[string]bool{}}
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		return nil, fmt.Errorf("the Postgres server of %s (%s): %w", where, u.Redacted(), err)
	}
	return s, nil
}

// localCluster starts the project-local cluster if needed and returns the URL of its
// postgres database. The lock is the one the tests (internal/pgtest) take to start it.
func localCluster(ctx context.Context) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	u, err := pgcluster.UpProject(ctx, root)
	if err != nil {
		return "", fmt.Errorf("the project-local Postgres cluster: %w (set DATABASE_URL to use another server)", err)
	}
	return u, nil
}

// repoRoot is the directory of ragway's go.mod, from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/ragway/ragway\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the bench inside the ragway repository (no go.mod of github.com/ragway/ragway above the working directory)")
		}
		dir = parent
	}
}

// urlOf returns the URL of database name on the server.
func (s *scratchDBs) urlOf(name string) string {
	u, _ := url.Parse(s.admin)
	u.Path = "/" + name
	return u.String()
}

// create makes a fresh migrated database and returns its name and URL.
func (s *scratchDBs) create(ctx context.Context) (name, dbURL string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tmpl == "" {
		// Migrated once; each database is a copy (CREATE DATABASE … TEMPLATE).
		tmpl := s.prefix + "_tmpl"
		s.live[tmpl] = true
		if err := pgcluster.CreateDatabase(ctx, s.admin, tmpl, "template0"); err != nil {
			return "", "", err
		}
		db, err := sql.Open("postgres", s.urlOf(tmpl))
		if err != nil {
			return "", "", err
		}
		_, err = store.Migrate(ctx, db)
		db.Close()
		if err != nil {
			return "", "", fmt.Errorf("migrate the bench's template database: %w", err)
		}
		s.tmpl = tmpl
	}
	s.n++
	name = fmt.Sprintf("%s_%d", s.prefix, s.n)
	s.live[name] = true
	if err := pgcluster.CreateDatabase(ctx, s.admin, name, s.tmpl); err != nil {
		return "", "", err
	}
	return name, s.urlOf(name), nil
}

// createKey makes a user and a key with scopes (comma-separated) in the database at
// dbURL with `ragway keys create` (and its extra flags: --rpm N …) and returns the key.
func (s *scratchDBs) createKey(ctx context.Context, dbURL, user, scopes string, extra ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args := append([]string{"keys", "create", "--user", user, "--scopes", scopes, "--name", "bench"}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, "ragway"), args...)
	cmd.Env = append(os.Environ(), "RAGWAY_DATABASE_URL="+dbURL)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ragway keys create: %w\n%s", err, stderr.Bytes())
	}
	key := strings.TrimSpace(string(out))
	if key == "" || strings.ContainsAny(key, " \n") {
		return "", fmt.Errorf("ragway keys create printed %q, want the key alone", out)
	}
	return key, nil
}

// drop drops database name (ending its sessions).
func (s *scratchDBs) drop(name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgcluster.DropDatabase(ctx, s.admin, name); err != nil {
		return err
	}
	s.mu.Lock()
	delete(s.live, name)
	s.mu.Unlock()
	return nil
}

// close drops every database of the run that is left, the template last.
func (s *scratchDBs) close() error {
	s.mu.Lock()
	var names []string
	for n := range s.live {
		if n != s.tmpl {
			names = append(names, n)
		}
	}
	if s.live[s.tmpl] {
		names = append(names, s.tmpl)
	}
	s.mu.Unlock()
	var errs []error
	for _, n := range names {
		errs = append(errs, s.drop(n))
	}
	return errors.Join(errs...)
}
