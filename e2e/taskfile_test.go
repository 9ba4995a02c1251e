package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// taskfile is the part of Taskfile.yml these tests read.
type taskfile struct {
	Tasks map[string]struct {
		Deps []any `yaml:"deps"`
		Cmds []any `yaml:"cmds"`
	} `yaml:"tasks"`
}

// readTaskfile parses the repository's Taskfile.yml.
func readTaskfile(t *testing.T) taskfile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "Taskfile.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var tf taskfile
	if err := yaml.Unmarshal(b, &tf); err != nil {
		t.Fatalf("Taskfile.yml: %v", err)
	}
	return tf
}

// TestRunAndTestInstallWhatTheREADMESays: the README says both of its commands
// install the PostgreSQL server packages and llama.cpp's libraries.
func TestRunAndTestInstallWhatTheREADMESays(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const claim = "Both install what the machine lacks (the PostgreSQL server packages, llama.cpp's libraries)"
	if !strings.Contains(string(readme), claim) {
		t.Fatalf("README.md no longer says %q: update this test with it", claim)
	}
	tf := readTaskfile(t)
	for _, task := range []string{"run", "test"} {
		for _, dep := range []string{"setup:postgres", "setup:llamacpp"} {
			if !slices.Contains(tf.Tasks[task].Deps, any(dep)) {
				t.Errorf("task %s does not depend on %s (its deps: %v), but the README says it installs what that does", task, dep, tf.Tasks[task].Deps)
			}
		}
	}
}

// TestTestTaskRunsBothModules runs the test task's `go test` commands as task does
// (in order, stopping at the first that fails) with a `go` that fails in one
// module: the other module's tests must still run, and the task must fail.
func TestTestTaskRunsBothModules(t *testing.T) {
	var cmds []string
	for _, c := range readTaskfile(t).Tasks["test"].Cmds {
		if s, ok := c.(string); ok && strings.Contains(s, "go test") && strings.Contains(s, "./...") {
			cmds = append(cmds, s)
		}
	}
	if len(cmds) == 0 {
		t.Fatal("the test task of Taskfile.yml runs no go test ./...")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// A fake go: it records the module it tests (the directory it runs in) and
	// fails there when that is $FAIL_IN.
	bin := t.TempDir()
	fake := "#!/bin/sh\necho \"$PWD\" >>\"$GO_LOG\"\n[ \"$PWD\" != \"$FAIL_IN\" ]\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	vars := regexp.MustCompile(`\{\{\.([A-Z_]+)\}\}`)
	for _, failIn := range []string{root, filepath.Join(root, "plugin-sdk")} {
		log := filepath.Join(t.TempDir(), "go.log")
		var failed error
		for _, c := range cmds {
			script := vars.ReplaceAllStringFunc(c, func(v string) string {
				if v == "{{.TEST_TIMEOUT}}" {
					return "1m"
				}
				return "" // CLI_ARGS
			})
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = root
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "GO_LOG="+log, "FAIL_IN="+failIn)
			if out, err := cmd.CombinedOutput(); err != nil {
				failed = errors.Join(err, errors.New(string(out)))
				break // task stops at the first failing command
			}
		}
		ran, _ := os.ReadFile(log)
		if failed == nil {
			t.Errorf("with the tests of %s failing, the commands succeeded", failIn)
		}
		for _, module := range []string{root, filepath.Join(root, "plugin-sdk")} {
			if !slices.Contains(strings.Fields(string(ran)), module) {
				t.Errorf("with the tests of %s failing, those of %s did not run (ran: %q)", failIn, module, ran)
			}
		}
	}
}

// TestClusterTaskRunsTheScript: `task cluster` is deploy/cluster.sh (which
// TestClusterScript runs) after migrating and making a key, and the test task installs
// the balancer that test needs.
func TestClusterTaskRunsTheScript(t *testing.T) {
	tf := readTaskfile(t)
	cluster := tf.Tasks["cluster"]
	if len(cluster.Cmds) != 1 || !strings.Contains(fmt.Sprint(cluster.Cmds[0]), "exec deploy/cluster.sh {{.CLI_ARGS}}") {
		t.Fatalf("task cluster's commands %v do not end in the script", cluster.Cmds)
	}
	for _, task := range []string{"cluster", "test"} {
		if !slices.Contains(tf.Tasks[task].Deps, any("setup:haproxy")) {
			t.Errorf("task %s does not depend on setup:haproxy (its deps: %v)", task, tf.Tasks[task].Deps)
		}
	}
}
