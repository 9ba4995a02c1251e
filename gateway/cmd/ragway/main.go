// Command ragway is the ragway gateway and its command-line tools.
//
//	ragway serve [-c ragway.yaml]   run the gateway
//
// main parses flags and the config, wires the packages and runs; nothing
// else lives here.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/workers"
)

const usage = `ragway: a gateway for retrieval-augmented chat

Usage:
  ragway serve [-c FILE] [-log-level LEVEL]   run the gateway (no -c: embedded defaults)

Every config key can also be set by environment: RAGWAY_LISTEN, RAGWAY_PLUGINS_DIR, ...
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ragway:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("missing command")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func serve(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", "", "config file (YAML); empty: embedded defaults")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(log)

	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		return err
	}
	pluginsDir, err := config.ResolvePluginsDir(cfg.PluginsDir)
	if err != nil {
		return err
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	met := metrics.New()
	mgr := workers.New(workers.Options{
		PluginsDir:   pluginsDir,
		QueueTimeout: cfg.Server.QueueTimeout.Std(),
		Logger:       log,
		Metrics:      met,
	})
	for _, m := range cfg.Models {
		if err := mgr.Add(m); err != nil {
			return err
		}
	}
	app := api.New(mgr, api.Options{
		MaxBodyBytes:      int(cfg.Server.MaxBodyBytes),
		RequestTimeout:    cfg.Server.RequestTimeout.Std(),
		HeartbeatInterval: cfg.Server.HeartbeatInterval.Std(),
		Logger:            log,
		Metrics:           met,
	})
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = mgr.Close(context.Background())
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("ragway listening", "addr", "http://"+ln.Addr().String(), "models", modelNames(cfg), "plugins_dir", pluginsDir)

	served := make(chan error, 1)
	go func() { served <- app.Listener(api.LingeringListener(ln)) }()
	select {
	case err := <-served:
		_ = mgr.Close(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop()
	log.Info("shutting down: draining in-flight requests", "grace", cfg.Server.ShutdownGrace.Std())
	graceCtx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace.Std())
	defer cancel()
	httpDone := make(chan error, 1)
	go func() { httpDone <- app.ShutdownWithContext(graceCtx) }()
	if err := mgr.Close(graceCtx); err != nil {
		log.Warn("shutdown", "error", err)
	}
	if err := <-httpDone; err != nil {
		log.Warn("http shutdown", "error", err)
	}
	log.Info("stopped")
	return nil
}

func modelNames(cfg *config.Config) string {
	var names []string
	for _, m := range cfg.Models {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}
