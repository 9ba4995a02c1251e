package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/internal/pgcluster"
	"github.com/ragway/ragway/internal/pgtest"
)

// noDatabaseURL unsets every way of naming a database.
func noDatabaseURL(t *testing.T) {
	t.Helper()
	for _, k := range []string{"RAGWAY_DATABASE_URL", "DATABASE_URL", "RAGWAY_PG_PORT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// fakeCheckout makes a directory that looks like a ragway checkout (its go.mod) and
// returns it.
func fakeCheckout(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte("module github.com/ragway/ragway\n\ngo 1.26.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "gateway", "cmd"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestProjectClusterWithoutURL: with no database URL set anywhere, the database
// commands use the project-local cluster of the checkout they run in (its
// .data/pg, database "ragway", as task db:up and task run make it), and say what
// to do when there is none, or it does not run.
func TestProjectClusterWithoutURL(t *testing.T) {
	noDatabaseURL(t)
	readme := readmeCLILines(t) // before leaving the package's directory

	// Outside a checkout: the usual message, and why no cluster was looked for.
	t.Chdir(t.TempDir())
	_, _, err := ragway(t, "keys", "list")
	if err == nil || !strings.Contains(err.Error(), "no database configured") ||
		!strings.Contains(err.Error(), "not in a ragway checkout") {
		t.Fatalf("keys list outside a checkout: %v, want the no-database message saying there is no checkout", err)
	}

	// In a checkout whose cluster was never made: how to make it.
	root := fakeCheckout(t)
	t.Chdir(filepath.Join(root, "gateway", "cmd"))
	_, _, err = ragway(t, "migrate", "status")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, ".data", "pg")) ||
		!strings.Contains(err.Error(), "task db:up") {
		t.Fatalf("migrate status in a checkout without a cluster: %v, want a message naming the cluster and task db:up", err)
	}

	// With the cluster (here a private one where the checkout keeps it).
	c := pgtest.NewCluster(t)
	if err := os.MkdirAll(filepath.Join(root, ".data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(c.Dir, filepath.Join(root, ".data", "pg")); err != nil {
		t.Fatal(err)
	}
	admin, err := c.URL("postgres")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := pgcluster.CreateDatabase(ctx, admin, pgcluster.ProjectDatabase, ""); err != nil {
		t.Fatal(err)
	}
	// The README's database commands, as written (no URL exported).
	var prefix string
	for _, line := range readme {
		args := shellWords(t, strings.TrimPrefix(line, "bin/ragway "))
		if args[0] == "keys" && args[1] == "revoke" {
			args[2] = prefix // the README's example prefix: alice's key's
		}
		out, _ := mustRagway(t, args...)
		switch {
		case args[0] == "keys" && args[1] == "create":
			if !keyLine.MatchString(out) {
				t.Fatalf("%s printed %q", line, out)
			}
			prefix = out[:12]
		case args[0] == "keys" && args[1] == "list":
			if !strings.Contains(out, prefix+"  alice ") {
				t.Fatalf("%s:\n%s", line, out)
			}
		case args[0] == "keys" && args[1] == "revoke":
			if out != "revoked key "+prefix+" of user alice\n" {
				t.Fatalf("%s: %q", line, out)
			}
		}
	}

	// Stopped: how to start it.
	c.Stop()
	_, _, err = ragway(t, "keys", "list")
	if err == nil || !strings.Contains(err.Error(), "the project-local Postgres") ||
		!strings.Contains(err.Error(), "task db:up") || strings.Contains(err.Error(), mustPassword(t, c.Cluster)) {
		t.Fatalf("keys list with the cluster stopped: %v, want a message saying to start it (without the password)", err)
	}
}

// readmeCLILines returns the `bin/ragway` commands of README.md's database section
// (its sh block that runs migrate), without their comments, a bracketed optional
// part once without and once with it.
func readmeCLILines(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, block := range regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		if !strings.Contains(block[1], "bin/ragway migrate up") {
			continue
		}
		for _, l := range strings.Split(block[1], "\n") {
			if !strings.HasPrefix(l, "bin/ragway ") {
				continue
			}
			l, _, _ = strings.Cut(l, " #")
			l = strings.TrimSpace(l)
			if m := regexp.MustCompile(`^(.*?) ?\[(.*)\](.*)$`).FindStringSubmatch(l); m != nil {
				lines = append(lines, m[1]+m[3], m[1]+" "+m[2]+m[3])
				continue
			}
			lines = append(lines, l)
		}
	}
	if len(lines) < 4 {
		t.Fatalf("README.md's database section shows %d bin/ragway commands: %q", len(lines), lines)
	}
	return lines
}

func mustPassword(t *testing.T, c *pgcluster.Cluster) string {
	t.Helper()
	pw, err := c.Password()
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

// TestFindRoot: a binary in a checkout's bin/ finds the checkout wherever it runs;
// otherwise the working directory's checkout counts.
func TestFindRoot(t *testing.T) {
	root := fakeCheckout(t)
	other := fakeCheckout(t)
	elsewhere := t.TempDir()
	bin := filepath.Join(root, "bin", "ragway")
	for _, tt := range []struct {
		name, exe, wd, want string
	}{
		{"binary in bin/", bin, elsewhere, root},
		{"binary in bin/, run in another checkout", bin, filepath.Join(other, "gateway"), root},
		{"go run, in a subdirectory", filepath.Join(elsewhere, "exe", "ragway"), filepath.Join(other, "gateway", "cmd"), other},
		{"nowhere", filepath.Join(elsewhere, "exe", "ragway"), elsewhere, ""},
	} {
		got, ok := pgcluster.FindRoot(tt.exe, tt.wd)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s: FindRoot(%s, %s) = %q, %v; want %q", tt.name, tt.exe, tt.wd, got, ok, tt.want)
		}
	}
}
