package rag

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/tokens"
	"github.com/ragway/ragway/gateway/vectorstore"
)

// ChunkWriter stores a document's chunks (*store.Store implements it).
type ChunkWriter interface {
	IndexDocument(ctx context.Context, userID, kbID, docID string, chunks []store.NewChunk) ([]store.Chunk, error)
	FailDocument(ctx context.Context, userID, kbID, docID, reason string) error
}

// Indexer turns a document's text into chunks, stores them in Postgres (the source of
// truth) and then in the vector index.
type Indexer struct {
	Store   ChunkWriter
	Vectors vectorstore.Store
	// Embedding, when set, gives every chunk a dense vector too. A chunk over the
	// model's limit per input (as the model counts its tokens) is split until it
	// fits; when the model cannot count, what is over its limit is truncated.
	Embedding EmbeddingModel
	Options   Options
	// Logger gets what is worth knowing of indexing (chunks truncated for the
	// embedding model); nil: slog.Default().
	Logger *slog.Logger

	warnedTruncate atomic.Bool // logged once that the model cannot count tokens
}

// Index chunks doc (document docID of userID's knowledge base kbID) by the knowledge
// base's own settings (kb: its chunk sizes over x.Options), stores the chunks and
// indexes them, and returns how many there are. On failure the document is marked
// failed with the reason, and the error is returned.
func (x *Indexer) Index(ctx context.Context, userID, kbID, docID string, doc Document, kb Settings) (int, error) {
	n, err := x.index(ctx, userID, kbID, docID, doc, kb.ChunkOptions(x.Options))
	if err != nil {
		// The reason is shown to the document's owner: what went wrong for them, never
		// the cause's text (a model's or the database's words), which err keeps for the log.
		reason := "the document could not be indexed; upload it again"
		var f *failure
		if errors.As(err, &f) {
			reason = f.reason
		}
		if ferr := x.Store.FailDocument(context.WithoutCancel(ctx), userID, kbID, docID, reason); ferr != nil {
			err = errors.Join(err, fmt.Errorf("mark the document failed: %w", ferr))
		}
		return 0, err
	}
	return n, nil
}

func (x *Indexer) index(ctx context.Context, userID, kbID, docID string, doc Document, opts Options) (int, error) {
	doc.Text = Normalize(doc.Text)
	chunks := Split(doc, opts)
	if len(chunks) == 0 {
		text := strings.TrimSpace(doc.Text)
		if text == "" {
			return 0, &failure{reason: "the document has no text", err: errors.New("no text")}
		}
		// Only headings (sections without bodies make no chunks): they are the text.
		chunks = []Chunk{{Heading: doc.Title, Text: text, Tokens: tokens.Estimate(text)}}
	}
	truncate := false
	if x.Embedding != nil {
		var err error
		if chunks, truncate, err = x.fit(ctx, chunks, opts); err != nil {
			return 0, &failure{reason: reasonEmbed, err: fmt.Errorf("fit the chunks to the embedding model: %w", err)}
		}
	}
	rows := make([]store.NewChunk, len(chunks))
	texts := make([]string, len(chunks))
	for i, c := range chunks {
		texts[i] = embedText(c) // the heading makes its words findable
		v := ChunkVector(c.Heading, c.Text)
		rows[i] = store.NewChunk{ID: store.NewChunkID(), Ordinal: c.Ordinal, Heading: c.Heading, Content: c.Text, TokenCount: c.Tokens,
			SparseIndices: v.Indices, SparseValues: v.Values, Analyzer: Analyzer}
	}
	if x.Embedding != nil {
		vecs, err := x.Embedding.Embed(ctx, texts, truncate)
		if err != nil {
			return 0, &failure{reason: reasonEmbed, err: fmt.Errorf("embed the chunks: %w", err)}
		}
		if len(vecs) != len(rows) {
			return 0, fmt.Errorf("embed the chunks: %d vectors for %d chunks", len(vecs), len(rows))
		}
		for i := range rows {
			rows[i].Dense = vecs[i]
		}
	}
	// Postgres and the vector index are written at once (the chunk ids are known): a
	// hit whose chunk is not committed yet is skipped by retrieval; should Postgres
	// fail, the index entries are removed again.
	points := make([]vectorstore.Point, len(rows))
	for i, r := range rows {
		points[i] = vectorstore.Point{ChunkID: r.ID, KBID: kbID, DocumentID: docID, Dense: r.Dense,
			Sparse: vectorstore.Sparse{Indices: r.SparseIndices, Values: r.SparseValues}}
	}
	indexed := make(chan error, 1)
	go func() { indexed <- x.Vectors.Upsert(ctx, points) }()
	stored, err := x.Store.IndexDocument(ctx, userID, kbID, docID, rows)
	ierr := <-indexed
	if err != nil {
		if ierr == nil {
			_ = x.Vectors.DeleteDocument(context.WithoutCancel(ctx), kbID, docID)
		}
		return 0, &failure{reason: "the document's chunks could not be stored; upload it again", err: fmt.Errorf("store the chunks: %w", err)}
	}
	if ierr != nil {
		return 0, &failure{reason: "the document's chunks were stored but not indexed; an operator can rebuild the index (ragway reindex)",
			err: fmt.Errorf("index the chunks (stored in the database: ragway reindex rebuilds the index): %w", ierr)}
	}
	return len(stored), nil
}

