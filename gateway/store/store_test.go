package store_test

import (
	"context"
	"errors"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/db/migrations"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

func TestMigrateFromEmpty(t *testing.T) {
	s := openURL(t, pgtest.EmptyDatabase(t), store.Options{})
	db := s.DB()

	files, err := migrations.FS.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, f := range files {
		if path.Ext(f.Name()) == ".sql" {
			all = append(all, f.Name())
		}
	}
	if len(all) == 0 {
		t.Fatal("no migration files")
	}

	st, err := store.MigrationStatus(ctx(t), db)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != len(all) {
		t.Fatalf("status of an empty database lists %d migrations, want %d", len(st), len(all))
	}
	for _, m := range st {
		if m.Applied {
			t.Errorf("migration %s applied in an empty database", m.Name)
		}
	}
	err = store.CheckSchema(ctx(t), db)
	wantErr(t, "CheckSchema of an empty database", err, store.ErrSchema)
	if err != nil && !strings.Contains(err.Error(), all[0]) {
		t.Errorf("CheckSchema's error %q does not name the missing migration %s", err, all[0])
	}

	applied, err := store.Migrate(ctx(t), db)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(applied, ",") != strings.Join(all, ",") {
		t.Errorf("Migrate applied %v, want %v", applied, all)
	}
	st, err = store.MigrationStatus(ctx(t), db)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st {
		if !m.Applied || m.AppliedAt.IsZero() {
			t.Errorf("after Migrate: %+v", m)
		}
	}
	if err := store.CheckSchema(ctx(t), db); err != nil {
		t.Errorf("CheckSchema after Migrate: %v", err)
	}
	if again, err := store.Migrate(ctx(t), db); err != nil || len(again) != 0 {
		t.Errorf("a second Migrate applied %v, %v; want nothing", again, err)
	}
	// The migrated schema works.
	if _, err := s.EnsureUser(ctx(t), "alice"); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRejectsMalformedURLs(t *testing.T) {
	for _, tc := range []struct{ dsn, want string }{
		{"postgres://bob:s3cret@localhost:notaport/db", "port"},
		{"mysql://bob:s3cret@localhost/db", "scheme"},
		{"postgres://bob:s3cret@localhost/db?sslmode=sometimes", "sslmode"},
		{"host=localhost password=s3cret oops", "connection string"},
		{"postgres://bob:s3cret@local host/db", "malformed"},
	} {
		_, err := store.Open(tc.dsn, store.Options{})
		switch {
		case err == nil:
			t.Errorf("Open(%q) succeeded", tc.dsn)
		case strings.Contains(err.Error(), "s3cret"):
			t.Errorf("Open(%q): the error repeats the password: %v", tc.dsn, err)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("Open(%q) = %v, want an error about %s", tc.dsn, err, tc.want)
		}
	}
}

func TestOpenWithoutServer(t *testing.T) {
	// Nothing listens on port 1: Open succeeds, operations are ErrUnavailable at once.
	for _, dsn := range []string{
		"postgres://bob:s3cret@127.0.0.1:1/db?sslmode=disable",
		"host=127.0.0.1 port=1 user=bob password=s3cret dbname=db sslmode=disable",
	} {
		s := openURL(t, dsn, store.Options{})
		start := time.Now()
		err := s.Ping(ctx(t))
		wantErr(t, "Ping without a server", err, store.ErrUnavailable)
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Ping's error repeats the password: %v", err)
		}
		_, err = s.EnsureUser(ctx(t), "x")
		wantErr(t, "EnsureUser without a server", err, store.ErrUnavailable)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("failing took %v", d)
		}
	}
}

func TestPing(t *testing.T) {
	if err := open(t).Ping(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

// TestTimeouts: the store's own deadline is ErrUnavailable; the caller's cancellation
// is context.Canceled and not ErrUnavailable.
func TestTimeouts(t *testing.T) {
	url := pgtest.Database(t)
	s := openURL(t, url, store.Options{QueryTimeout: 300 * time.Millisecond})
	u := user(t, s, "alice")
	c := conversation(t, s, u.ID)

	// Another session holds the conversation's row lock: BeginTurn waits for it.
	lock, err := s.DB().BeginTx(ctx(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx(t), `SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE`, c.ID); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	_, err = s.BeginTurn(ctx(t), u.ID, c.ID, userTurn("hi"))
	wantErr(t, "BeginTurn past the query timeout", err, store.ErrUnavailable)
	if !store.IsUnavailable(err) {
		t.Errorf("IsUnavailable(%v) = false", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the 300ms query timeout took %v", d)
	}

	cctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(100*time.Millisecond, cancel)
	defer timer.Stop()
	_, err = s.BeginTurn(cctx, u.ID, c.ID, userTurn("hi"))
	wantErr(t, "BeginTurn cancelled by its caller", err, context.Canceled)
	if errors.Is(err, store.ErrUnavailable) || store.IsUnavailable(err) {
		t.Errorf("a cancellation is reported as an outage: %v", err)
	}

	dctx, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err = s.BeginTurn(dctx, u.ID, c.ID, userTurn("hi"))
	wantErr(t, "BeginTurn past the caller's deadline", err, context.DeadlineExceeded)
	if errors.Is(err, store.ErrUnavailable) {
		t.Errorf("the caller's deadline is reported as an outage: %v", err)
	}

	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	// Nothing of the failed turns was stored, and the store works on.
	msgs, err := s.ListMessages(ctx(t), u.ID, c.ID)
	if err != nil || len(msgs) != 0 {
		t.Fatalf("after failed turns: %d messages, %v", len(msgs), err)
	}
	turn(t, s, u.ID, c.ID, userTurn("hi"))
}
