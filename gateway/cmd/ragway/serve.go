package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/gofiber/fiber/v2"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ragway/ragway/gateway/accounts"
	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/conversations"
	"github.com/ragway/ragway/gateway/health"
	"github.com/ragway/ragway/gateway/ingest"
	"github.com/ragway/ragway/gateway/knowledge"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/models"
	"github.com/ragway/ragway/gateway/netguard"
	"github.com/ragway/ragway/gateway/pull"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/usage"
	"github.com/ragway/ragway/gateway/web"
	"github.com/ragway/ragway/gateway/workers"
	"github.com/ragway/ragway/gateway/ws"
)

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

	dbURL, _, err := resolveDatabaseURL(cfg)
	if err != nil {
		return err
	}
	origin := newOrigin()
	st, err := store.Open(dbURL, store.Options{Origin: origin})
	if err != nil {
		return err
	}
	defer st.Close()
	if err := checkSchema(ctx, st); err != nil {
		if !errors.Is(err, store.ErrUnavailable) {
			return err
		}
		// Serve anyway: what needs the database answers 503 until it is back.
		log.Warn("the database is unreachable; requests that need it fail with 503 until it returns", "database", store.RedactURL(dbURL), "error", err)
	}
	go failInterrupted(ctx, st, cfg.Server.RequestTimeout.Std(), log)
	// Alive before it serves: the answers it begins are not taken for a stopped
	// gateway's by the others (keepAlive goes on from there).
	if err := st.Heartbeat(ctx); err != nil {
		log.Debug("heartbeat", "error", err)
	}
	go keepAlive(ctx, st, log)
	var chats, indexing sync.WaitGroup
	authn := auth.New(st, auth.Options{Logger: log})
	// Keys' limits hold for the sum over every gateway on the database.
	limiter := &auth.SharedLimiter{Store: st, Logger: log}
	// The limiter syncs until the requests in flight at shutdown are accounted for;
	// its last sync gives back the leases and debits their tokens.
	limCtx, limStop := context.WithCancel(context.WithoutCancel(ctx))
	limDone := make(chan struct{})
	go func() {
		defer close(limDone)
		limiter.Run(limCtx)
	}()
	defer func() { limStop(); <-limDone }()
	gate := &auth.Gate{Auth: authn, Limiter: limiter}
	rec := usage.New(st, usage.Options{Spend: gate.Spend, Logger: log})

	met := metrics.New()
	mgr := workers.New(workers.Options{
		PluginsDir:   pluginsDir,
		ModelsDir:    cfg.ModelsDir,
		QueueTimeout: cfg.Server.QueueTimeout.Std(),
		Logger:       log,
		Metrics:      met,
	})
	// The models: the config file's now; the admin API's (stored) as Run syncs them,
	// and as the change feed says they changed; the file's again on SIGHUP.
	mods := models.New(models.Options{
		Workers: mgr,
		Store:   st,
		Config:  func() (*config.Config, error) { return config.Load(*cfgPath, os.Environ()) },
		// The index holds this model's vectors: it stays as it is while the gateway runs.
		EmbeddingModel: cfg.RAG.EmbeddingModel,
		Logger:         log,
	})
	if err := mods.Start(cfg.Models); err != nil {
		_ = mgr.Close(context.Background())
		return err
	}
	go mods.Run(ctx)
	go reloadOnHangup(ctx, mods, log)
	vectors, persistent, err := openVectors(ctx, cfg, log)
	if err != nil {
		_ = mgr.Close(context.Background())
		return err
	}
	defer vectors.Close()
	go follow(ctx, st, origin, vectors, persistent, authn, mods, met, log)
	embed := embedder(mgr, cfg.RAG.EmbeddingModel)
	ragSvc := &rag.Service{KBs: st, TopK: cfg.RAG.TopK, Logger: log,
		Retriever: &rag.Retriever{Vectors: vectors, Chunks: st, Embedding: embed, Logger: log, Defaults: rag.Settings{
			Fusion: cfg.RAG.Fusion, RRFK: cfg.RAG.RRFK, DenseWeight: &cfg.RAG.DenseWeight, RerankCandidates: cfg.RAG.RerankCandidates}}}
	if cfg.RAG.RerankModel != "" {
		ragSvc.Retriever.Reranker = &rag.ModelReranker{Models: mgr, Name: cfg.RAG.RerankModel}
	}
	overlap := cfg.RAG.ChunkOverlap
	if overlap == 0 {
		overlap = -1 // rag.Options: 0 is its default, negative none
	}
	exe, err := os.Executable()
	if err != nil {
		_ = mgr.Close(context.Background())
		return fmt.Errorf("locate the ragway executable (PDF extraction runs in a child process): %w", err)
	}
	kbs := knowledge.New(knowledge.Options{
		Store: st,
		Indexer: &rag.Indexer{Store: st, Vectors: vectors, Embedding: embed, Logger: log,
			Options: rag.Options{ChunkTokens: cfg.RAG.ChunkTokens, Overlap: overlap}},
		Retriever:        ragSvc.Retriever,
		EmbeddingModel:   cfg.RAG.EmbeddingModel,
		Reranking:        cfg.RAG.RerankModel != "",
		RerankCandidates: cfg.RAG.RerankCandidates,
		TopK:             cfg.RAG.TopK,
		// An upload is never larger than a request's body may be.
		MaxBytes: cfg.Server.MaxBodyBytes,
		Extract: func(ctx context.Context, o ingest.Options, name string, f ingest.Format, data []byte) (ingest.Extracted, error) {
			return o.Isolated(ctx, exe, name, f, data)
		},
		// Documents indexed in the background stop with the gateway (marked failed, to
		// upload again), and the database closes after them.
		Context: ctx, Indexing: &indexing,
		Logger: log,
	})
	// One holder of conversations' histories: chat turns read it, deleting a
	// conversation forgets it.
	turns := conversation.NewTurns(st)
	// One chat core for HTTP and WebSocket: conversations, retrieval, accounting.
	core := &chat.Service{Backends: mgr, Turns: turns, RAG: ragSvc, Usage: rec, Metrics: met,
		Timeout: cfg.Server.RequestTimeout.Std(), Logger: log}
	accts, err := accounts.New(st, accounts.Options{Signup: cfg.Web.Signup, SessionTTL: cfg.Web.SessionTTL.Std()})
	if err != nil {
		_ = mgr.Close(context.Background())
		return err
	}
	app := api.New(mgr, api.Options{
		MaxBodyBytes:      int(cfg.Server.MaxBodyBytes),
		RequestTimeout:    cfg.Server.RequestTimeout.Std(),
		HeartbeatInterval: cfg.Server.HeartbeatInterval.Std(),
		Logger:            log,
		Metrics:           met,
		Gate:              gate,
		Conversations:     conversations.New(st, turns),
		Database:          &health.Database{Store: st, Logger: log},
		Usage:             rec,
		MetricsToken:      cfg.Server.MetricsToken,
		MetricsOpen:       cfg.Server.MetricsToken == "" && api.IsLoopback(cfg.Listen),
		Chat:              core,
		Knowledge:         kbs,
		Accounts:          accts,
		SecureCookies:     cfg.Web.SecureCookies,
		TrustedProxies:    cfg.Web.TrustedPrefixes(),
		Models:            mods,
		Pulls: &pull.Puller{Context: ctx, Options: pull.Options{Dir: cfg.ModelsDir,
			HFEndpoint: os.Getenv("HF_ENDPOINT"), HFToken: os.Getenv("HF_TOKEN")}},
		HeaderTimeout: cfg.Server.HeaderTimeout.Std(),
		BodyTimeout:   cfg.Server.BodyTimeout.Std(),
		IdleTimeout:   cfg.Server.IdleTimeout.Std(),
		CORSOrigins:   cfg.Server.CORSOrigins,
	})
	// The WebSocket protocol, on the API's app (its middleware: request ids, CORS,
	// panics), over the same chat core. The app's shutdown closes the sockets (1001),
	// which cancels their chats; serve waits for their ends to be stored.
	ws.Mount(app, mgr, ws.Options{
		Gate:           gate,
		Chat:           core,
		Chats:          &chats,
		MaxFrameBytes:  cfg.Server.MaxBodyBytes,
		Logger:         log,
		Metrics:        met,
		AllowedOrigins: cfg.Server.CORSOrigins,
		SessionCookies: true,
		SecureCookies:  func(c *fiber.Ctx) bool { return accounts.SecureCookies(cfg.Web.SecureCookies, c.Context().IsTLS()) },
	})
	// The website, at / (its API is the one above).
	site, err := web.New()
	if err != nil {
		_ = mgr.Close(context.Background())
		return err
	}
	site.Mount(app)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = mgr.Close(context.Background())
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	log.Info("ragway listening", "addr", "http://"+ln.Addr().String(), "models", modelNames(cfg), "plugins_dir", pluginsDir)
	go announceAfterStart(ctx, mgr, cfg, stderr, log)

	served := make(chan error, 1)
	guarded := netguard.Listen(ln, netguard.Options{
		HeaderTimeout:           cfg.Server.HeaderTimeout.Std(),
		WriteTimeout:            cfg.Server.WriteTimeout.Std(),
		MaxUnauthenticated:      noLimit(cfg.Server.MaxUnauthenticatedConns),
		MaxUnauthenticatedPerIP: noLimit(cfg.Server.MaxUnauthenticatedConnsPerIP),
	})
	go func() { served <- app.Listener(guarded) }()
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
	// The WebSocket chats cancelled by the shutdown store their ends, and documents
	// being indexed their state, before the database closes.
	waitUntil(graceCtx, &chats, log, "WebSocket chats")
	waitUntil(graceCtx, &indexing, log, "documents being indexed")
	if err := rec.Close(graceCtx); err != nil {
		log.Warn("shutdown", "error", err)
	}
	limStop()
	<-limDone
	authn.Wait()
	log.Info("stopped")
	return nil
}

