package sdk

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/ragway/ragway/plugin-sdk/internal/pb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LaunchConfig says how to start a plugin binary.
type LaunchConfig struct {
	// Path of the plugin binary.
	Path string
	// Args are extra command-line arguments.
	Args []string
	// Env is added to the host's environment for the plugin.
	Env []string
	// DropEnv names variables of the host's environment the plugin does not get
	// (the host's secrets: a plugin's options may name a variable to read).
	DropEnv []string
	// SHA256, when set, pins the binary: a binary with another hash is not
	// started. Hex encoded.
	SHA256 string
	// Logger receives the plugin's log records and go-plugin's own.
	// Default: slog.Default().
	Logger *slog.Logger
	// StartTimeout bounds the handshake. Default: 30s.
	StartTimeout time.Duration
	// Stderr, when set, also receives the plugin's raw stderr.
	Stderr io.Writer
}

// Plugin is a running plugin process. It implements Backend, Embedder and
// Tokenizer;
// every call derives from the caller's context and also ends, with
// ErrPluginShutdown, when the process dies.
type Plugin struct {
	name   string
	client *plugin.Client
	rpc    pb.BackendClient
	proc   *procRunner
	tail   *stderrTail
	// dead is cancelled once the process has exited.
	dead context.Context
}

var (
	_ Backend   = (*Plugin)(nil)
	_ Embedder  = (*Plugin)(nil)
	_ Tokenizer = (*Plugin)(nil)
	_ Reranker  = (*Plugin)(nil)
)

// Launch starts the plugin binary, completes the handshake (go-plugin with
// automatic mutual TLS) and returns it. ctx bounds the start only (its
// deadline and its cancellation); the process lives until Close or Kill, or
// until the host process dies.
func Launch(ctx context.Context, cfg LaunchConfig) (*Plugin, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 30 * time.Second
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < cfg.StartTimeout {
		cfg.StartTimeout = max(time.Until(dl), time.Millisecond)
	}
	name := filepath.Base(cfg.Path)
	if ctx.Err() != nil {
		return nil, fmt.Errorf("launch %s: %w", name, context.Cause(ctx))
	}
	if err := checkBinary(cfg.Path, cfg.SHA256); err != nil {
		return nil, fmt.Errorf("launch %s: %w", name, err)
	}
	p := &Plugin{name: name, tail: newStderrTail(8)}
	// procMu guards p.proc until the handshake is over: cancelling ctx kills
	// the process from another goroutine.
	var procMu sync.Mutex
	stderr := io.Writer(p.tail)
	if cfg.Stderr != nil {
		stderr = io.MultiWriter(p.tail, cfg.Stderr)
	}
	p.client = plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: pluginSets(nil),
		RunnerFunc: func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
			cmd.Path = cfg.Path
			cmd.Args = append([]string{cfg.Path}, cfg.Args...)
			cmd.Env = append(slices.DeleteFunc(cmd.Env, func(kv string) bool {
				k, _, _ := strings.Cut(kv, "=")
				return slices.Contains(cfg.DropEnv, k)
			}), cfg.Env...)
			r, err := newProcRunner(cmd)
			if err != nil {
				return nil, err
			}
			procMu.Lock()
			p.proc = r
			cancelled := ctx.Err() != nil
			procMu.Unlock()
			if cancelled {
				_ = r.Kill(context.Background()) // Start will refuse
			}
			return r, nil
		},
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		// Not Managed: go-plugin keeps every managed client in a global
		// list until CleanupClients, which would grow with each restart of
		// a long-running host. Plugin lifetime is ours: Close/Kill, the
		// parent-death signal and Serve's parent watch.
		StartTimeout: cfg.StartTimeout,
		Stderr:       stderr,
		SyncStderr:   stderr,
		Logger:       hclogToSlog(cfg.Logger),
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes))},
	})
	fail := func(err error) (*Plugin, error) {
		p.client.Kill()
		if t := p.tail.String(); t != "" {
			err = fmt.Errorf("%w; plugin stderr: %s", err, t)
		}
		return nil, fmt.Errorf("launch %s: %w", name, err)
	}
	// Cancelling ctx kills the process, which ends the handshake.
	stopAbort := context.AfterFunc(ctx, func() {
		procMu.Lock()
		r := p.proc
		procMu.Unlock()
		if r != nil {
			_ = r.Kill(context.Background())
		}
	})
	cp, err := p.client.Client()
	if !stopAbort() && err == nil {
		err = errors.New("cancelled after the handshake")
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
		}
		return fail(err)
	}
	raw, err := cp.Dispense(pluginName)
	if err != nil {
		return fail(err)
	}
	p.rpc = raw.(pb.BackendClient)
	dead, markDead := context.WithCancel(context.Background())
	p.dead = dead
	go func() {
		<-p.proc.done
		markDead()
	}()
	return p, nil
}

