package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ragway/ragway/internal/pgtest"
)

// TestConfigFlagInEveryPosition runs the database commands with -c before the
// command, between the command and its subcommand (how `task run` calls migrate and
// keys create), and after both: each form reads the same config file.
func TestConfigFlagInEveryPosition(t *testing.T) {
	dbURL := pgtest.EmptyDatabase(t)
	cfg := writeConfig(t, dbURL)
	// Only the config file names the database.
	t.Setenv("RAGWAY_DATABASE_URL", "")
	os.Unsetenv("RAGWAY_DATABASE_URL")
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/wrong")

	mustRagway(t, "-c", cfg, "migrate", "up")
	for _, args := range [][]string{
		{"-c", cfg, "migrate", "status"},
		{"--c", cfg, "migrate", "status"},
		{"-c=" + cfg, "migrate", "status"},
		{"migrate", "-c", cfg, "status"},
		{"migrate", "--c=" + cfg, "status"},
		{"migrate", "status", "-c", cfg},
	} {
		out, _ := mustRagway(t, args...)
		if !regexp.MustCompile(`(?m)^1\s+00001_init\.sql\s+\d{4}-`).MatchString(out) {
			t.Fatalf("ragway %q:\n%s", args, out)
		}
	}
	for _, args := range [][]string{
		{"-c", cfg, "keys", "create", "--user", "a"},
		{"keys", "-c", cfg, "create", "--user", "b"},
		{"keys", "create", "-c", cfg, "--user", "c"},
		{"keys", "create", "--user", "d", "-c", cfg},
	} {
		if out, _ := mustRagway(t, args...); !keyLine.MatchString(out) {
			t.Fatalf("ragway %q printed %q, want a key", args, out)
		}
	}
	for _, args := range [][]string{
		{"-c", cfg, "keys", "list"},
		{"keys", "-c", cfg, "list"},
		{"keys", "list", "-c", cfg},
	} {
		out, _ := mustRagway(t, args...)
		for _, user := range []string{"a", "b", "c", "d"} {
			if !regexp.MustCompile(`(?m)^rgw_[a-z0-9]{8}\s+` + user + `\s`).MatchString(out) {
				t.Fatalf("ragway %q lacks user %s's key:\n%s", args, user, out)
			}
		}
	}
	// The last -c wins, as with any flag given twice.
	mustRagway(t, "-c", filepath.Join(t.TempDir(), "missing.yaml"), "keys", "list", "-c", cfg)
}

// TestTaskRunCommands runs the CLI commands of Taskfile.yml's run task as the task
// runs them, with `task run -- -c FILE`'s config file.
func TestTaskRunCommands(t *testing.T) {
	dbURL := pgtest.EmptyDatabase(t)
	cfg := writeConfig(t, dbURL)
	t.Setenv("RAGWAY_DATABASE_URL", "")
	os.Unsetenv("RAGWAY_DATABASE_URL")
	t.Setenv("DATABASE_URL", "")

	taskfile, err := os.ReadFile(filepath.Join("..", "..", "..", "Taskfile.yml"))
	if err != nil {
		t.Fatal(err)
	}
	run := taskBody(t, string(taskfile), "run")
	lines := regexp.MustCompile(`(?m)^\s*(?:\w+=\$\()?\./bin/ragway (migrate|keys) (.*?)\)?$`).FindAllStringSubmatch(run, -1)
	if len(lines) != 2 {
		t.Fatalf("the run task of Taskfile.yml has %d ragway migrate/keys commands, want 2:\n%s", len(lines), run)
	}
	for _, m := range lines {
		line := strings.ReplaceAll(m[1]+" "+m[2], "$cfg", "-c "+cfg)
		args := shellWords(t, line)
		stdout, stderr := mustRagway(t, args...)
		t.Logf("ragway %s:\n%s%s", line, stdout, stderr)
	}
}

// taskBody returns the text of task name in a Taskfile, up to the next task.
func taskBody(t *testing.T, taskfile, name string) string {
	t.Helper()
	start := strings.Index(taskfile, "\n  "+name+":\n")
	if start < 0 {
		t.Fatalf("Taskfile.yml has no task %s", name)
	}
	body := taskfile[start+1:]
	if next := regexp.MustCompile(`\n  [a-z][a-z:-]*:\n`).FindStringIndex(body[1:]); next != nil {
		body = body[:next[0]+1]
	}
	return body
}

// shellWords splits a command line of plain words and double-quoted strings without
// expansions, the way sh would.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	for _, m := range regexp.MustCompile(`"([^"$\x60\\]*)"|(\S+)`).FindAllStringSubmatch(line, -1) {
		if m[2] != "" && strings.ContainsAny(m[2], `"'$\`+"`") {
			t.Fatalf("shellWords: %q needs a shell", line)
		}
		words = append(words, m[1]+m[2])
	}
	return words
}

// TestGlobalFlagErrors checks the messages for flags that cannot go before a command
// or a subcommand.
func TestGlobalFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-c"}, "flag needs an argument: -c"},
		{[]string{"-c", "x.yaml"}, "missing command after -c FILE"},
		{[]string{"-log-level", "debug", "serve"}, "flag -log-level before the command: only -c FILE may come before it"},
		{[]string{"keys", "--user", "a", "create"}, "keys: flag --user before the subcommand: only -c FILE may come before it"},
		{[]string{"-c", "x.yaml", "ingest", "--kb", "k", "."}, "ingest takes no config file: -c FILE is for serve, migrate, keys, users, reindex"},
		{[]string{"migrate", "-c", "x.yaml"}, "migrate: missing subcommand (up, status)"},
	} {
		stdout, stderr, err := ragway(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ragway %q: error %v, want it to contain %q", tt.args, err, tt.want)
		}
		if stdout != "" || !strings.Contains(stderr, "Usage:") {
			t.Errorf("ragway %q: stdout %q, stderr %q; want the usage on stderr", tt.args, stdout, stderr)
		}
	}
	// Help works wherever -h is.
	for _, args := range [][]string{{"-h"}, {"-c", "x.yaml", "help"}, {"-c", "x.yaml", "--help"}} {
		if out, _, err := ragway(t, args...); err != nil || !strings.Contains(out, "ragway migrate up") {
			t.Errorf("ragway %q: %v\n%s", args, err, out)
		}
	}
}