// waitUntil waits for wg, or logs that what is still running when ctx ends.
func waitUntil(ctx context.Context, wg *sync.WaitGroup, log *slog.Logger, what string) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		log.Warn("shutdown: " + what + " still running at the end of the grace period")
	}
}

// noLimit maps the config's 0 (no limit) to netguard's negative.
func noLimit(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func modelNames(cfg *config.Config) string {
	var names []string
	for _, m := range cfg.Models {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// schemaTimeout bounds the schema check at start.
const schemaTimeout = 5 * time.Second

// checkSchema refuses a database whose schema is not this ragway's (store.ErrSchema);
// an unreachable database is store.ErrUnavailable (/readyz checks the schema once it
// answers).
func checkSchema(ctx context.Context, st *store.Store) error {
	ctx, cancel := context.WithTimeout(ctx, schemaTimeout)
	defer cancel()
	return st.Ready(ctx)
}

// failInterrupted marks answers left in progress by a gateway that stopped (or lost the
// database) mid-generation as failed, at start and every minute until ctx ends. An
// answer is interrupted when it is older than the longest a generation may run.
func failInterrupted(ctx context.Context, st *store.Store, requestTimeout time.Duration, log *slog.Logger) {
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		n, err := st.FailInterrupted(ctx, requestTimeout+time.Minute)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Debug("failing interrupted answers", "error", err)
		case n > 0:
			log.Info("interrupted answers marked failed", "answers", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Liveness of the gateways sharing the database.
const (
	// heartbeatEvery is how often a gateway says it is alive.
	heartbeatEvery = 2 * time.Second
	// orphanedAfter is how long a gateway may be silent before the others fail the
	// answers it left in progress.
	orphanedAfter = 10 * time.Second
)

// keepAlive says this gateway is alive every heartbeatEvery, and marks failed the
// answers of gateways silent for orphanedAfter (killed mid-answer, their machine
// lost), until ctx ends.
func keepAlive(ctx context.Context, st *store.Store, log *slog.Logger) {
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		if err := st.Heartbeat(ctx); err != nil && ctx.Err() == nil {
			log.Debug("heartbeat", "error", err)
		}
		n, err := st.FailOrphaned(ctx, orphanedAfter)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Debug("failing the answers of stopped gateways", "error", err)
		case n > 0:
			log.Info("answers of a stopped gateway marked failed", "answers", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reloadOnHangup reloads the config file's models on every SIGHUP until ctx ends, and
// logs what came of it (a broken file changes nothing; its errors are logged as at
// start).
func reloadOnHangup(ctx context.Context, mods *models.Service, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		rep, err := mods.Reload(ctx, "SIGHUP")
		var inv *models.InvalidError
		switch {
		case errors.As(err, &inv):
			log.Error("reload: the config file is not valid; nothing changed", "error", inv.Err)
		case err != nil:
			log.Error("reload: some models could not be changed", "added", rep.Added, "changed", rep.Changed, "removed", rep.Removed, "error", err)
		default:
			log.Info("reload: models changed as the config file says", "added", rep.Added, "changed", rep.Changed, "removed", rep.Removed)
		}
	}
}
