package knowledge

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/ingest"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
)

// Store is what the service needs of the repository (*store.Store implements it).
type Store interface {
	CreateKnowledgeBase(ctx context.Context, userID string, kb store.NewKnowledgeBase) (store.KnowledgeBase, error)
	ListKnowledgeBases(ctx context.Context, userID string) ([]store.KnowledgeBase, error)
	KnowledgeBase(ctx context.Context, userID, idOrName string) (store.KnowledgeBase, error)
	SetRetrieval(ctx context.Context, userID, id, retrieval string) error
	DeleteKnowledgeBase(ctx context.Context, userID, id string) error
	CreateDocument(ctx context.Context, userID, kbID string, d store.NewDocument) (store.Document, error)
	ListDocuments(ctx context.Context, userID, kbID string, p store.Page) ([]store.Document, error)
	Document(ctx context.Context, userID, kbID, id string) (store.Document, error)
	DeleteDocument(ctx context.Context, userID, kbID, id string) error
}

// Retriever finds the chunks of a knowledge base that answer a query (*rag.Retriever
// implements it).
type Retriever interface {
	Retrieve(ctx context.Context, req rag.Request) ([]rag.Source, error)
}

// ExtractFunc extracts an upload's text (ingest.Options.Extract in this process, or
// ingest.Options.Isolated in a child process).
type ExtractFunc func(ctx context.Context, o ingest.Options, name string, f ingest.Format, data []byte) (ingest.Extracted, error)

// Options configures a Service. Store, Indexer and Retriever are required.
type Options struct {
	Store Store
	// Indexer chunks, stores and indexes documents; its Vectors are also where a
	// deleted knowledge base's or document's index entries are deleted.
	Indexer *rag.Indexer
	// Retriever serves Search.
	Retriever Retriever
	// EmbeddingModel is rag.embedding_model, recorded on new knowledge bases.
	EmbeddingModel string
	// Reranking is set when the gateway has a rerank model (rag.rerank_model): a
	// knowledge base or a search may ask for it ("rerank": true) only then.
	Reranking bool
	// RerankCandidates is rag.rerank_candidates: the most hits a knowledge base or a
	// search may have the reranker score (the rerank model is shared).
	RerankCandidates int
	// TopK is the number of hits of a search that asks for none (rag.top_k; default 4).
	TopK int
	// MaxBytes is the largest document accepted, in bytes (<= 0: ingest's default).
	MaxBytes int64
	// Ingests bounds the documents indexed at once (default 1): ingestion runs
	// beside chat traffic on the same cores, never ahead of it.
	Ingests int
	// Extract extracts an upload's text (default: ingest.Options.Extract in this
	// process; the gateway isolates PDF parsing in a child process).
	Extract ExtractFunc
	// Context bounds background indexing (documents added without Upload.Wait): when
	// it ends, a document still waiting or being indexed is marked failed ("upload it
	// again") instead of being left pending (default: never ends).
	Context context.Context
	// Indexing, when set, counts the documents indexed in the background, so that the
	// owner of Context can wait for them before closing the database.
	Indexing *sync.WaitGroup
	// Logger gets what fails in the background; nil: slog.Default().
	Logger *slog.Logger
}

// Service manages users' knowledge bases and documents, indexes uploads and searches.
// Every method acts for one user: another user's knowledge bases and documents do not
// exist for it. Its methods are safe for concurrent use.
type Service struct {
	opts Options
	log  *slog.Logger
	// ingests holds a token per document being indexed (Options.Ingests).
	ingests chan struct{}
}

