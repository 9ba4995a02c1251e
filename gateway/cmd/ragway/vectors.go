package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// openVectors opens the vector store the config names.
func openVectors(cfg *config.Config) (vectorstore.Store, error) {
	switch cfg.VectorStore.Kind {
	case config.VectorStoreEmbedded, "":
		return embedded.New(), nil
	}
	return nil, fmt.Errorf("vector_store.kind %q is not available in this build", cfg.VectorStore.Kind)
}

// loadIndex fills the embedded index from Postgres (the source of truth) at start,
// knowledge base by knowledge base, retrying while the database is unreachable. Until
// a knowledge base is loaded its retrievals find nothing.
func loadIndex(ctx context.Context, st *store.Store, vectors vectorstore.Store, log *slog.Logger) {
	for {
		ids, err := st.KnowledgeBaseIDs(ctx)
		if err == nil {
			start, chunks := time.Now(), 0
			for _, id := range ids {
				n, err := rag.Rebuild(ctx, st, vectors, id)
				if err != nil {
					log.Warn("loading the vector index", "kb", id, "error", err)
				}
				chunks += n
			}
			log.Info("vector index loaded from the database", "knowledge_bases", len(ids), "chunks", chunks, "took", time.Since(start).Round(time.Millisecond))
			return
		}
		log.Warn("loading the vector index: the database is unreachable, retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// embedder embeds texts with the embedding model named by rag.embedding_model (nil
// when none: retrieval is sparse-only).
func embedder(mgr *workers.Manager, model string) rag.Embedder {
	if model == "" {
		return nil
	}
	return func(ctx context.Context, texts []string) ([][]float32, error) {
		resp, err := mgr.Embed(ctx, model, sdk.EmbedRequest{Input: texts})
		if err != nil {
			return nil, err
		}
		return resp.Embeddings, nil
	}
}
