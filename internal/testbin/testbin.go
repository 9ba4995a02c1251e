package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once sync.Once
	dir  string
	err  error
)

// Dir returns a directory holding ragway and ragway-echo.
func Dir(tb testing.TB) string {
	tb.Helper()
	once.Do(func() {
		if d := os.Getenv("RAGWAY_BIN_DIR"); d != "" {
			if _, e := os.Stat(filepath.Join(d, "ragway-vllm-proxy")); e == nil {
				dir = d
				return
			}
		}
		dir, err = os.MkdirTemp("", "ragway-testbin-")
		if err != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		for _, b := range []struct{ out, pkg, wd string }{
			{"ragway", "./gateway/cmd/ragway", root},
			{"ragway-echo", "./examples/echo", filepath.Join(root, "plugin-sdk")},
			{"ragway-llamacpp", "./plugins/llamacpp", root},
			{"ragway-vllm-proxy", "./plugins/vllm-proxy", root},
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(dir, b.out), b.pkg)
			cmd.Dir = b.wd
			if out, e := cmd.CombinedOutput(); e != nil {
				err = &buildError{pkg: b.pkg, out: string(out), err: e}
				return
			}
		}
	})
	if err != nil {
		tb.Fatalf("testbin: %v", err)
	}
	return dir
}

// Echo returns the path of ragway-echo.
func Echo(tb testing.TB) string { return filepath.Join(Dir(tb), "ragway-echo") }

// Root returns the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Ragway returns the path of the ragway binary.
func Ragway(tb testing.TB) string { return filepath.Join(Dir(tb), "ragway") }

type buildError struct {
	pkg, out string
	err      error
}

func (e *buildError) Error() string { return "go build " + e.pkg + ": " + e.err.Error() + "\n" + e.out }
