package pgtest

import (
	"context"
	"database/sql"
	"testing"
)

func TestDatabaseIsMigratedAndPrivate(t *testing.T) {
	a, b := Database(t), Database(t)
	if a == b {
		t.Fatal("two calls returned the same database")
	}
	db, err := sql.Open("postgres", a)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT count(*) FROM users`).Scan(&n); err != nil {
		t.Fatalf("the users table of a fresh database: %v", err)
	}
	if n != 0 {
		t.Fatalf("a fresh database has %d users", n)
	}
}
