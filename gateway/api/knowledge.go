package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/ingest"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
)

// KnowledgeStore is what the knowledge-base routes need from the repository
// (*store.Store implements it).
type KnowledgeStore interface {
	CreateKnowledgeBase(ctx context.Context, userID string, kb store.NewKnowledgeBase) (store.KnowledgeBase, error)
	ListKnowledgeBases(ctx context.Context, userID string) ([]store.KnowledgeBase, error)
	KnowledgeBase(ctx context.Context, userID, idOrName string) (store.KnowledgeBase, error)
	DeleteKnowledgeBase(ctx context.Context, userID, id string) error
	CreateDocument(ctx context.Context, userID, kbID string, d store.NewDocument) (store.Document, error)
	ListDocuments(ctx context.Context, userID, kbID string, p store.Page) ([]store.Document, error)
	Document(ctx context.Context, userID, kbID, id string) (store.Document, error)
	DeleteDocument(ctx context.Context, userID, kbID, id string) error
}

// Knowledge configures the knowledge-base routes.
type Knowledge struct {
	Store   KnowledgeStore
	Indexer *rag.Indexer
	// Ingests bounds the documents indexed at once (default 1): ingestion runs
	// beside chat traffic on the same cores, never ahead of it.
	Ingests int
	// Extract extracts an upload's text (default: ingest.Options.Extract in this
	// process; the gateway isolates PDF parsing in a child process).
	Extract func(ctx context.Context, o ingest.Options, name string, f ingest.Format, data []byte) (ingest.Extracted, error)
	// Context bounds background indexing (documents uploaded without ?wait=true):
	// when it ends, a document still waiting or being indexed is marked failed
	// ("upload it again") instead of being left pending (default: never ends).
	Context context.Context
	// Indexing, when set, counts the documents indexed in the background, so that
	// the owner of Context can wait for them before closing the database.
	Indexing *sync.WaitGroup
}

type kbJSON struct {
	ID             string `json:"id"`
	Object         string `json:"object"`
	Name           string `json:"name"`
	Description    string `json:"description"`
	EmbeddingModel string `json:"embedding_model,omitempty"`
	CreatedAt      int64  `json:"created_at"`
}

