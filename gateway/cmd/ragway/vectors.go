package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
	"github.com/ragway/ragway/gateway/vectorstore/qdrant"
	"github.com/ragway/ragway/gateway/workers"
)

// openVectors opens the vector store the config names; persistent tells whether it
// keeps its index across restarts (Qdrant) or must be loaded from Postgres (embedded).
// A Qdrant that cannot be reached at start is connected to in the background: until
// then retrievals fail (answers proceed without context and say so).
func openVectors(ctx context.Context, cfg *config.Config, log *slog.Logger) (vs vectorstore.Store, persistent bool, err error) {
	switch cfg.VectorStore.Kind {
	case config.VectorStoreEmbedded, "":
		return embedded.New(), false, nil
	case config.VectorStoreQdrant:
		qc := qdrant.Config{URL: cfg.VectorStore.URL, APIKey: cfg.VectorStore.APIKey}
		l := &lazyVectors{}
		connect := func() error {
			s, err := qdrant.New(ctx, qc)
			if err == nil {
				l.set(s)
			}
			return err
		}
		if err := connect(); err != nil {
			if !errors.Is(err, vectorstore.ErrUnavailable) {
				return nil, false, fmt.Errorf("vector_store: %w", err)
			}
			log.Warn("Qdrant is unreachable; answers proceed without retrieval until it is back", "url", cfg.VectorStore.URL, "error", err)
			go func() {
				for ctx.Err() == nil {
					select {
					case <-ctx.Done():
						return
					case <-time.After(5 * time.Second):
					}
					if connect() == nil {
						log.Info("connected to Qdrant", "url", cfg.VectorStore.URL)
						return
					}
				}
			}()
		}
		return l, true, nil
	}
	return nil, false, fmt.Errorf("vector_store.kind %q: want embedded or qdrant", cfg.VectorStore.Kind)
}

// lazyVectors is a vector store that is connected later: ErrUnavailable until then.
type lazyVectors struct {
	mu sync.RWMutex
	s  vectorstore.Store
}

func (l *lazyVectors) set(s vectorstore.Store) {
	l.mu.Lock()
	l.s = s
	l.mu.Unlock()
}

func (l *lazyVectors) get() (vectorstore.Store, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.s == nil {
		return nil, fmt.Errorf("%w: not connected yet", vectorstore.ErrUnavailable)
	}
	return l.s, nil
}

func (l *lazyVectors) Upsert(ctx context.Context, points []vectorstore.Point) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.Upsert(ctx, points)
}

func (l *lazyVectors) DeleteDocument(ctx context.Context, kbID, documentID string) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.DeleteDocument(ctx, kbID, documentID)
}

func (l *lazyVectors) DeleteKB(ctx context.Context, kbID string) error {
	s, err := l.get()
	if err != nil {
		return err
	}
	return s.DeleteKB(ctx, kbID)
}

func (l *lazyVectors) Search(ctx context.Context, q vectorstore.Query) ([]vectorstore.Hit, error) {
	s, err := l.get()
	if err != nil {
		return nil, err
	}
	return s.Search(ctx, q)
}

func (l *lazyVectors) Close() error {
	if s, err := l.get(); err == nil {
		return s.Close()
	}
	return nil
}

// embedder is the embedding model named by rag.embedding_model (nil when none:
// retrieval is sparse-only).
func embedder(mgr *workers.Manager, model string) rag.EmbeddingModel {
	if model == "" {
		return nil
	}
	return rag.NewModelEmbedder(mgr, model)
}
