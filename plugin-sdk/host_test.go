package sdk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run the echo example as a real plugin subprocess.

const (
	helperEnv       = "RAGWAY_SDK_TEST_HELPER_HOST"
	helperEchoEnv   = "RAGWAY_SDK_TEST_ECHO"
	helperPluginEnv = "RAGWAY_SDK_TEST_HELPER_PLUGIN"
)

// servePluginHelper makes the test binary a plugin (go-plugin's
// helperProcess pattern), for behaviour echo does not have.
func servePluginHelper() {
	Serve(&fakeBackend{load: func(_ context.Context, r LoadRequest) (ModelInfo, error) {
		// A logger made after Serve replaced os.Stderr.
		Logger().Warn("loaded lazily", "model", r.Model)
		return ModelInfo{}, nil
	}})
}

// echoPath is the echo example, built once by TestMain.
var echoPath string

func TestMain(m *testing.M) {
	if os.Getenv(helperPluginEnv) != "" {
		servePluginHelper()
		return
	}
	if os.Getenv(helperEnv) != "" {
		// Re-run as a host process by TestOrphanPluginDiesWithHost.
		echoPath = os.Getenv(helperEchoEnv)
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "ragway-sdk-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	echoPath = filepath.Join(dir, "ragway-echo")
	if out, err := exec.Command("go", "build", "-o", echoPath, "./examples/echo").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build examples/echo: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// A prompt long enough to be interrupted when echo has a delay_ms.
var longText = strings.TrimSpace(strings.Repeat("the quick brown fox jumps over the lazy dog ", 10))

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// launch starts a plugin with a quiet logger and closes it at the end of the
// test.
func launch(t *testing.T, cfg LaunchConfig) *Plugin {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Launch(ctx, cfg)
	if err != nil {
		t.Fatalf("Launch: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Close(ctx)
	})
	return p
}

// launchEcho starts echo and loads it with opts.
func launchEcho(t *testing.T, opts map[string]any) *Plugin {
	t.Helper()
	p := launch(t, LaunchConfig{Path: echoPath})
	if _, err := p.Load(context.Background(), LoadRequest{Model: "echo", Options: opts}); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return p
}

func userMessage(s string) GenerateRequest {
	return GenerateRequest{Messages: []Message{{Role: "user", Content: s}}}
}

// startGenerate runs a generation in the background; first is closed at
// its first event.
func startGenerate(ctx context.Context, p *Plugin, req GenerateRequest) (first <-chan struct{}, result <-chan error) {
	f := make(chan struct{})
	res := make(chan error, 1)
	var once sync.Once
	go func() {
		res <- p.Generate(ctx, req, func(Event) error { once.Do(func() { close(f) }); return nil })
	}()
	return f, res
}

func waitFirst(t *testing.T, first <-chan struct{}, result <-chan error) {
	t.Helper()
	select {
	case <-first:
	case err := <-result:
		t.Fatalf("generation ended before its first event: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no first event in 10s")
	}
}

func waitResult(t *testing.T, result <-chan error) error {
	t.Helper()
	select {
	case err := <-result:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Generate did not return in 10s")
		return nil
	}
}

func waitDone(t *testing.T, p *Plugin) {
	t.Helper()
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed 10s after the process was killed")
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEchoEndToEnd(t *testing.T) {
	p := launch(t, LaunchConfig{Path: echoPath})
	ctx := context.Background()
	if p.Pid() <= 0 || p.Exited() || p.ExitError() != nil {
		t.Fatalf("after Launch: pid %d exited %v exitErr %v", p.Pid(), p.Exited(), p.ExitError())
	}
	info, err := p.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "echo" || info.APIVersion != APIVersion || !info.Has(CapabilityChat) || !info.Has(CapabilityCompletion) {
		t.Errorf("Info = %+v", info)
	}
	mi, err := p.Load(ctx, LoadRequest{Model: "echo", Options: map[string]any{"parallel": 2}})
	if err != nil {
		t.Fatal(err)
	}
	if mi.ContextLength <= 0 || !mi.HasChatTemplate {
		t.Errorf("ModelInfo = %+v", mi)
	}
	if info, _ := p.Info(ctx); info.MaxParallel != 2 {
		t.Errorf("Info.MaxParallel after Load = %d, want 2", info.MaxParallel)
	}
	if h, err := p.Health(ctx); err != nil || !h.OK || h.Slots != 2 || h.Running != 0 {
		t.Errorf("Health = %+v, %v", h, err)
	}
	if _, err := p.Embed(ctx, EmbedRequest{Input: []string{"x"}}); !IsUnsupported(err) {
		t.Errorf("Embed = %v, want ErrUnsupported", err)
	}

	tests := []struct {
		name    string
		req     GenerateRequest
		text    string
		finish  FinishReason
		usage   Usage
		wantErr func(error) bool
	}{
		{
			name:   "chat",
			req:    GenerateRequest{Messages: []Message{{Role: "system", Content: "be kind"}, {Role: "user", Content: "the quick brown fox"}}},
			text:   "the quick brown fox",
			finish: FinishStop,
			usage:  Usage{PromptTokens: 3 + 5, CompletionTokens: 4},
		},
		{
			name:   "raw prompt",
			req:    GenerateRequest{Prompt: "one two three"},
			text:   "one two three",
			finish: FinishStop,
			usage:  Usage{PromptTokens: 3, CompletionTokens: 3},
		},
		{
			name:   "max tokens",
			req:    GenerateRequest{Prompt: "one two three", Sampling: Sampling{MaxTokens: 2}},
			text:   "one two",
			finish: FinishLength,
			usage:  Usage{PromptTokens: 3, CompletionTokens: 2},
		},
		{
			name:   "stop across tokens",
			req:    GenerateRequest{Prompt: "the quick brown fox", Sampling: Sampling{Stop: []string{"own f"}}},
			text:   "the quick br",
			finish: FinishStop,
			usage:  Usage{PromptTokens: 4, CompletionTokens: 4},
		},
		{
			name:   "stop held back over whole tokens",
			req:    GenerateRequest{Prompt: "a b c d", Sampling: Sampling{Stop: []string{"a b c X"}}},
			text:   "a b c d",
			finish: FinishStop,
			usage:  Usage{PromptTokens: 4, CompletionTokens: 4},
		},
		{
			name:    "no user message",
			req:     GenerateRequest{Messages: []Message{{Role: "system", Content: "hi"}}},
			wantErr: IsInvalidRequest,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var text strings.Builder
			var last Event
			tokens, n := 0, 0
			err := p.Generate(ctx, tt.req, func(e Event) error {
				if last.Final() {
					t.Errorf("event %+v after the final event", e)
				}
				text.WriteString(e.Text)
				tokens += e.Tokens
				last = e
				n++
				return nil
			})
			if tt.wantErr != nil {
				if !tt.wantErr(err) {
					t.Errorf("Generate = %v, want the matching error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if text.String() != tt.text || last.FinishReason != tt.finish || last.Usage == nil || *last.Usage != tt.usage {
				t.Errorf("got %q %q %+v, want %q %q %+v", text.String(), last.FinishReason, last.Usage, tt.text, tt.finish, tt.usage)
			}
			if tokens != tt.usage.CompletionTokens {
				t.Errorf("events carry %d tokens, usage says %d", tokens, tt.usage.CompletionTokens)
			}
		})
	}
}

func TestLoadRejectsUnknownOption(t *testing.T) {
	p := launch(t, LaunchConfig{Path: echoPath})
	_, err := p.Load(context.Background(), LoadRequest{Model: "echo", Options: map[string]any{"delay_ms": 1, "bogus_option": true}})
	if !IsInvalidRequest(err) || !strings.Contains(err.Error(), "bogus_option") {
		t.Errorf("Load = %v, want ErrInvalidRequest naming bogus_option", err)
	}
	// The plugin survives a failed Load and loads valid options.
	if _, err := p.Load(context.Background(), LoadRequest{Model: "echo", Options: map[string]any{"delay_ms": 1}}); err != nil {
		t.Errorf("Load after a rejected Load: %v", err)
	}
}

func TestLoadFailures(t *testing.T) {
	tests := []struct {
		name   string
		opts   map[string]any
		check  func(error) bool
		substr string
		exits  bool
	}{
		{name: "bad option value", opts: map[string]any{"delay_ms": "soon"}, check: IsInvalidRequest, substr: "delay_ms"},
		{name: "load error", opts: map[string]any{"fail_load": true}, check: func(err error) bool { return err != nil && !IsInvalidRequest(err) }, substr: "fail_load is set"},
		{name: "process exits in Load", opts: map[string]any{"fail_load": "exit"}, check: IsPluginShutdown, substr: "fail_load is exit", exits: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := launch(t, LaunchConfig{Path: echoPath})
			_, err := p.Load(context.Background(), LoadRequest{Model: "echo", Options: tt.opts})
			if !tt.check(err) || !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("Load = %v, want an error containing %q", err, tt.substr)
			}
			if tt.exits {
				waitDone(t, p)
			} else if p.Exited() {
				t.Error("plugin exited")
			}
		})
	}
}

func TestGenerateBeforeLoad(t *testing.T) {
	p := launch(t, LaunchConfig{Path: echoPath})
	err := p.Generate(context.Background(), userMessage("hi"), func(Event) error { return nil })
	if !IsModelNotLoaded(err) {
		t.Errorf("Generate before Load = %v, want ErrModelNotLoaded", err)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestLaunchSHA256Pin(t *testing.T) {
	good := sha256File(t, echoPath)
	other := sha256.Sum256([]byte("another binary"))
	tests := []struct {
		name    string
		pin     string
		wantErr []string
	}{
		{name: "matching pin", pin: good},
		{name: "matching pin in upper case", pin: strings.ToUpper(good)},
		{name: "mismatch", pin: hex.EncodeToString(other[:]), wantErr: []string{"ragway-echo", "sha256 " + good, "pins " + hex.EncodeToString(other[:])}},
		{name: "malformed pin", pin: "abc123", wantErr: []string{"not 64 hex characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr == nil {
				p := launch(t, LaunchConfig{Path: echoPath, SHA256: tt.pin})
				if _, err := p.Info(context.Background()); err != nil {
					t.Errorf("Info: %v", err)
				}
				return
			}
			p, err := Launch(context.Background(), LaunchConfig{Path: echoPath, SHA256: tt.pin, Logger: quiet()})
			if err == nil {
				p.Kill()
				t.Fatal("Launch succeeded")
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Launch error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fake-plugin")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLaunchFailures(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "plain-file")
	if err := os.WriteFile(notExec, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		timeout time.Duration
		wantErr []string // each must appear in the error
	}{
		{name: "missing path", path: filepath.Join(t.TempDir(), "nope"), wantErr: []string{"launch nope", "no such file"}},
		{name: "directory", path: t.TempDir(), wantErr: []string{"not an executable file"}},
		{name: "not executable", path: notExec, wantErr: []string{"plain-file is not an executable file"}},
		{name: "exits at once", path: "/bin/true", wantErr: []string{"launch true"}},
		{name: "prints garbage", path: writeScript(t, "echo hello; exec sleep 5"), wantErr: []string{"Unrecognized remote plugin message: hello", "did not complete the plugin handshake"}},
		{name: "dies with a message", path: writeScript(t, "echo 'cannot open libcuda.so' >&2; exit 1"), wantErr: []string{"plugin stderr: cannot open libcuda.so"}},
		{name: "never handshakes", path: writeScript(t, "exec sleep 30"), timeout: 300 * time.Millisecond, wantErr: []string{"timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Stat(tt.path); tt.path == "/bin/true" && err != nil {
				t.Skip("no /bin/true")
			}
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			start := time.Now()
			p, err := Launch(context.Background(), LaunchConfig{Path: tt.path, StartTimeout: timeout, Logger: quiet()})
			if err == nil {
				p.Kill()
				t.Fatal("Launch succeeded")
			}
			if d := time.Since(start); d > timeout+3*time.Second {
				t.Errorf("Launch took %v with StartTimeout %v", d, timeout)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Launch error %q does not contain %q", err, s)
				}
			}
		})
	}
}

func TestLaunchHonoursContext(t *testing.T) {
	path := writeScript(t, "exec sleep 30")
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := Launch(ctx, LaunchConfig{Path: path, Logger: quiet()})
		if err == nil || time.Since(start) > 5*time.Second {
			t.Errorf("Launch = %v after %v, want an error within the deadline", err, time.Since(start))
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		stop := time.AfterFunc(200*time.Millisecond, cancel)
		defer stop.Stop()
		start := time.Now()
		_, err := Launch(ctx, LaunchConfig{Path: path, Logger: quiet()})
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Errorf("Launch = %v after %v, want context.Canceled promptly", err, time.Since(start))
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := Launch(ctx, LaunchConfig{Path: echoPath, Logger: quiet()}); !errors.Is(err, context.Canceled) {
			t.Errorf("Launch = %v, want context.Canceled", err)
		}
	})
}

func TestKillDuringGenerate(t *testing.T) {
	p := launchEcho(t, map[string]any{"delay_ms": 20})
	first, result := startGenerate(context.Background(), p, userMessage(longText))
	waitFirst(t, first, result)
	if err := syscall.Kill(p.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := waitResult(t, result)
	if !IsPluginShutdown(err) {
		t.Errorf("Generate = %v, want ErrPluginShutdown", err)
	}
	waitDone(t, p)
	if !p.Exited() {
		t.Error("Exited() = false after Done")
	}
	exitErr := p.ExitError()
	if !IsPluginShutdown(exitErr) || !strings.Contains(exitErr.Error(), "exited") || !strings.Contains(exitErr.Error(), "signal: killed") {
		t.Errorf("ExitError = %v, want it to say the process was killed", exitErr)
	}
	if _, err := p.Health(context.Background()); !IsPluginShutdown(err) {
		t.Errorf("Health after the crash = %v, want ErrPluginShutdown", err)
	}
}

func TestCrashReportsLastLogLine(t *testing.T) {
	p := launchEcho(t, map[string]any{"fail_after": 2})
	err := p.Generate(context.Background(), userMessage(longText), func(Event) error { return nil })
	if !IsPluginShutdown(err) || !strings.Contains(err.Error(), "fail_after reached") {
		t.Errorf("Generate = %v, want ErrPluginShutdown with the plugin's last words", err)
	}
	waitDone(t, p)
	exitErr := p.ExitError()
	for _, s := range []string{"exit status 2", "error: fail_after reached, exiting"} {
		if exitErr == nil || !strings.Contains(exitErr.Error(), s) {
			t.Errorf("ExitError = %v, want it to contain %q", exitErr, s)
		}
	}
}

func TestCallerCancelFreesSlot(t *testing.T) {
	p := launchEcho(t, map[string]any{"delay_ms": 20, "parallel": 1})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first, result := startGenerate(ctx, p, userMessage(longText))
	waitFirst(t, first, result)
	if h, err := p.Health(context.Background()); err != nil || h.Running != 1 {
		t.Fatalf("Health during the generation = %+v, %v; want Running 1", h, err)
	}
	cancel()
	err := waitResult(t, result)
	if !errors.Is(err, context.Canceled) || IsPluginShutdown(err) {
		t.Errorf("Generate = %v, want context.Canceled, not ErrPluginShutdown", err)
	}
	eventually(t, 5*time.Second, "Health.Running back to 0", func() bool {
		h, err := p.Health(context.Background())
		return err == nil && h.Running == 0
	})
	// The only slot is free: a new request runs.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := p.Generate(ctx2, userMessage("still here"), func(Event) error { return nil }); err != nil {
		t.Errorf("Generate after the cancel: %v", err)
	}
	if p.Exited() {
		t.Error("plugin exited")
	}
}

func TestCloseIsGraceful(t *testing.T) {
	p := launchEcho(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	p.Close(ctx)
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("Close took %v: the plugin did not exit on request", d)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
	if err := p.ExitError(); err == nil || strings.Contains(err.Error(), "signal") {
		t.Errorf("ExitError = %v, want a clean exit", err)
	}
	if _, err := p.Health(context.Background()); !IsPluginShutdown(err) {
		t.Errorf("Health after Close = %v, want ErrPluginShutdown", err)
	}
	p.Close(ctx) // a second Close is harmless
}

func TestCloseKillsWhenContextEnds(t *testing.T) {
	p := launchEcho(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Close(ctx)
	waitDone(t, p)
}

func TestKillAndCloseRemoveSocketDir(t *testing.T) {
	for _, kill := range []bool{false, true} {
		t.Run(fmt.Sprintf("kill=%v", kill), func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			p := launch(t, LaunchConfig{Path: echoPath})
			if entries, _ := os.ReadDir(tmp); len(entries) == 0 {
				t.Fatal("no socket dir while the plugin runs: test is not checking anything")
			}
			if kill {
				p.Kill()
			} else {
				p.Close(context.Background())
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("left behind in TMPDIR: %v", entries)
			}
		})
	}
}

type recordingHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestPluginLogsReachHost(t *testing.T) {
	h := &recordingHandler{}
	var stderr lockedBuffer
	ctx := context.Background()
	p, err := Launch(ctx, LaunchConfig{Path: echoPath, Logger: slog.New(h), Stderr: &stderr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Load(ctx, LoadRequest{Model: "my-model", Options: map[string]any{"parallel": 3}}); err != nil {
		t.Fatal(err)
	}
	p.Close(ctx) // waits for the log readers
	if !strings.Contains(stderr.String(), `"@message":"model loaded"`) {
		t.Errorf("raw stderr lacks the plugin's record:\n%s", stderr.String())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message != "model loaded" {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		if r.Level != slog.LevelInfo || attrs["model"] != "my-model" || attrs["parallel"] != "3" {
			t.Errorf("record %v %q %v, want info with model and parallel", r.Level, r.Message, attrs)
		}
		return
	}
	t.Errorf("the host logger did not get the plugin's record; got %d records", len(h.records))
}

// TestHelperHost is not a test: TestOrphanPluginDiesWithHost runs the test
// binary with it as a host process that launches echo, prints its pid and
// waits to be killed.
func TestHelperHost(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestOrphanPluginDiesWithHost")
	}
	p, err := Launch(context.Background(), LaunchConfig{Path: echoPath, Logger: quiet()})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("PID", p.Pid())
	select {
	case <-p.Done():
		fmt.Println("ERROR plugin exited")
	case <-time.After(60 * time.Second):
	}
	os.Exit(1)
}

// processGone reports whether pid no longer runs (exited, or a zombie
// waiting for a reaper).
func processGone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return os.IsNotExist(err)
	}
	// The state follows the command name in parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] == 'Z' || stat[i+2] == 'X'
	}
	return false
}

func TestOrphanPluginDiesWithHost(t *testing.T) {
	host := exec.Command(os.Args[0], "-test.run=^TestHelperHost$")
	host.Env = append(os.Environ(), helperEnv+"=1", helperEchoEnv+"="+echoPath)
	out, err := host.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = host.Process.Kill(); _ = host.Wait() })

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "PID ") || strings.HasPrefix(sc.Text(), "ERROR") {
				lines <- sc.Text()
				return
			}
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("helper host printed no pid in 30s")
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(line, "PID "))
	if err != nil {
		t.Fatalf("helper host: %q", line)
	}
	if processGone(pid) {
		t.Fatalf("plugin %d not running before the host is killed", pid)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })

	if err := host.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = host.Wait()
	eventually(t, 3*time.Second, fmt.Sprintf("orphaned plugin %d gone", pid), func() bool { return processGone(pid) })
}

