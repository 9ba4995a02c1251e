package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
)

// reindex runs `ragway reindex`: it rebuilds a knowledge base's entries in the
// configured vector store from Postgres, the source of truth.
func reindex(args []string, stdout, stderr io.Writer) error {
	c := newCommand("reindex", "--kb NAME|ID [--user NAME] [-c FILE]")
	cfgPath := c.fs.String("c", "", "config file (YAML) naming database_url and vector_store")
	kb := c.fs.String("kb", "", "the knowledge base: its id, or its name with --user; required")
	user := c.fs.String("user", "", "the user whose knowledge base --kb names")
	if err := c.parseFlags(args, stdout, stderr); err != nil {
		return err
	}
	if err := c.required("kb", kb, stderr); err != nil {
		return err
	}
	*user = strings.TrimSpace(*user)
	switch {
	case *user == "" && !store.IsID(*kb):
		return fmt.Errorf("reindex: --kb %s is a name, and names are per user: add --user NAME, or give the knowledge base's id", *kb)
	}
	cfg, err := config.Load(*cfgPath, os.Environ())
	if err != nil {
		return err
	}
	if cfg.VectorStore.Kind == config.VectorStoreEmbedded || cfg.VectorStore.Kind == "" {
		fmt.Fprintln(stdout, "vector_store is embedded: every gateway rebuilds its index from the database at start; nothing to do")
		return nil
	}

	return withStore(*cfgPath, true, func(ctx context.Context, st *store.Store) error {
		k, err := resolveKB(ctx, st, *user, *kb)
		if err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		// The CLI's own errors say what is wrong; openVectors's log is for the gateway.
		vectors, _, err := openVectors(ctx, cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			return fmt.Errorf("reindex: %w", err)
		}
		defer vectors.Close()
		if l, ok := vectors.(*lazyVectors); ok {
			if _, err := l.get(); err != nil {
				return fmt.Errorf("reindex: cannot reach Qdrant at %s (vector_store.url): is it running?", cfg.VectorStore.URL)
			}
		}
		start := time.Now()
		n, err := rag.Rebuild(ctx, st, vectors, k.id)
		if err != nil {
			return fmt.Errorf("reindex %s: %d chunks indexed before: %w", k, n, err)
		}
		fmt.Fprintf(stdout, "reindexed %s: %d chunks into %s in %s\n", k, n, cfg.VectorStore.Kind, formatElapsed(time.Since(start)))
		return nil
	})
}

// kbRef names a knowledge base for messages.
type kbRef struct{ id, name, user string }

func (k kbRef) String() string {
	if k.name == "" {
		return "knowledge base " + k.id
	}
	return fmt.Sprintf("knowledge base %s (%s) of user %s", k.name, k.id, k.user)
}

// resolveKB finds the knowledge base kb: user's (by name or id) when user is set,
// else any user's by id.
func resolveKB(ctx context.Context, st *store.Store, user, kb string) (kbRef, error) {
	if user == "" {
		ids, err := st.KnowledgeBaseIDs(ctx)
		if err != nil {
			return kbRef{}, err
		}
		i := slices.IndexFunc(ids, func(id string) bool { return strings.EqualFold(id, kb) })
		if i < 0 {
			return kbRef{}, fmt.Errorf("no knowledge base has the id %s", kb)
		}
		return kbRef{id: ids[i]}, nil
	}
	u, err := st.UserByName(ctx, user)
	if errors.Is(err, store.ErrNotFound) {
		return kbRef{}, fmt.Errorf("no user named %q", user)
	}
	if err != nil {
		return kbRef{}, err
	}
	k, err := st.KnowledgeBase(ctx, u.ID, kb)
	if errors.Is(err, store.ErrNotFound) {
		return kbRef{}, fmt.Errorf("user %s has no knowledge base %q", user, kb)
	}
	if err != nil {
		return kbRef{}, err
	}
	return kbRef{id: k.ID, name: k.Name, user: user}, nil
}