// New returns a Service; it panics without Store, Indexer or Retriever.
func New(o Options) *Service {
	if o.Store == nil || o.Indexer == nil || o.Retriever == nil {
		panic("knowledge: Options.Store, Indexer and Retriever are required")
	}
	if o.TopK <= 0 {
		o.TopK = 4
	}
	if o.Ingests <= 0 {
		o.Ingests = 1
	}
	if o.Extract == nil {
		o.Extract = func(ctx context.Context, x ingest.Options, name string, f ingest.Format, data []byte) (ingest.Extracted, error) {
			return x.Extract(ctx, name, f, data)
		}
	}
	if o.Context == nil {
		o.Context = context.Background()
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Service{opts: o, log: log, ingests: make(chan struct{}, o.Ingests)}
}

// Base is a user's knowledge base: a named collection of documents.
type Base struct {
	ID          string
	Name        string
	Description string
	// EmbeddingModel is the model its chunks are embedded with ("": none, lexical
	// retrieval only).
	EmbeddingModel string
	// Retrieval is its own retrieval settings (over the gateway's).
	Retrieval Settings
	CreatedAt time.Time
}

// Settings are retrieval settings (rag.Settings): a knowledge base's own, or a
// search's.
type Settings = rag.Settings

// SettingsError names a setting that is not valid ("retrieval.fusion").
type SettingsError = rag.SettingsError

// ParseSettings reads settings from a JSON object and checks them; error fields
// start with prefix.
func ParseSettings(data []byte, prefix string) (Settings, error) {
	return rag.ParseSettings(data, prefix)
}

// NewBase is what CreateBase creates.
type NewBase struct {
	// Name is unique among the user's knowledge bases.
	Name        string
	Description string
	// Retrieval is its own retrieval settings (checked: Settings.Check).
	Retrieval Settings
}

func (s *Service) toBase(k store.KnowledgeBase) Base {
	return Base{ID: k.ID, Name: k.Name, Description: k.Description, EmbeddingModel: k.EmbeddingModel,
		Retrieval: rag.StoredSettings(k, s.log), CreatedAt: k.CreatedAt}
}

// CreateBase creates a knowledge base, recording the gateway's embedding model on it.
// A name the user already has is ErrConflict.
func (s *Service) CreateBase(ctx context.Context, userID string, b NewBase) (Base, error) {
	if err := s.checkSettings(b.Retrieval); err != nil {
		return Base{}, err
	}
	k, err := s.opts.Store.CreateKnowledgeBase(ctx, userID,
		store.NewKnowledgeBase{Name: b.Name, Description: b.Description, EmbeddingModel: s.opts.EmbeddingModel,
			Retrieval: b.Retrieval.String()})
	if err != nil {
		return Base{}, fmt.Errorf("knowledge: create knowledge base %q: %w", b.Name, err)
	}
	return s.toBase(k), nil
}

// checkSettings checks a knowledge base's own settings: valid, and asking only for
// what this gateway has.
func (s *Service) checkSettings(set Settings) error {
	if err := s.checkReranking(set); err != nil {
		return err
	}
	if err := set.Check("retrieval"); err != nil {
		return err
	}
	// An overlap alone is checked against the gateway's chunk size.
	if tokens := s.opts.Indexer.Options.ChunkTokens; set.ChunkOverlap != nil && set.ChunkTokens == 0 && tokens > 0 && *set.ChunkOverlap > tokens/2 {
		return &SettingsError{Field: "retrieval.chunk_overlap",
			Reason: fmt.Sprintf("must be at most half of the gateway's chunk size (%d), not %d", tokens/2, *set.ChunkOverlap)}
	}
	return nil
}

// checkReranking refuses reranking settings the gateway cannot honour: reranking
// without a rerank model, or more candidates than rag.rerank_candidates.
func (s *Service) checkReranking(set Settings) error {
	if set.Rerank != nil && *set.Rerank && !s.opts.Reranking {
		return &SettingsError{Field: "retrieval.rerank", Reason: "this gateway has no rerank model (rag.rerank_model)"}
	}
	if limit := s.opts.RerankCandidates; limit > 0 && set.RerankCandidates > limit {
		return &SettingsError{Field: "retrieval.rerank_candidates",
			Reason: fmt.Sprintf("at most %d on this gateway (rag.rerank_candidates), not %d", limit, set.RerankCandidates)}
	}
	return nil
}

// SetSettings replaces the user's knowledge base id's own retrieval settings: what
// acts at search time from the next search, chunk sizes for documents indexed from now
// on (documents indexed before keep their chunks until uploaded again).
func (s *Service) SetSettings(ctx context.Context, userID, id string, set Settings) (Base, error) {
	if err := s.checkSettings(set); err != nil {
		return Base{}, err
	}
	if err := s.opts.Store.SetRetrieval(ctx, userID, id, set.String()); err != nil {
		return Base{}, fmt.Errorf("knowledge: set the retrieval settings of knowledge base %s: %w", id, err)
	}
	return s.Base(ctx, userID, id)
}

// Bases returns the user's knowledge bases.
func (s *Service) Bases(ctx context.Context, userID string) ([]Base, error) {
	kbs, err := s.opts.Store.ListKnowledgeBases(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("knowledge: list knowledge bases: %w", err)
	}
	out := make([]Base, 0, len(kbs))
	for _, k := range kbs {
		out = append(out, s.toBase(k))
	}
	return out, nil
}

// Base returns the user's knowledge base with that id or name, or ErrNotFound.
func (s *Service) Base(ctx context.Context, userID, idOrName string) (Base, error) {
	k, err := s.opts.Store.KnowledgeBase(ctx, userID, idOrName)
	if err != nil {
		return Base{}, fmt.Errorf("knowledge: knowledge base %q: %w", idOrName, err)
	}
	return s.toBase(k), nil
}

// DeleteBase deletes the user's knowledge base id with its documents (ErrNotFound when
// there is none), then its index entries: an index that misses the delete is logged,
// not an error (see the package doc).
func (s *Service) DeleteBase(ctx context.Context, userID, id string) error {
	if err := s.opts.Store.DeleteKnowledgeBase(ctx, userID, id); err != nil {
		return fmt.Errorf("knowledge: delete knowledge base %s: %w", id, err)
	}
	if err := s.opts.Indexer.Vectors.DeleteKB(ctx, id); err != nil {
		s.log.Warn("knowledge base deleted, its index entries not", "kb", id, "error", err)
	}
	return nil
}
