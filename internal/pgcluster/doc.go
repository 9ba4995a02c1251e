// Package pgcluster runs a project-local PostgreSQL server from the Debian server
// packages: initdb into a directory, start and stop it on its own port, and hand out
// the DATABASE_URL it serves. `task db:up` / `task db:down` (through cmd/pgcluster) and
// the tests (through internal/pgtest) share it.
//
// The cluster listens on 127.0.0.1 only (no Unix socket), its superuser is "ragway"
// with a random password kept in the data directory, and it is created and run as the
// "postgres" system user when the caller is root (PostgreSQL refuses to run as root).
package pgcluster
