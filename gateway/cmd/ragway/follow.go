package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/feed"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/models"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
)

// The change feed's retention: a gateway away longer reloads instead of reading on.
const (
	feedKeep       = 24 * time.Hour
	feedPruneEvery = time.Hour
)

// newOrigin names this gateway process in the change feed: the host and a random
// part (a restarted gateway is another origin: it reloaded everything).
func newOrigin() string {
	host, _ := os.Hostname()
	var b [6]byte
	_, _ = rand.Read(b[:])
	return host + "/" + hex.EncodeToString(b[:])
}

// follow keeps this gateway in step with every other gateway on the database: it
// loads the embedded index from Postgres (unless the index is persistent and shared)
// and then follows the change feed from the position it read before loading, applying
// what other gateways (and the CLI) change — documents indexed or deleted, knowledge
// bases deleted, keys revoked — until ctx ends. It also prunes the feed.
func follow(ctx context.Context, st *store.Store, origin string, vectors vectorstore.Store, persistent bool,
	authn *auth.Authenticator, mods *models.Service, met *metrics.Metrics, log *slog.Logger) {
	load := func(ctx context.Context) (int64, error) {
		// The position first: what changes during the load is applied again after it.
		pos, err := st.LastChange(ctx)
		mods.Kick() // the stored models too, as they are now
		if err != nil {
			return pos, err
		}
		// Chunks stored under older analyzer rules are brought up to date before the
		// index is read (a persistent index is written as they are).
		start := time.Now()
		var shared vectorstore.Store
		if persistent {
			shared = vectors
		}
		kbs, chunks, err := rag.Reanalyze(ctx, st, shared)
		if err != nil {
			return 0, err
		}
		if kbs > 0 {
			log.Info("sparse vectors analysed again with the current rules", "knowledge_bases", kbs, "chunks", chunks, "took", time.Since(start).Round(time.Millisecond))
		}
		if persistent {
			return pos, nil
		}
		start = time.Now()
		kbs, chunks, err = rag.LoadAll(ctx, st, vectors)
		if err != nil {
			return 0, err
		}
		log.Info("vector index loaded from the database", "knowledge_bases", kbs, "chunks", chunks, "took", time.Since(start).Round(time.Millisecond))
		return pos, nil
	}
	f := &feed.Follower{
		Source: st,
		Origin: origin,
		Apply: func(ctx context.Context, c store.Change) error {
			switch c.Kind {
			case store.ChangeKeyRevoked:
				authn.Forget(c.KeyPrefix)
				return nil
			case store.ChangeModelChanged:
				mods.Kick() // synced in the background: a new version may take a while to load
				return nil
			}
			if c.Kind == store.ChangeDocumentIndexed {
				// A gateway of an older version may have indexed it by older rules.
				var shared vectorstore.Store
				if persistent {
					shared = vectors
				}
				if _, err := rag.ReanalyzeDocument(ctx, st, shared, c.KBID, c.DocumentID); err != nil {
					return err
				}
			}
			if persistent {
				return nil // the shared index was changed by whoever made the change
			}
			return rag.ApplyChange(ctx, st, vectors, c)
		},
		Reload:  load,
		Observe: func(c store.Change) { met.ObserveChange(string(c.Kind), c.At) },
		Logger:  log,
	}
	go feed.Prune(ctx, st, feedKeep, feedPruneEvery, log)
	for {
		pos, err := load(ctx)
		if err == nil {
			f.Run(ctx, pos)
			return
		}
		log.Warn("loading from the database: retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}
