package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/ragway/ragway/db/migrations"
)

// MigrationState is one migration's state in a database.
type MigrationState struct {
	Version   int64
	Name      string // file name
	Applied   bool
	AppliedAt time.Time
}

func migrator(db *sql.DB) (*goose.Provider, error) {
	// A session lock (pg_advisory_lock) lets several gateways or test processes
	// migrate one database at once: one applies, the others wait and find nothing to do.
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithSessionLocker(locker), goose.WithDisableGlobalRegistry(true))
}

// reader is a migrator that only reads (the schema check): it takes no lock, so that
// gateways starting together do not wait for each other's checks (goose's session
// lock is retried every 5 s).
func reader(db *sql.DB) (*goose.Provider, error) {
	return goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithDisableGlobalRegistry(true))
}

// Migrate applies every pending migration and returns the files applied.
func Migrate(ctx context.Context, db *sql.DB) ([]string, error) {
	p, err := migrator(db)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	res, err := p.Up(ctx)
	var applied []string
	for _, r := range res {
		applied = append(applied, r.Source.Path)
	}
	if err != nil {
		return applied, fmt.Errorf("migrate: %w", classify(err))
	}
	return applied, nil
}

// MigrationStatus returns every known migration with whether db has it.
func MigrationStatus(ctx context.Context, db *sql.DB) ([]MigrationState, error) {
	p, err := migrator(db)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", classify(err))
	}
	out := make([]MigrationState, 0, len(st))
	for _, s := range st {
		out = append(out, MigrationState{
			Version:   s.Source.Version,
			Name:      s.Source.Path,
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// CheckSchema returns an error naming the missing migrations when db lacks any (the
// gateway refuses to serve a schema older than its own), or naming the versions when
// db has migrations this build does not know (a newer ragway migrated it: this one
// would call what that one changed).
func CheckSchema(ctx context.Context, db *sql.DB) error {
	p, err := reader(db)
	if err != nil {
		return fmt.Errorf("check the schema: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("check the schema: %w", classify(err))
	}
	var missing []string
	var latest int64
	for _, s := range st {
		latest = max(latest, s.Source.Version)
		if s.State != goose.StateApplied {
			missing = append(missing, s.Source.Path)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: the database lacks migrations %v: run `ragway migrate up`", ErrSchema, missing)
	}
	v, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("check the schema: %w", classify(err))
	}
	if v > latest {
		return fmt.Errorf("%w: the database is at version %d, newer than this ragway's migrations (up to %d): run the ragway that migrated it, or a later one", ErrSchema, v, latest)
	}
	return nil
}
