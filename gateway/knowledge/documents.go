package knowledge

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/ragway/ragway/gateway/ingest"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/text"
)

// Document statuses.
const (
	StatusPending = store.DocPending // stored, not yet indexed
	StatusIndexed = store.DocIndexed
	StatusFailed  = store.DocFailed // Document.Error says why
)

// Document is a file or text added to a knowledge base.
type Document struct {
	ID     string
	BaseID string
	Title  string
	// Source is the uploaded file's name (or the source given with a text).
	Source   string
	MimeType string
	SHA256   []byte
	Bytes    int64
	// Status is StatusPending, StatusIndexed or StatusFailed.
	Status string
	// Error is why indexing failed, for the document's owner.
	Error      string
	ChunkCount int
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

func toDocument(d store.Document) Document {
	return Document{ID: d.ID, BaseID: d.KBID, Title: d.Title, Source: d.Source, MimeType: d.MimeType, SHA256: d.SHA256,
		Bytes: d.Bytes, Status: d.Status, Error: d.Error, ChunkCount: d.ChunkCount, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt}
}

// Upload is a document to add to a knowledge base.
type Upload struct {
	// Name is the file's name (or the source given with a text): it helps detect the
	// format, and is stored as the document's source.
	Name string
	// Title is the document's title; empty: the title found in the file, if any.
	Title string
	// ContentType is the type the client declared, if any (it helps detect the format).
	ContentType string
	Data        []byte
	// Wait indexes the document before AddDocument returns; otherwise it is indexed
	// in the background.
	Wait bool
}

// AddDocument adds u to the user's knowledge base kb (as Base resolved it): its format
// detected, its text extracted, stored pending, then indexed by the knowledge base's
// chunk sizes (see Upload.Wait). It returns the document as
// stored: pending, or after indexing when waited for (indexed, or failed with a
// reason). An upload refused for what it is is an [UploadError]; one the server could
// not extract, [ErrExtract]; the same content twice in one knowledge base, a
// [DuplicateError] naming the existing document.
func (s *Service) AddDocument(ctx context.Context, userID string, kb Base, u Upload) (Document, error) {
	kbID, set := kb.ID, kb.Retrieval
	format, err := ingest.Detect(u.Name, u.ContentType, u.Data)
	if err != nil {
		return Document{}, uploadError(u.Name, err)
	}
	x, err := s.opts.Extract(ctx, ingest.Options{MaxBytes: s.opts.MaxBytes}, u.Name, format, u.Data)
	if err != nil {
		return Document{}, uploadError(u.Name, err)
	}
	title := u.Title
	if title == "" {
		// A title found in the file is the file's text: made storable, not refused.
		title = text.Clean(x.Title)
	}
	d, err := s.opts.Store.CreateDocument(ctx, userID, kbID, store.NewDocument{
		Title: title, Source: u.Name, MimeType: string(format), SHA256: ingest.SHA256(u.Data), Bytes: int64(len(u.Data))})
	var dup *store.DuplicateError
	if errors.As(err, &dup) {
		return Document{}, &DuplicateError{Existing: toDocument(dup.Existing)}
	}
	if err != nil {
		return Document{}, fmt.Errorf("knowledge: store document %q in knowledge base %s: %w", u.Name, kbID, err)
	}
	doc := rag.Document{Title: title, Text: x.Text, Markdown: x.Markdown}
	if u.Wait {
		s.index(ctx, userID, kbID, d.ID, doc, set)
		indexed, err := s.opts.Store.Document(ctx, userID, kbID, d.ID)
		if err != nil {
			return Document{}, fmt.Errorf("knowledge: read document %s after indexing it: %w", d.ID, err)
		}
		return toDocument(indexed), nil
	}
	s.indexInBackground(userID, kbID, d.ID, doc, set)
	return toDocument(d), nil
}

// indexInBackground indexes a document under Options.Context, counted by
// Options.Indexing.
func (s *Service) indexInBackground(userID, kbID, docID string, doc rag.Document, set Settings) {
	bg := s.opts.Context
	if wg := s.opts.Indexing; wg != nil {
		wg.Add(1)
	}
	go func() {
		if wg := s.opts.Indexing; wg != nil {
			defer wg.Done()
		}
		defer func() {
			// A bug in indexing fails the document, not the gateway.
			if r := recover(); r != nil {
				s.log.Error("panic indexing a document", "kb", kbID, "document", docID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				_ = s.opts.Indexer.Store.FailDocument(context.WithoutCancel(bg), userID, kbID, docID, "the document could not be indexed; upload it again")
			}
		}()
		s.index(bg, userID, kbID, docID, doc, set)
	}()
}

// index indexes a document by its knowledge base's settings, Options.Ingests at a
// time. Failures are the document's (marked failed with a reason) and the log's.
func (s *Service) index(ctx context.Context, userID, kbID, docID string, doc rag.Document, set Settings) {
	acquired := false
	if ctx.Err() == nil {
		select {
		case s.ingests <- struct{}{}:
			acquired = true
		case <-ctx.Done():
		}
	}
	if !acquired {
		// Never left pending: the gateway stops before it could index it.
		if err := s.opts.Indexer.Store.FailDocument(context.WithoutCancel(ctx), userID, kbID, docID,
			"the gateway stopped before indexing the document; upload it again"); err != nil {
			s.log.Warn("document left pending", "kb", kbID, "document", docID, "error", err)
		}
		return
	}
	defer func() { <-s.ingests }()
	start := time.Now()
	// Once started, a document is indexed whole (shutdown waits for it, within its
	// grace period): cancelling it halfway would leave chunks in Postgres and not in
	// the index.
	n, err := s.opts.Indexer.Index(context.WithoutCancel(ctx), userID, kbID, docID, doc, set)
	if err != nil {
		s.log.Warn("document not indexed", "kb", kbID, "document", docID, "error", err)
		return
	}
	s.log.Debug("document indexed", "kb", kbID, "document", docID, "chunks", n, "took", time.Since(start))
}

// MaxPageLimit is the most documents (or other rows) one page lists.
const MaxPageLimit = store.MaxPageLimit

// Page bounds a listing: at most Limit rows (0: the default of 50; at most
// MaxPageLimit) after the row whose id is After (empty: from the start).
type Page struct {
	Limit int
	After string
}

// DocumentPage is one page of a knowledge base's documents.
type DocumentPage struct {
	Documents []Document
	// HasMore reports that the page is full: more may follow.
	HasMore bool
}

// Documents lists a page of the user's knowledge base kbID's documents. An After that
// is not one of them is ErrNotFound.
func (s *Service) Documents(ctx context.Context, userID, kbID string, p Page) (DocumentPage, error) {
	sp := store.Page(p)
	docs, err := s.opts.Store.ListDocuments(ctx, userID, kbID, sp)
	if err != nil {
		return DocumentPage{}, fmt.Errorf("knowledge: list documents of knowledge base %s: %w", kbID, err)
	}
	out := DocumentPage{Documents: make([]Document, 0, len(docs)), HasMore: len(docs) == sp.Size()}
	for _, d := range docs {
		out.Documents = append(out.Documents, toDocument(d))
	}
	return out, nil
}

// Document returns document id of the user's knowledge base kbID, or ErrNotFound.
func (s *Service) Document(ctx context.Context, userID, kbID, id string) (Document, error) {
	d, err := s.opts.Store.Document(ctx, userID, kbID, id)
	if err != nil {
		return Document{}, fmt.Errorf("knowledge: document %s of knowledge base %s: %w", id, kbID, err)
	}
	return toDocument(d), nil
}

// DeleteDocument deletes document id of the user's knowledge base kbID with its chunks
// (ErrNotFound when there is none), then its index entries: an index that misses the
// delete is logged, not an error (see the package doc).
func (s *Service) DeleteDocument(ctx context.Context, userID, kbID, id string) error {
	if err := s.opts.Store.DeleteDocument(ctx, userID, kbID, id); err != nil {
		return fmt.Errorf("knowledge: delete document %s of knowledge base %s: %w", id, kbID, err)
	}
	if err := s.opts.Indexer.Vectors.DeleteDocument(ctx, kbID, id); err != nil {
		s.log.Warn("document deleted, its index entries not", "kb", kbID, "document", id, "error", err)
	}
	return nil
}
