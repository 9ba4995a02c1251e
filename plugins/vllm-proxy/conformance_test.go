package main

import (
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/plugin-sdk/sdktest"
)

var (
	buildOnce sync.Once
	buildDir  string
	built     string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// pluginBinary returns $RAGWAY_BIN_DIR/ragway-vllm-proxy (what `task build`
// wrote), or builds the plugin once per test run.
func pluginBinary(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("RAGWAY_BIN_DIR"); d != "" {
		if p := filepath.Join(d, "ragway-vllm-proxy"); fileExists(p) {
			return p
		}
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "ragway-vllm-proxy-test-")
		if buildErr != nil {
			return
		}
		built = filepath.Join(buildDir, "ragway-vllm-proxy")
		if b, err := exec.Command("go", "build", "-o", built, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, b)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return built
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// conformanceUpstreams starts two fake vLLM servers that want key and
// returns the options that load them.
func conformanceUpstreams(t *testing.T, key string) map[string]any {
	t.Helper()
	t.Setenv("RAGWAY_TEST_VLLM_KEY", key)
	var urls []any
	for range 2 {
		s := httptest.NewServer(&fakeOpenAI{model: "fake-model", key: key, delay: 5 * time.Millisecond, dims: 32})
		t.Cleanup(s.Close)
		urls = append(urls, s.URL+"/v1")
	}
	return map[string]any{
		"upstreams":       urls,
		"upstream_model":  "fake-model",
		"api_key_env":     "RAGWAY_TEST_VLLM_KEY",
		"timeout":         "10s",
		"health_interval": 0.05,
	}
}

// invalid returns opts with the given changes.
func invalid(opts map[string]any, k string, v any) map[string]any {
	m := map[string]any{}
	for x, y := range opts {
		m[x] = y
	}
	m[k] = v
	return m
}

func TestConformance(t *testing.T) {
	opts := conformanceUpstreams(t, "sk-conformance-1234")
	sdktest.Run(t, sdktest.Config{
		Path:    pluginBinary(t),
		Options: opts,
		InvalidOptions: []map[string]any{
			invalid(opts, "definitely_not_an_option", 1),
			invalid(opts, "upstreams", []any{"ftp://x"}),
			invalid(opts, "timeout", "soon"),
			invalid(opts, "api_key_env", "RAGWAY_TEST_VLLM_KEY_UNSET"),
			invalid(opts, "upstream_model", "not-served"),
		},
		Timeout: 30 * time.Second,
	})
}

func TestConformanceEmbedding(t *testing.T) {
	sdktest.Run(t, sdktest.Config{
		Path:      pluginBinary(t),
		Embedding: true,
		Options:   conformanceUpstreams(t, "sk-conformance-5678"),
		Timeout:   30 * time.Second,
	})
}
