package sdk

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Option configures Serve.
type Option func(*serveConfig)

type serveConfig struct {
	parentWatch time.Duration
	grpcOptions []grpc.ServerOption
}

// WithParentWatch sets how often the plugin checks that the process that
// launched it is still alive; when it is gone the plugin exits. The default
// is 500ms; 0 disables the check.
func WithParentWatch(interval time.Duration) Option {
	return func(c *serveConfig) { c.parentWatch = interval }
}

// WithGRPCServerOptions adds options to the plugin's gRPC server.
func WithGRPCServerOptions(opts ...grpc.ServerOption) Option {
	return func(c *serveConfig) { c.grpcOptions = append(c.grpcOptions, opts...) }
}

// Serve serves b as a ragway backend plugin and returns when the host ends
// the plugin. It is the one call a plugin's main makes:
//
//	func main() { sdk.Serve(mybackend.New()) }
//
// A plugin binary started by hand (not by a ragway host) prints a message and
// exits. The plugin also exits when its host process dies.
func Serve(b Backend, opts ...Option) {
	cfg := serveConfig{parentWatch: 500 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.parentWatch > 0 {
		go watchParent(os.Getppid(), cfg.parentWatch)
	}
	grpcOpts := append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
	}, cfg.grpcOptions...)
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: pluginSets(b),
		GRPCServer: func(o []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(o, grpcOpts...))
		},
		Logger: hclog.New(&hclog.LoggerOptions{Output: processStderr, JSONFormat: true, Level: hclog.Info}),
	})
}

// watchParent exits the process when its parent changes, which on Unix means
// the parent died and the plugin was re-parented.
func watchParent(ppid int, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for range t.C {
		if os.Getppid() != ppid {
			os.Exit(3)
		}
	}
}

// processStderr is the process's real stderr, which the host parses as log
// records. It is captured before Serve, because go-plugin replaces os.Stderr
// with a pipe whose lines reach the host only as raw text.
var processStderr = os.Stderr

// Logger returns a structured logger for plugin code. Its records go to the
// plugin's stderr in the form the host understands, so they appear in the
// gateway's log with their level and attributes. It may be called before or
// after Serve.
func Logger() *slog.Logger {
	return slog.New(newHostLogHandler(processStderr))
}

func newHostLogHandler(w io.Writer) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{}
			case slog.LevelKey:
				return slog.String("@level", a.Value.String())
			case slog.MessageKey:
				return slog.Attr{Key: "@message", Value: a.Value}
			}
			return a
		},
	})
}