func checkBinary(path, pin string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("plugin binary: %w", err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("plugin binary %s is not an executable file", path)
	}
	if pin == "" {
		return nil
	}
	want, err := hex.DecodeString(pin)
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("sha256 pin %q is not 64 hex characters", pin)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("plugin binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("hash plugin binary: %w", err)
	}
	if got := h.Sum(nil); string(got) != string(want) {
		return fmt.Errorf("plugin binary %s has sha256 %x, config pins %s", path, got, pin)
	}
	return nil
}

// Pid is the plugin's process id.
func (p *Plugin) Pid() int {
	pid, _ := strconv.Atoi(p.proc.ID())
	return pid
}

// Done is closed when the plugin process has exited.
func (p *Plugin) Done() <-chan struct{} { return p.proc.done }

// Exited reports whether the plugin process has exited.
func (p *Plugin) Exited() bool {
	select {
	case <-p.proc.done:
		return true
	default:
		return false
	}
}

// ExitError describes how the process ended, with the last lines it wrote to
// stderr. It is nil while the process runs.
func (p *Plugin) ExitError() error {
	if !p.Exited() {
		return nil
	}
	msg := fmt.Sprintf("%s (pid %d) exited", p.name, p.Pid())
	if p.proc.waitErr != nil {
		msg += ": " + p.proc.waitErr.Error()
	}
	if t := p.tail.String(); t != "" {
		msg += "; stderr: " + t
	}
	return fmt.Errorf("%w: %s", ErrPluginShutdown, msg)
}

// Close asks the plugin to exit and waits until ctx is done, then kills it.
func (p *Plugin) Close(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		p.client.Kill() // graceful first, then forced after 2s
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		_ = p.proc.Kill(context.Background())
		<-done
	}
}

// Kill ends the plugin process at once and waits until it has exited.
func (p *Plugin) Kill() {
	_ = p.proc.Kill(context.Background())
	<-p.proc.done
	// The process is gone: this only closes the connection, waits for
	// go-plugin's goroutines and removes the socket directory.
	p.client.Kill()
}

// call derives the context of one RPC: the caller's, also cancelled when the
// process dies.
func (p *Plugin) call(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if p.dead.Err() != nil {
		// Dead already: cancelled now, not by AfterFunc's goroutine, which a quick
		// call could outrun.
		cancel()
	}
	stop := context.AfterFunc(p.dead, cancel)
	return ctx, func() { stop(); cancel() }
}

// exitGrace is how long a call that lost its connection waits for the
// process exit to be noticed, so that its error carries the exit status and
// the plugin's last log lines.
const exitGrace = 500 * time.Millisecond

