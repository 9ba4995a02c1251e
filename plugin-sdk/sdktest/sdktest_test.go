package sdktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

const helperEnv = "RAGWAY_SDKTEST_HELPER"

// Plugin binaries built once by TestMain.
var (
	binDir     string
	echoPath   string
	brokenPath string
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(helperEnv); dir != "" {
		binDir, echoPath, brokenPath = dir, filepath.Join(dir, "ragway-echo"), filepath.Join(dir, "brokenplugin")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "sdktest-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, echoPath, brokenPath = dir, filepath.Join(dir, "ragway-echo"), filepath.Join(dir, "brokenplugin")
	for _, b := range []struct{ out, pkg string }{
		{echoPath, "../examples/echo"},
		{brokenPath, "./internal/testdata/brokenplugin"},
	} {
		if out, err := exec.Command("go", "build", "-o", b.out, b.pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b.pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// broken returns the path of brokenplugin with the given defect.
func broken(t *testing.T, defect string) string {
	t.Helper()
	if defect == "" {
		return brokenPath
	}
	link := filepath.Join(t.TempDir(), "brokenplugin-"+defect)
	if err := os.Symlink(brokenPath, link); err != nil {
		t.Fatal(err)
	}
	return link
}

var slow = map[string]any{"delay_ms": 2}

func TestRunEcho(t *testing.T) {
	Run(t, Config{Path: echoPath, Options: slow})
}

func TestRunConformingPlugin(t *testing.T) {
	Run(t, Config{Path: brokenPath, Options: slow})
}

func TestRunEmbedding(t *testing.T) {
	Run(t, Config{
		Path:      brokenPath,
		Embedding: true,
		InvalidOptions: []map[string]any{
			{"delay_ms": "soon"},
			{"delay_ms": 1, "n_gpu_layers": 99},
		},
	})
}

// runCheck runs one check directly with a fresh harness.
func runCheck(t *testing.T, c func(context.Context, *harness) error, cfg Config, prompt time.Duration) error {
	t.Helper()
	h := newHarness(cfg.withDefaults(), t.Cleanup)
	if prompt > 0 {
		h.prompt = prompt
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c(ctx, h)
}

// Each defect of brokenplugin must make its check fail. TestRunConformingPlugin
// is the control: without a defect every check passes.
func TestChecksCatchDefects(t *testing.T) {
	tests := []struct {
		defect    string
		check     func(context.Context, *harness) error
		embedding bool
		want      string
	}{
		{"usage", checkEventOrder, false, "Usage.CompletionTokens"},
		{"no_prompt_tokens", checkEventOrder, false, "Usage.PromptTokens = 0"},
		{"ignore_stop", checkStopSequence, false, "want \""},
		{"ignore_max_tokens", checkMaxTokens, false, "with max_tokens 3"},
		{"random", checkGreedy, false, "two greedy generations differ"},
		{"accept_any_option", checkLoadErrors, false, "load accepted invalid option set 0"},
		{"generate_unloaded", checkGenerateBeforeLoad, false, "want sdk.ErrModelNotLoaded"},
		{"hold_slot", checkCancellation, false, "must free their slots"},
		{"bad_api_version", checkInfo, false, "api_version 0.1.0 is incompatible"},
		{"no_capabilities", checkInfo, false, "no capabilities"},
		{"shared_state", checkConcurrency, false, "differs from the solo one"},
		{"embed_zero", checkEmbeddings, true, "all zeros"},
		{"embed_dims", checkEmbeddings, true, "dimensions"},
		{"embed_random", checkEmbeddings, true, "differs between two identical requests"},
		{"embed_constant", checkEmbeddings, true, "identical embeddings"},
		{"nul_crash", checkHostileInputs, false, "the plugin process died on Generate with a prompt of a trailing NUL"},
		{"nul_crash", checkHostileInputs, true, "the plugin process died on Embed of an input of a trailing NUL"},
		{"tokenize_miscount", checkTokenize, false, "want > 0"},
		{"ignore_truncate", checkTokenize, true, "with Truncate"},
		{"no_input_limit", checkTokenize, true, "without Truncate"},
	}
	for _, tt := range tests {
		t.Run(tt.defect, func(t *testing.T) {
			err := runCheck(t, tt.check, Config{Path: broken(t, tt.defect), Options: slow, Embedding: tt.embedding}, time.Second)
			var skip skipError
			if err == nil || errors.As(err, &skip) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("check against defect %s = %v, want a failure containing %q", tt.defect, err, tt.want)
			}
		})
	}
}

func TestChecksSkipOrRefuseWhatTheyCannotTest(t *testing.T) {
	short := []sdk.Message{{Role: "user", Content: "hi there"}}
	one := []sdk.Message{{Role: "user", Content: "hi"}}
	// echo answers an empty message with just the final event, so the
	// generation is over before it can be interrupted.
	none := []sdk.Message{{Role: "user", Content: ""}}
	tests := []struct {
		name  string
		check func(context.Context, *harness) error
		cfg   Config
		skip  bool
		want  error
	}{
		{"max tokens on a short output", checkMaxTokens, Config{Path: echoPath, Messages: short}, true, nil},
		{"stop on a one-token output", checkStopSequence, Config{Path: echoPath, Messages: one}, true, nil},
		{"generation check on an embedding model", checkEventOrder, Config{Path: brokenPath, Embedding: true}, true, nil},
		{"embeddings not configured", checkEmbeddings, Config{Path: brokenPath}, true, nil},
		{"cancellation of a generation too fast to cancel", checkCancellation, Config{Path: echoPath, Messages: none}, false, errFinishedEarly},
		{"crash during a generation too fast to kill", checkCrash, Config{Path: echoPath, Messages: none}, false, errFinishedEarly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runCheck(t, tt.check, tt.cfg, 0)
			var skip skipError
			switch {
			case tt.skip && !errors.As(err, &skip):
				t.Errorf("got %v, want a skip", err)
			case !tt.skip && !errors.Is(err, tt.want):
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckEvents(t *testing.T) {
	usage := func(p, c int) *sdk.Usage { return &sdk.Usage{PromptTokens: p, CompletionTokens: c} }
	tests := []struct {
		name   string
		events []sdk.Event
		want   string // "" means valid
	}{
		{"deltas then final", []sdk.Event{{Text: "a", Tokens: 1}, {Text: " b", Tokens: 2}, {FinishReason: sdk.FinishStop, Usage: usage(4, 3)}}, ""},
		{"final carries text", []sdk.Event{{Text: "a", Tokens: 1, FinishReason: sdk.FinishLength, Usage: usage(1, 1)}}, ""},
		{"empty deltas", []sdk.Event{{}, {Text: "a", Tokens: 1}, {FinishReason: sdk.FinishStop, Usage: usage(1, 1)}}, ""},
		{"no events", nil, "no events"},
		{"no final", []sdk.Event{{Text: "a", Tokens: 1}}, "no FinishReason"},
		{"final not last", []sdk.Event{{FinishReason: sdk.FinishStop, Usage: usage(1, 0)}, {Text: "late", Tokens: 1}}, "must be the last"},
		{"the prompt's usage early", []sdk.Event{{Text: "a", Tokens: 1, Usage: usage(4, 0)}, {Text: "b", Tokens: 1}, {FinishReason: sdk.FinishStop, Usage: usage(4, 2)}}, ""},
		{"completion usage on a delta", []sdk.Event{{Text: "a", Tokens: 1, Usage: usage(1, 1)}, {FinishReason: sdk.FinishStop, Usage: usage(1, 1)}}, "CompletionTokens 1"},
		{"usage on two deltas", []sdk.Event{{Text: "a", Tokens: 1, Usage: usage(1, 0)}, {Text: "b", Tokens: 1, Usage: usage(1, 0)}, {FinishReason: sdk.FinishStop, Usage: usage(1, 2)}}, "carries Usage again"},
		{"early usage not the final's", []sdk.Event{{Text: "a", Tokens: 1, Usage: usage(3, 0)}, {FinishReason: sdk.FinishStop, Usage: usage(4, 1)}}, "differs from the final's"},
		{"no usage", []sdk.Event{{FinishReason: sdk.FinishStop}}, "no Usage"},
		{"no prompt tokens", []sdk.Event{{FinishReason: sdk.FinishStop, Usage: usage(0, 0)}}, "PromptTokens = 0"},
		{"completion tokens too high", []sdk.Event{{Text: "a", Tokens: 1}, {FinishReason: sdk.FinishStop, Usage: usage(1, 2)}}, "add up to 1"},
		{"completion tokens too low", []sdk.Event{{Text: "a", Tokens: 3}, {FinishReason: sdk.FinishStop, Usage: usage(1, 2)}}, "add up to 3"},
		{"negative tokens", []sdk.Event{{Text: "a", Tokens: -1}, {FinishReason: sdk.FinishStop, Usage: usage(1, -1)}}, "negative"},
		{"cached above prompt", []sdk.Event{{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 1, CachedTokens: 2}}}, "CachedTokens"},
		{"finish error", []sdk.Event{{FinishReason: sdk.FinishError, Error: "OOM", Usage: usage(1, 0)}}, "OOM"},
		{"finish cancelled", []sdk.Event{{FinishReason: sdk.FinishCancelled, Usage: usage(1, 0)}}, "FinishCancelled"},
		{"unknown finish", []sdk.Event{{FinishReason: "eos", Usage: usage(1, 0)}}, `unknown FinishReason "eos"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkEvents(tt.events)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("checkEvents = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestChangedKeys(t *testing.T) {
	valid := map[string]any{"a": 1, "b": []any{"x"}}
	tests := []struct {
		name string
		opts map[string]any
		want string
	}{
		{"added", map[string]any{"a": 1, "b": []any{"x"}, "z": 1, "c": 2}, "c z"},
		{"changed", map[string]any{"a": "one", "b": []any{"x"}}, "a"},
		{"removed only", map[string]any{"a": 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(changedKeys(tt.opts, valid), " "); got != tt.want {
				t.Errorf("changedKeys = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	cfg := Config{Options: map[string]any{"delay_ms": 2}}.withDefaults()
	if cfg.Timeout != 60*time.Second || len(cfg.Messages) != 1 || len(strings.Fields(cfg.Messages[0].Content)) < 35 {
		t.Errorf("defaults: %+v", cfg)
	}
	if len(cfg.InvalidOptions) != 1 || cfg.InvalidOptions[0]["definitely_not_an_option"] != 1 || cfg.InvalidOptions[0]["delay_ms"] != 2 {
		t.Errorf("default InvalidOptions = %v, want Options plus definitely_not_an_option", cfg.InvalidOptions)
	}
	if _, ok := cfg.Options["definitely_not_an_option"]; ok {
		t.Error("withDefaults changed Config.Options")
	}
}

// TestHelperRunBroken is not a test: TestRunReportsFailures runs the test
// binary with it to watch Run fail.
func TestHelperRunBroken(t *testing.T) {
	path := os.Getenv(helperEnv + "_PLUGIN")
	if path == "" {
		t.Skip("helper for TestRunReportsFailures")
	}
	Run(t, Config{Path: path, Options: slow})
}

func TestRunReportsFailures(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperRunBroken$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"="+binDir, helperEnv+"_PLUGIN="+broken(t, "usage"))
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("Run against a broken plugin: %v, want a failing test\n%s", err, out)
	}
	for _, want := range []string{
		"--- PASS: TestHelperRunBroken/Handshake",
		"--- PASS: TestHelperRunBroken/Info",
		"--- FAIL: TestHelperRunBroken/EventOrder",
		"Usage.CompletionTokens",
		"--- SKIP: TestHelperRunBroken/Embeddings",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
