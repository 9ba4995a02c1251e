package store_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/ragway/ragway/db/migrations"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

// Every migration's Down undoes its Up: from the latest version down to empty and
// up again, and the schema works; a schema newer than the build's is refused.
func TestMigrationsDownAndUpAgain(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := sql.Open("postgres", pgtest.EmptyDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatal(err)
	}
	up, err := p.Up(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One at a time, so that a failing Down is named.
	for v := len(up) - 1; v >= 0; v-- {
		if _, err := p.DownTo(ctx, int64(v)); err != nil {
			t.Fatalf("down to version %d: %v", v, err)
		}
	}
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'goose_db_version'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("%d tables left after migrating down to version 0", tables)
	}
	if again, err := p.Up(ctx); err != nil || len(again) != len(up) {
		t.Fatalf("up again: %d of %d migrations, %v", len(again), len(up), err)
	}
	if err := store.CheckSchema(ctx, db); err != nil {
		t.Fatal(err)
	}
	// A newer ragway's migration: this one refuses the schema.
	if _, err := db.ExecContext(ctx, `INSERT INTO goose_db_version (version_id, is_applied) VALUES (99999, true)`); err != nil {
		t.Fatal(err)
	}
	err = store.CheckSchema(ctx, db)
	if !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), "version 99999") {
		t.Errorf("CheckSchema of a database a newer ragway migrated: %v, want ErrSchema naming version 99999", err)
	}
}