func TestLoggerMadeAfterServeReachesHost(t *testing.T) {
	h := &recordingHandler{}
	ctx := context.Background()
	p, err := Launch(ctx, LaunchConfig{Path: os.Args[0], Env: []string{helperPluginEnv + "=1"}, Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Load(ctx, LoadRequest{Model: "lazy"}); err != nil {
		t.Fatal(err)
	}
	p.Close(ctx) // waits for the log readers
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if r.Message == "loaded lazily" && r.Level == slog.LevelWarn {
			return
		}
	}
	t.Errorf("the host logger did not get the record as a warning; got %d records", len(h.records))
}

// echo's tokens are its words (each with the whitespace before it): Tokenize
// counts what a raw prompt of the same text reports as PromptTokens.
func TestEchoTokenize(t *testing.T) {
	p := launchEcho(t, nil)
	ctx := context.Background()
	info, err := p.Info(ctx)
	if err != nil || !info.Has(CapabilityTokenize) {
		t.Fatalf("Info = %+v, %v; want the tokenize capability", info, err)
	}
	inputs := []string{"hello", "one two  three\nfour", "", "x\x00 y"}
	resp, err := p.Tokenize(ctx, TokenizeRequest{Input: inputs})
	if err != nil || !reflect.DeepEqual(resp.Counts, []int{1, 4, 0, 2}) {
		t.Fatalf("Tokenize = %+v, %v; want counts [1 4 0 2]", resp, err)
	}
	evs, err := collect(ctx, p, GenerateRequest{Prompt: inputs[1]})
	if err != nil || evs[len(evs)-1].Usage.PromptTokens != resp.Counts[1] {
		t.Fatalf("prompt %q: %+v, %v; want PromptTokens %d", inputs[1], evs, err, resp.Counts[1])
	}
}