// wrap maps an RPC error to the SDK's errors, naming what was being done.
func (p *Plugin) wrap(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.Unavailable && !p.Exited() && ctx.Err() == nil {
		// The connection broke, usually because the process is exiting:
		// wait briefly for the exit so the error says why it died.
		t := time.NewTimer(exitGrace)
		select {
		case <-p.proc.done:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if p.Exited() && ctx.Err() == nil {
		return fmt.Errorf("%s: %w", op, p.ExitError())
	}
	return fmt.Errorf("%s: %w", op, fromStatus(ctx, err, p.Exited()))
}

// Info implements Backend.
func (p *Plugin) Info(ctx context.Context) (Info, error) {
	cctx, cancel := p.call(ctx)
	defer cancel()
	resp, err := p.rpc.Info(cctx, &pb.InfoRequest{})
	if err != nil {
		return Info{}, p.wrap(ctx, "info", err)
	}
	info := infoFromPB(resp)
	if err := CheckAPIVersion(info.APIVersion); err != nil {
		return info, fmt.Errorf("info: %s: %w", p.name, err)
	}
	return info, nil
}

// CheckAPIVersion reports whether a plugin reporting api version v can be
// used by this host: the major versions must match.
func CheckAPIVersion(v string) error {
	major := func(s string) string { m, _, _ := strings.Cut(strings.TrimPrefix(s, "v"), "."); return m }
	if v == "" {
		return errors.New("plugin reports no api_version")
	}
	if major(v) != major(APIVersion) {
		return fmt.Errorf("plugin api_version %s is incompatible with host api_version %s", v, APIVersion)
	}
	return nil
}

// Load implements Backend.
func (p *Plugin) Load(ctx context.Context, req LoadRequest) (ModelInfo, error) {
	preq, err := loadRequestToPB(req)
	if err != nil {
		return ModelInfo{}, fmt.Errorf("load: %w", err)
	}
	cctx, cancel := p.call(ctx)
	defer cancel()
	resp, err := p.rpc.Load(cctx, preq)
	if err != nil {
		return ModelInfo{}, p.wrap(ctx, "load", err)
	}
	return modelInfoFromPB(resp), nil
}

// Generate implements Backend. It returns an error if the stream ends
// without a final event.
func (p *Plugin) Generate(ctx context.Context, req GenerateRequest, emit func(Event) error) error {
	preq, err := generateRequestToPB(req)
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	cctx, cancel := p.call(ctx)
	defer cancel()
	stream, err := p.rpc.Generate(cctx, preq)
	if err != nil {
		return p.wrap(ctx, "generate", err)
	}
	for {
		ev, err := stream.Recv()
		if err == io.EOF {
			return fmt.Errorf("generate: %s ended the stream without a final event", p.name)
		}
		if err != nil {
			return p.wrap(ctx, "generate", err)
		}
		e := eventFromPB(ev)
		if err := emit(e); err != nil {
			return err
		}
		if e.Final() {
			return nil
		}
	}
}

// Embed implements Embedder; a plugin without the capability gives
// ErrUnsupported.
func (p *Plugin) Embed(ctx context.Context, req EmbedRequest) (EmbedResponse, error) {
	preq, err := embedRequestToPB(req)
	if err != nil {
		return EmbedResponse{}, fmt.Errorf("embed: %w", err)
	}
	cctx, cancel := p.call(ctx)
	defer cancel()
	resp, err := p.rpc.Embed(cctx, preq)
	if err != nil {
		return EmbedResponse{}, p.wrap(ctx, "embed", err)
	}
	return embedResponseFromPB(resp), nil
}

// Tokenize implements Tokenizer; a plugin without the capability (or built
// against API 1.1 or older) gives ErrUnsupported.
func (p *Plugin) Tokenize(ctx context.Context, req TokenizeRequest) (TokenizeResponse, error) {
	preq, err := tokenizeRequestToPB(req)
	if err != nil {
		return TokenizeResponse{}, fmt.Errorf("tokenize: %w", err)
	}
	cctx, cancel := p.call(ctx)
	defer cancel()
	resp, err := p.rpc.Tokenize(cctx, preq)
	if err != nil {
		return TokenizeResponse{}, p.wrap(ctx, "tokenize", err)
	}
	out := tokenizeResponseFromPB(resp)
	if len(out.Counts) != len(req.Input) {
		return TokenizeResponse{}, fmt.Errorf("tokenize: %s returned %d token counts for %d inputs", p.name, len(out.Counts), len(req.Input))
	}
	return out, nil
}

// Rerank implements Reranker; a plugin without the capability (or built
// against API 1.3 or older) gives ErrUnsupported.
func (p *Plugin) Rerank(ctx context.Context, req RerankRequest) (RerankResponse, error) {
	preq, err := rerankRequestToPB(req)
	if err != nil {
		return RerankResponse{}, fmt.Errorf("rerank: %w", err)
	}
	cctx, cancel := p.call(ctx)
	defer cancel()
	resp, err := p.rpc.Rerank(cctx, preq)
	if err != nil {
		return RerankResponse{}, p.wrap(ctx, "rerank", err)
	}
	out := rerankResponseFromPB(resp)
	if len(out.Scores) != len(req.Documents) {
		return RerankResponse{}, fmt.Errorf("rerank: %s returned %d scores for %d documents", p.name, len(out.Scores), len(req.Documents))
	}
	// A plugin not built on this SDK may send what its server would refuse.
	for i, v := range out.Scores {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return RerankResponse{}, fmt.Errorf("rerank: %s returned a score that is not a number for document %d", p.name, i)
		}
	}
	return out, nil
}

// Health implements Backend.
func (p *Plugin) Health(ctx context.Context) (Health, error) {
	cctx, cancel := p.call(ctx)
	defer cancel()
	resp, err := p.rpc.Health(cctx, &pb.HealthRequest{})
	if err != nil {
		return Health{}, p.wrap(ctx, "health", err)
	}
	return healthFromPB(resp), nil
}
