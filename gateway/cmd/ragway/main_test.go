package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/internal/pgtest"
)

// ragway runs the CLI and returns its stdout, stderr and error.
func ragway(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = run(args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// mustRagway runs the CLI and fails the test if it fails.
func mustRagway(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	stdout, stderr, err := ragway(t, args...)
	if err != nil {
		t.Fatalf("ragway %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout, stderr)
	}
	return stdout, stderr
}

// useDatabase points the CLI at dbURL through RAGWAY_DATABASE_URL.
func useDatabase(t *testing.T, dbURL string) {
	t.Setenv("RAGWAY_DATABASE_URL", dbURL)
	t.Setenv("DATABASE_URL", "")
}

var keyLine = regexp.MustCompile(`^rgw_[a-z0-9]{8}_[A-Za-z0-9]{40}\n$`)

func TestUsage(t *testing.T) {
	out, _, err := ragway(t, "help")
	if err != nil || !strings.Contains(out, "ragway keys create --user NAME") || !strings.Contains(out, "ragway migrate status") {
		t.Fatalf("help: %v\n%s", err, out)
	}
	tests := []struct {
		name string
		args []string
		want string // in the error
	}{
		{"no command", nil, "missing command"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"migrate without subcommand", []string{"migrate"}, "migrate: missing subcommand (up, status)"},
		{"migrate unknown subcommand", []string{"migrate", "down"}, `unknown subcommand "down"`},
		{"keys without subcommand", []string{"keys"}, "keys: missing subcommand (create, list, revoke)"},
		{"keys unknown subcommand", []string{"keys", "delete"}, `unknown subcommand "delete"`},
		{"unknown flag", []string{"keys", "create", "--user", "a", "--colour", "red"}, "flag provided but not defined: -colour"},
		{"unknown flag of migrate", []string{"migrate", "up", "--force"}, "flag provided but not defined: -force"},
		{"extra argument", []string{"migrate", "up", "now"}, `unexpected argument "now"`},
		{"revoke without prefix", []string{"keys", "revoke"}, "missing argument"},
		{"revoke two prefixes", []string{"keys", "revoke", "rgw_aaaaaaaa", "rgw_bbbbbbbb"}, `unexpected argument "rgw_bbbbbbbb"`},
		{"revoke a malformed prefix", []string{"keys", "revoke", "rgw_ABC"}, "neither a key prefix"},
		{"create without user", []string{"keys", "create", "--scopes", "chat"}, "--user is required"},
		{"quota without user", []string{"users", "quota", "--daily", "5", "--user", "  "}, "users quota: --user is required"},
		{"password without user", []string{"users", "password", "--admin"}, "users password: --user is required"},
		{"bad scope", []string{"keys", "create", "--user", "a", "--scopes", "chat,root"}, `unknown scope "root" in --scopes (allowed: chat, ingest, admin)`},
		{"empty scopes", []string{"keys", "create", "--user", "a", "--scopes", ","}, "--scopes is empty"},
		{"negative limit", []string{"keys", "create", "--user", "a", "--rpm", "-1"}, "--rpm and --tpm must be 0"},
		{"bad limit", []string{"keys", "create", "--user", "a", "--tpm", "lots"}, `invalid value "lots" for flag -tpm`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := ragway(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ragway %q: error %v, want it to contain %q", tt.args, err, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if strings.Contains(tt.want, "flag") && !strings.Contains(stderr, "Usage: ragway") {
				t.Errorf("stderr %q, want the usage", stderr)
			}
		})
	}
	// -h prints the command's usage and succeeds.
	out, _, err = ragway(t, "keys", "create", "-h")
	if err != nil || !strings.Contains(out, "Usage: ragway keys create --user NAME") || !strings.Contains(out, "-if-none") {
		t.Fatalf("keys create -h: %v\n%s", err, out)
	}
}

func TestNoDatabaseConfigured(t *testing.T) {
	useDatabase(t, "")
	t.Chdir(t.TempDir()) // outside a checkout: no project-local cluster either
	for _, args := range [][]string{{"migrate", "up"}, {"keys", "list"}} {
		_, _, err := ragway(t, args...)
		if err == nil || !strings.Contains(err.Error(), "no database configured") || !strings.Contains(err.Error(), "task db:up") {
			t.Fatalf("ragway %q: %v, want the no-database message", args, err)
		}
	}
}

func TestUnreachableDatabase(t *testing.T) {
	useDatabase(t, "postgres://ragway:s3cret@127.0.0.1:1/none?sslmode=disable")
	for _, args := range [][]string{
		{"migrate", "up"}, {"migrate", "status"}, {"keys", "list"},
		{"keys", "create", "--user", "alice"}, {"keys", "revoke", "rgw_abcd1234"},
	} {
		stdout, _, err := ragway(t, args...)
		if err == nil {
			t.Fatalf("ragway %q succeeded", args)
		}
		msg := err.Error()
		if !strings.Contains(msg, "cannot reach the database at postgres://ragway:xxxxx@127.0.0.1:1/none") ||
			!strings.Contains(msg, "is it running? (task db:up)") {
			t.Fatalf("ragway %q: %v, want a message naming the database and how to start one", args, err)
		}
		if strings.Contains(msg, "s3cret") {
			t.Fatalf("the message shows the password: %v", err)
		}
		if stdout != "" {
			t.Fatalf("ragway %q printed %q", args, stdout)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:pw@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/db?sslmode=disable",
		"postgres://u@h/db?password=pw":             "postgres://u@h/db?password=xxxxx",
		"host=h user=u password=pw dbname=db":       "host=h user=u password=xxxxx dbname=db",
		"host=h password='p w' dbname=db":           "host=h password=xxxxx dbname=db",
		"postgres://u:p%zz@h/db":                    "(a URL that does not parse)",
		"postgres://h/db":                           "postgres://h/db",
	} {
		if got := store.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMigrate(t *testing.T) {
	dbURL := pgtest.EmptyDatabase(t)
	// Through a config file this time.
	cfg := filepath.Join(t.TempDir(), "ragway.yaml")
	if err := os.WriteFile(cfg, []byte("database_url: "+dbURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// (An empty RAGWAY_DATABASE_URL would set database_url to "": unset it.)
	t.Setenv("RAGWAY_DATABASE_URL", "")
	os.Unsetenv("RAGWAY_DATABASE_URL")
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/wrong") // the config file wins

	out, _ := mustRagway(t, "migrate", "status", "-c", cfg)
	if !regexp.MustCompile(`(?m)^VERSION\s+FILE\s+APPLIED AT$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^1\s+00001_init\.sql\s+pending$`).MatchString(out) {
		t.Fatalf("migrate status on an empty database:\n%s", out)
	}
	if regexp.MustCompile(`\d{4}-\d\d-\d\d`).MatchString(out) {
		t.Fatalf("an empty database shows an applied migration:\n%s", out)
	}

	out, _ = mustRagway(t, "migrate", "up", "--c", cfg)
	if !strings.Contains(out, "applied 00001_init.sql\n") || !regexp.MustCompile(`database is at version \d+\n$`).MatchString(out) {
		t.Fatalf("migrate up:\n%s", out)
	}
	out, _ = mustRagway(t, "migrate", "status", "-c", cfg)
	if strings.Contains(out, "pending") || !regexp.MustCompile(`(?m)^1\s+00001_init\.sql\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`).MatchString(out) {
		t.Fatalf("migrate status after up:\n%s", out)
	}
	out, _ = mustRagway(t, "migrate", "up", "-c", cfg)
	if !regexp.MustCompile(`^database is up to date \(version \d+\)\n$`).MatchString(out) {
		t.Fatalf("second migrate up:\n%s", out)
	}
}

func TestKeysNeedMigratedDatabase(t *testing.T) {
	useDatabase(t, pgtest.EmptyDatabase(t))
	_, _, err := ragway(t, "keys", "list")
	if !errors.Is(err, store.ErrSchema) || !strings.Contains(err.Error(), "ragway migrate up") {
		t.Fatalf("keys list on an empty database: %v, want a schema error telling to migrate", err)
	}
}

// createKey runs keys create and returns the key and the note.
func createKey(t *testing.T, args ...string) (key, note string) {
	t.Helper()
	out, note := mustRagway(t, append([]string{"keys", "create"}, args...)...)
	if !keyLine.MatchString(out) {
		t.Fatalf("keys create printed %q on stdout, want the key alone on one line", out)
	}
	return strings.TrimSuffix(out, "\n"), note
}

func TestKeys(t *testing.T) {
	dbURL := pgtest.Database(t)
	useDatabase(t, dbURL)

	out, note := mustRagway(t, "keys", "list")
	if out != "" || !strings.Contains(note, "no API keys") {
		t.Fatalf("keys list on a new database: %q, %q", out, note)
	}

	key, note := createKey(t, "--user", "alice", "--scopes", "chat, ingest,chat", "--name", "laptop", "--rpm", "60", "--tpm", "10000")
	prefix := key[:12]
	wantNote := "created key " + prefix + " for user alice with scopes chat,ingest and limits 60 rpm, 10000 tpm; it is shown only once\n"
	if note != wantNote {
		t.Fatalf("keys create note %q, want %q", note, wantNote)
	}
	if strings.Contains(note, key) {
		t.Fatal("the note repeats the key")
	}
	adminKey, note := createKey(t, "--scopes=admin", "--user=root")
	if !strings.Contains(note, "for user root with scopes admin; it is shown only once") {
		t.Fatalf("note %q", note)
	}
	defaultKey, note := createKey(t, "-user", "bob")
	if !strings.Contains(note, "for user bob with scopes chat;") {
		t.Fatalf("the default scopes: note %q", note)
	}

	// The keys work: the stored row has the key's hash, and the authenticator takes them.
	st, err := store.Open(dbURL, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := auth.New(st, auth.Options{})
	defer a.Wait()
	p, err := a.Authenticate(context.Background(), key)
	if err != nil {
		t.Fatalf("authenticate the new key: %v", err)
	}
	if p.UserName != "alice" || !p.Has("chat") || !p.Has("ingest") || p.Has("admin") || p.RPMLimit != 60 || p.TPMLimit != 10000 {
		t.Fatalf("principal %+v", p)
	}
	if p, err := a.Authenticate(context.Background(), adminKey); err != nil || !p.Has("admin") || p.UserName != "root" {
		t.Fatalf("admin key: %+v, %v", p, err)
	}

	a.Wait() // the keys' last use is recorded
	out, _ = mustRagway(t, "keys", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !regexp.MustCompile(`^PREFIX\s+USER\s+NAME\s+SCOPES\s+LIMITS\s+CREATED\s+LAST USED\s+REVOKED$`).MatchString(lines[0]) {
		t.Fatalf("keys list:\n%s", out)
	}
	aliceRow := regexp.MustCompile(`(?m)^` + prefix + `\s+alice\s+laptop\s+chat,ingest\s+60 rpm, 10000 tpm\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+-$`)
	if !aliceRow.MatchString(out) {
		t.Fatalf("keys list lacks alice's key:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^` + defaultKey[:12] + `\s+bob\s+-\s+chat\s+unlimited\s`).MatchString(out) {
		t.Fatalf("keys list lacks bob's key:\n%s", out)
	}
	if strings.Contains(out, key) || strings.Contains(out, adminKey[13:]) {
		t.Fatal("keys list shows a secret")
	}
	out, _ = mustRagway(t, "keys", "list", "--user", "bob")
	if strings.Count(out, "\n") != 2 || !strings.Contains(out, defaultKey[:12]) {
		t.Fatalf("keys list --user bob:\n%s", out)
	}

	// Revoke by prefix, flags after the argument.
	out, _ = mustRagway(t, "keys", "revoke", prefix, "-c", writeConfig(t, dbURL))
	if out != "revoked key "+prefix+" of user alice\n" {
		t.Fatalf("keys revoke: %q", out)
	}
	if _, err := a.Authenticate(context.Background(), key); !errors.Is(err, auth.ErrRevokedKey) {
		t.Fatalf("the revoked key: %v", err)
	}
	out, _ = mustRagway(t, "keys", "list", "--user", "alice")
	if !regexp.MustCompile(`(?m)^` + prefix + `\s.*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`).MatchString(out) {
		t.Fatalf("keys list after revoke does not show the revocation:\n%s", out)
	}
	out, _ = mustRagway(t, "keys", "revoke", prefix)
	if !strings.Contains(out, "was already revoked at") {
		t.Fatalf("revoking twice: %q", out)
	}
	// Revoke by the whole key.
	out, _ = mustRagway(t, "keys", "revoke", defaultKey)
	if out != "revoked key "+defaultKey[:12]+" of user bob\n" {
		t.Fatalf("keys revoke KEY: %q", out)
	}
	// Unknown prefix.
	_, _, err = ragway(t, "keys", "revoke", "rgw_zzzzzzzz")
	if err == nil || !strings.Contains(err.Error(), "no key with prefix rgw_zzzzzzzz") {
		t.Fatalf("revoke an unknown prefix: %v", err)
	}
}

func writeConfig(t *testing.T, dbURL string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "ragway.yaml")
	if err := os.WriteFile(cfg, []byte("database_url: "+dbURL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestKeysCreateIfNone(t *testing.T) {
	useDatabase(t, pgtest.Database(t))
	first, _ := createKey(t, "--user", "admin", "--scopes", "chat,ingest,admin", "--if-none")
	out, note := mustRagway(t, "keys", "create", "--user", "admin", "--scopes", "chat,ingest,admin", "--if-none")
	if out != "" {
		t.Fatalf("the second --if-none printed %q on stdout", out)
	}
	if !strings.Contains(note, "user admin already has an active key ("+first[:12]+")") {
		t.Fatalf("the second --if-none: note %q", note)
	}
	// Another user is not affected, and without --if-none a second key is made.
	createKey(t, "--user", "other", "--if-none")
	second, _ := createKey(t, "--user", "admin")
	if second == first {
		t.Fatal("the same key twice")
	}
	// Once every key of the user is revoked, --if-none makes one again.
	mustRagway(t, "keys", "revoke", first[:12])
	mustRagway(t, "keys", "revoke", second[:12])
	createKey(t, "--user", "admin", "--if-none")
}

func TestKeysBadScopeStoresNothing(t *testing.T) {
	useDatabase(t, pgtest.Database(t))
	_, _, err := ragway(t, "keys", "create", "--user", "mallory", "--scopes", "chat,superuser")
	if err == nil || !strings.Contains(err.Error(), `unknown scope "superuser"`) || !strings.Contains(err.Error(), "chat, ingest, admin") {
		t.Fatalf("bad scope: %v", err)
	}
	out, note := mustRagway(t, "keys", "list")
	if out != "" || !strings.Contains(note, "no API keys") {
		t.Fatalf("a key was stored: %q %q", out, note)
	}
}