// reasonEmbed is the reason of a document the embedding model could not embed.
const reasonEmbed = "the embedding model could not embed the document; upload it again later"

// failure is an indexing error with the reason its document is marked failed with.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// Points converts stored chunks to vector-store points (also what rebuilds an index).
func Points(chunks []store.Chunk) []vectorstore.Point {
	out := make([]vectorstore.Point, len(chunks))
	for i, c := range chunks {
		out[i] = vectorstore.Point{ChunkID: c.ID, KBID: c.KBID, DocumentID: c.DocumentID, Dense: c.Dense,
			Sparse: vectorstore.Sparse{Indices: c.SparseIndices, Values: c.SparseValues}}
	}
	return out
}

// Rebuild loads every chunk of knowledge base kbID from Postgres into the vector
// index (after DeleteKB, so the index holds exactly what Postgres holds), and returns
// how many chunks it indexed. The next page is read from Postgres while a page is
// written to the index. Pages are of 1,000 chunks: the embedded store holds its lock
// while it adds a page, and larger pages load no faster (a million chunks, each
// page's upsert timed, three runs and two: pages of 1,000 23.1–23.7 s in all, 23 ms
// each on average, 112–176 ms at most; of 4,000 22.1–24.9 s, 88–100 ms, 284–856 ms).
func Rebuild(ctx context.Context, chunks ChunkScanner, vectors vectorstore.Store, kbID string) (int, error) {
	if err := vectors.DeleteKB(ctx, kbID); err != nil {
		return 0, fmt.Errorf("rebuild %s: %w", kbID, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan []vectorstore.Point, 2)
	read := make(chan error, 1)
	go func() {
		defer close(pages)
		read <- chunks.EachKBVectors(ctx, kbID, 1000, func(cs []store.Chunk) error {
			select {
			case pages <- Points(cs):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	n := 0
	var err error
	for page := range pages {
		if err == nil {
			if err = vectors.Upsert(ctx, page); err != nil {
				cancel() // the reader stops; its pages are drained
			} else {
				n += len(page)
			}
		}
	}
	if rerr := <-read; err == nil {
		err = rerr
	}
	if err != nil {
		return n, fmt.Errorf("rebuild %s: %w", kbID, err)
	}
	return n, nil
}

// ChunkScanner reads a knowledge base's chunks back in batches, without their text
// (what an index needs; *store.Store implements it).
type ChunkScanner interface {
	EachKBVectors(ctx context.Context, kbID string, batch int, fn func([]store.Chunk) error) error
}