type documentJSON struct {
	ID         string `json:"id"`
	Object     string `json:"object"`
	KBID       string `json:"knowledge_base_id"`
	Title      string `json:"title"`
	Source     string `json:"source,omitempty"`
	MimeType   string `json:"mime_type,omitempty"`
	SHA256     string `json:"sha256"`
	Bytes      int64  `json:"bytes"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
	ChunkCount int    `json:"chunk_count"`
	CreatedAt  int64  `json:"created_at"`
	UpdatedAt  int64  `json:"updated_at"`
}

func toKBJSON(k store.KnowledgeBase) kbJSON {
	return kbJSON{ID: k.ID, Object: "knowledge_base", Name: k.Name, Description: k.Description, EmbeddingModel: k.EmbeddingModel, CreatedAt: k.CreatedAt.Unix()}
}

func toDocumentJSON(d store.Document) documentJSON {
	return documentJSON{ID: d.ID, Object: "document", KBID: d.KBID, Title: d.Title, Source: d.Source, MimeType: d.MimeType,
		SHA256: fmt.Sprintf("%x", d.SHA256), Bytes: d.Bytes, Status: d.Status, Error: d.Error, ChunkCount: d.ChunkCount,
		CreatedAt: d.CreatedAt.Unix(), UpdatedAt: d.UpdatedAt.Unix()}
}

// MaxKBNameRunes is the longest knowledge-base name, in characters.
const MaxKBNameRunes = 200

// checkKBName checks a knowledge-base name: 1 to 200 characters of UTF-8 text without
// control characters, and not "." or ".." (which URL paths resolve away). Any other
// character is allowed; clients percent-encode the name in paths.
func checkKBName(name string) *oai.Error {
	bad := func(why string) *oai.Error {
		return oai.Invalid("name", oai.CodeInvalidValue, "invalid 'name': %s", why)
	}
	switch {
	case !utf8.ValidString(name):
		return bad("it must be UTF-8 text")
	case utf8.RuneCountInString(name) > MaxKBNameRunes:
		return bad(fmt.Sprintf("it is longer than %d characters", MaxKBNameRunes))
	case name == "." || name == "..":
		return bad("'.' and '..' cannot be used in URLs")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return bad("it must not contain control characters (NUL, newlines, tabs …)")
	}
	return nil
}

// knowledgeRoutes mounts /v1/knowledge-bases: managing knowledge bases and documents
// needs the ingest scope, searching needs chat.
func (s *server) knowledgeRoutes(app *fiber.App) {
	k := s.opts.Knowledge
	if k.Ingests <= 0 {
		k.Ingests = 1
	}
	s.ingests = make(chan struct{}, k.Ingests)
	ing, chat := s.requireScope(store.ScopeIngest), s.requireScope(store.ScopeChat)
	app.Post("/v1/knowledge-bases", ing, s.createKB)
	app.Get("/v1/knowledge-bases", ing, s.listKBs)
	app.Get("/v1/knowledge-bases/:kb", ing, s.getKB)
	app.Delete("/v1/knowledge-bases/:kb", ing, s.deleteKB)
	app.Post("/v1/knowledge-bases/:kb/documents", ing, s.addDocument)
	app.Get("/v1/knowledge-bases/:kb/documents", ing, s.listDocuments)
	app.Get("/v1/knowledge-bases/:kb/documents/:id", ing, s.getDocument)
	app.Delete("/v1/knowledge-bases/:kb/documents/:id", ing, s.deleteDocument)
	app.Post("/v1/knowledge-bases/:kb/search", chat, s.searchKB)
}

// kb resolves the :kb parameter (an id or a percent-encoded name) among the caller's
// knowledge bases.
func (s *server) kb(c *fiber.Ctx) (store.KnowledgeBase, error) {
	name, err := url.PathUnescape(c.Params("kb"))
	if err != nil {
		return store.KnowledgeBase{}, oai.Invalid("kb", oai.CodeInvalidValue, "the knowledge base in the path is not valid percent-encoding")
	}
	if e := oai.CheckText("kb", name); e != nil {
		// No knowledge base can have such a name (nor can the database look it up).
		return store.KnowledgeBase{}, e
	}
	k, err := s.opts.Knowledge.Store.KnowledgeBase(c.UserContext(), principalOf(c).UserID, name)
	if errors.Is(err, store.ErrNotFound) {
		return k, oai.NoKnowledgeBase(name, "")
	}
	return k, err
}

func (s *server) createKB(c *fiber.Ctx) error {
	var req struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	if req.Name == "" {
		return oai.Missing("name")
	}
	if err := checkKBName(req.Name); err != nil {
		return err
	}
	if e := oai.CheckText("description", req.Description); e != nil {
		return e
	}
	k, err := s.opts.Knowledge.Store.CreateKnowledgeBase(c.UserContext(), principalOf(c).UserID,
		store.NewKnowledgeBase{Name: req.Name, Description: req.Description, EmbeddingModel: s.opts.EmbeddingModel})
	if errors.Is(err, store.ErrConflict) {
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: oai.CodeConflict, Param: "name",
			Message: fmt.Sprintf("you already have a knowledge base named '%s'", req.Name)}
	}
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(toKBJSON(k))
}

func (s *server) listKBs(c *fiber.Ctx) error {
	kbs, err := s.opts.Knowledge.Store.ListKnowledgeBases(c.UserContext(), principalOf(c).UserID)
	if err != nil {
		return err
	}
	return c.JSON(list(kbs, toKBJSON))
}

func (s *server) getKB(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	return c.JSON(toKBJSON(k))
}

func (s *server) deleteKB(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	if err := s.opts.Knowledge.Store.DeleteKnowledgeBase(c.UserContext(), principalOf(c).UserID, k.ID); err != nil {
		return notFound(err, "knowledge base", k.ID)
	}
	// Postgres is the source of truth: an index that misses the delete is corrected
	// by `ragway reindex` (and its hits are never shown: their chunks are gone).
	if err := s.opts.Knowledge.Indexer.Vectors.DeleteKB(c.UserContext(), k.ID); err != nil {
		s.log.Warn("knowledge base deleted, its index entries not", "kb", k.ID, "error", err)
	}
	return c.JSON(fiber.Map{"id": k.ID, "object": "knowledge_base.deleted", "deleted": true})
}

// addDocument serves POST /v1/knowledge-bases/{kb}/documents: a multipart upload
// (field "file", optional "title") or JSON {"text", "title"?, "format"?: text,
// markdown or html}. The document is stored as pending and indexed in the background
// (?wait=true: before the answer, 201; else 202). The same content twice in one
// knowledge base is 409, naming the existing document.
func (s *server) addDocument(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	name, title, contentType, data, aerr := documentBody(c)
	if aerr != nil {
		return aerr
	}
	format, err := ingest.Detect(name, contentType, data)
	if err != nil {
		return ingestError(err)
	}
	extract := s.opts.Knowledge.Extract
	if extract == nil {
		extract = func(ctx context.Context, o ingest.Options, name string, f ingest.Format, data []byte) (ingest.Extracted, error) {
			return o.Extract(ctx, name, f, data)
		}
	}
	x, err := extract(c.UserContext(), ingest.Options{MaxBytes: int64(s.opts.MaxBodyBytes)}, name, format, data)
	if err != nil {
		return ingestError(err)
	}
	if title == "" {
		// A title found in the file is the file's text: made storable, not refused.
		title = oai.CleanText(x.Title)
	}
	uid := principalOf(c).UserID
	d, err := s.opts.Knowledge.Store.CreateDocument(c.UserContext(), uid, k.ID, store.NewDocument{
		Title: title, Source: name, MimeType: string(format), SHA256: ingest.SHA256(data), Bytes: int64(len(data))})
	var dup *store.DuplicateError
	if errors.As(err, &dup) {
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: "duplicate_document",
			Message: fmt.Sprintf("this knowledge base already has this content: document '%s' (%s)", dup.Existing.ID, dup.Existing.Title)}
	}
	if err != nil {
		return err
	}
	doc := rag.Document{Title: title, Text: x.Text, Markdown: x.Markdown}
	if c.QueryBool("wait") {
		s.index(c.UserContext(), uid, k.ID, d.ID, doc)
		if d, err = s.opts.Knowledge.Store.Document(c.UserContext(), uid, k.ID, d.ID); err != nil {
			return err
		}
		return c.Status(fiber.StatusCreated).JSON(toDocumentJSON(d))
	}
	bg := s.opts.Knowledge.Context
	if bg == nil {
		bg = context.Background()
	}
	if wg := s.opts.Knowledge.Indexing; wg != nil {
		wg.Add(1)
	}
	go func() {
		if wg := s.opts.Knowledge.Indexing; wg != nil {
			defer wg.Done()
		}
		defer func() {
			// A bug in indexing fails the document, not the gateway.
			if r := recover(); r != nil {
				s.log.Error("panic indexing a document", "kb", k.ID, "document", d.ID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				_ = s.opts.Knowledge.Indexer.Store.FailDocument(context.WithoutCancel(bg), uid, k.ID, d.ID, "the document could not be indexed; upload it again")
			}
		}()
		s.index(bg, uid, k.ID, d.ID, doc)
	}()
	return c.Status(fiber.StatusAccepted).JSON(toDocumentJSON(d))
}

// index indexes a document, one (Knowledge.Ingests) at a time.
func (s *server) index(ctx context.Context, userID, kbID, docID string, doc rag.Document) {
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
		if err := s.opts.Knowledge.Indexer.Store.FailDocument(context.WithoutCancel(ctx), userID, kbID, docID,
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
	n, err := s.opts.Knowledge.Indexer.Index(context.WithoutCancel(ctx), userID, kbID, docID, doc)
	if err != nil {
		s.log.Warn("document not indexed", "kb", kbID, "document", docID, "error", err)
		return
	}
	s.log.Debug("document indexed", "kb", kbID, "document", docID, "chunks", n, "took", time.Since(start))
}

// documentBody reads an upload: multipart (field "file") or JSON.
func documentBody(c *fiber.Ctx) (name, title, contentType string, data []byte, aerr *oai.Error) {
	if fh, err := c.FormFile("file"); err == nil {
		f, err := fh.Open()
		if err != nil {
			return "", "", "", nil, oai.Invalid("file", oai.CodeInvalidValue, "cannot read the uploaded file")
		}
		defer f.Close()
		data, err = io.ReadAll(f)
		if err != nil {
			return "", "", "", nil, oai.Invalid("file", oai.CodeInvalidValue, "cannot read the uploaded file")
		}
		title := c.FormValue("title")
		if e := oai.CheckText("file", fh.Filename); e != nil {
			e.Message = "invalid file name: " + strings.TrimPrefix(e.Message, "invalid value for 'file': ")
			return "", "", "", nil, e
		}
		if e := oai.CheckText("title", title); e != nil {
			return "", "", "", nil, e
		}
		return fh.Filename, title, fh.Header.Get("Content-Type"), data, nil
	}
	var req struct {
		Title  string  `json:"title"`
		Text   *string `json:"text"`
		Format string  `json:"format"`
		Source string  `json:"source"`
	}
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return "", "", "", nil, err
	}
	if req.Text == nil {
		return "", "", "", nil, oai.Missing("text")
	}
	for _, f := range []struct{ param, v string }{{"title", req.Title}, {"source", req.Source}, {"text", *req.Text}} {
		if e := oai.CheckText(f.param, f.v); e != nil {
			return "", "", "", nil, e
		}
	}
	types := map[string]string{"": "text/plain", "text": "text/plain", "markdown": "text/markdown", "html": "text/html"}
	ct, ok := types[req.Format]
	if !ok {
		return "", "", "", nil, oai.Invalid("format", oai.CodeInvalidValue, "invalid value for 'format': '%s'; use text, markdown or html", req.Format)
	}
	name = req.Source
	if name == "" {
		name = req.Title
	}
	return name, req.Title, ct + "; charset=utf-8", []byte(*req.Text), nil
}

// ingestError maps the ingest package's errors to API errors: its sentinels describe
// the upload (their messages name the file and what is wrong with it); anything else
// is the server's fault (a child process that could not start), a 500 without details.
func ingestError(err error) error {
	e := &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: oai.CodeInvalidValue, Param: "file", Message: err.Error()}
	switch {
	case errors.Is(err, ingest.ErrUnsupportedFormat):
		e.Status, e.Code = http.StatusUnsupportedMediaType, "unsupported_format"
	case errors.Is(err, ingest.ErrTooLarge):
		e.Status, e.Code, e.Param = http.StatusRequestEntityTooLarge, oai.CodeTooLarge, ""
	case errors.Is(err, ingest.ErrInvalidText), errors.Is(err, ingest.ErrInvalidPDF):
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		return &oai.Error{Status: http.StatusInternalServerError, Type: oai.TypeServer, Code: oai.CodeInternal,
			Message: "the server could not extract the document's text; try again later", Cause: err}
	}
	return e
}

func (s *server) listDocuments(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	p, aerr := pageOf(c)
	if aerr != nil {
		return aerr
	}
	docs, err := s.opts.Knowledge.Store.ListDocuments(c.UserContext(), principalOf(c).UserID, k.ID, p)
	if err != nil {
		return notFound(err, "document", p.After)
	}
	return c.JSON(pageList(docs, p, toDocumentJSON))
}

func (s *server) getDocument(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	d, err := s.opts.Knowledge.Store.Document(c.UserContext(), principalOf(c).UserID, k.ID, c.Params("id"))
	if err != nil {
		return notFound(err, "document", c.Params("id"))
	}
	return c.JSON(toDocumentJSON(d))
}

func (s *server) deleteDocument(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	id := c.Params("id")
	if err := s.opts.Knowledge.Store.DeleteDocument(c.UserContext(), principalOf(c).UserID, k.ID, id); err != nil {
		return notFound(err, "document", id)
	}
	if err := s.opts.Knowledge.Indexer.Vectors.DeleteDocument(c.UserContext(), k.ID, id); err != nil {
		s.log.Warn("document deleted, its index entries not", "kb", k.ID, "document", id, "error", err)
	}
	return c.JSON(fiber.Map{"id": id, "object": "document.deleted", "deleted": true})
}

// searchKB serves POST /v1/knowledge-bases/{kb}/search {"query", "top_k"?, "filter"?:
// {"document_ids": [...]}}: the chunks that answer the query, best first.
func (s *server) searchKB(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	var req struct {
		Query  string `json:"query"`
		TopK   int    `json:"top_k"`
		Filter *struct {
			DocumentIDs []string `json:"document_ids"`
		} `json:"filter"`
	}
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	if req.Query == "" {
		return oai.Missing("query")
	}
	if req.TopK == 0 {
		req.TopK = s.opts.RAG.TopK
	}
	if req.TopK < 1 || req.TopK > rag.MaxTopK {
		return oai.Invalid("top_k", oai.CodeInvalidValue, "invalid value for 'top_k': %d; it must be between 1 and %d", req.TopK, rag.MaxTopK)
	}
	var docs []string
	if req.Filter != nil {
		docs = req.Filter.DocumentIDs
		for i, id := range docs {
			if !store.IsID(id) {
				return oai.Invalid(fmt.Sprintf("filter.document_ids[%d]", i), oai.CodeInvalidValue,
					"invalid 'filter.document_ids[%d]': document ids look like 3f0c2a4e-…; list them with GET /v1/knowledge-bases/{kb}/documents", i)
			}
		}
	}
	srcs, err := s.opts.RAG.Retriever.Retrieve(c.UserContext(), principalOf(c).UserID, k.ID, req.Query, req.TopK, docs...)
	if errors.Is(err, vectorstore.ErrInvalid) {
		return oai.Invalid("filter.document_ids", oai.CodeInvalidValue, "invalid 'filter.document_ids'")
	}
	if e := chat.APIError(err); err != nil && e.Status >= 400 && e.Status < 500 && e.Status != oai.StatusClientClosed {
		return e // the query itself was refused (a poison request, an input the model refuses)
	}
	if err != nil {
		return &oai.Error{Status: http.StatusServiceUnavailable, Type: oai.TypeServer, Code: "index_unavailable", RetryAfter: time.Second,
			Message: "the knowledge base's index is unavailable; try again shortly"}
	}
	type hit struct {
		rag.Source
		Heading string `json:"heading"`
		Text    string `json:"text"`
	}
	return c.JSON(list(srcs, func(src rag.Source) hit { return hit{Source: src, Heading: src.Heading, Text: src.Text} }))
}
