package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugin-sdk/sdktest"
)

// repoRoot is the repository root (two levels up from this package).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// fixtures returns the llama.cpp library directory and the demo model,
// failing with what to run when `task setup` / `task models:demo` have not.
func fixtures(t *testing.T) (lib, model string) {
	t.Helper()
	lib = os.Getenv("RAGWAY_LLAMA_LIB")
	if lib == "" {
		lib = filepath.Join(repoRoot(), ".data", "lib")
	}
	if _, err := os.Stat(filepath.Join(lib, "libllama.so")); err != nil {
		t.Fatalf("llama.cpp libraries not found in %s: run `task setup` (or set RAGWAY_LLAMA_LIB)", lib)
	}
	model = filepath.Join(repoRoot(), ".data", "models", "demo.gguf")
	if _, err := os.Stat(model); err != nil {
		t.Fatalf("demo model not found: run `task models:demo` (%v)", err)
	}
	return lib, model
}

// pluginBinary builds ragway-llamacpp once per test run.
func pluginBinary(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("RAGWAY_BIN_DIR"); d != "" {
		if p := filepath.Join(d, "ragway-llamacpp"); fileExists(p) {
			return p
		}
	}
	out := filepath.Join(t.TempDir(), "ragway-llamacpp")
	cmd := exec.Command("go", "build", "-o", out, ".")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	return out
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func TestConformance(t *testing.T) {
	lib, model := fixtures(t)
	sdktest.Run(t, sdktest.Config{
		Path:    pluginBinary(t),
		Options: map[string]any{"model_path": model, "lib_path": lib, "threads": 1, "parallel": 4, "context_length": 512},
		Messages: []sdk.Message{
			{Role: "system", Content: "You are a test."},
			{Role: "user", Content: "Write a long story about the sea and the ships that sail on it."},
		},
	})
}

func TestConformanceEmbedding(t *testing.T) {
	lib, model := fixtures(t)
	sdktest.Run(t, sdktest.Config{
		Path:      pluginBinary(t),
		Embedding: true,
		Options:   map[string]any{"model_path": model, "lib_path": lib, "threads": 1, "parallel": 2, "context_length": 256, "pooling": "mean"},
	})
}
