package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/knowledge"
	"github.com/ragway/ragway/gateway/oai"
)

type kbJSON struct {
	ID             string          `json:"id"`
	Object         string          `json:"object"`
	Name           string          `json:"name"`
	Description    string          `json:"description"`
	EmbeddingModel string          `json:"embedding_model,omitempty"`
	Retrieval      json.RawMessage `json:"retrieval"`
	CreatedAt      int64           `json:"created_at"`
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

// hitJSON is a search hit: a source as chats cite it, with the chunk's heading and text.
type hitJSON struct {
	N          int     `json:"n"`
	DocumentID string  `json:"document_id"`
	Title      string  `json:"title"`
	ChunkID    string  `json:"chunk_id"`
	Score      float64 `json:"score"`
	Snippet    string  `json:"snippet"`
	Heading    string  `json:"heading"`
	Text       string  `json:"text"`
}

func toHitJSON(h knowledge.Hit) hitJSON {
	return hitJSON{N: h.N, DocumentID: h.DocumentID, Title: h.Title, ChunkID: h.ChunkID, Score: h.Score, Snippet: h.Snippet,
		Heading: h.Heading, Text: h.Text}
}

func toKBJSON(k knowledge.Base) kbJSON {
	return kbJSON{ID: k.ID, Object: "knowledge_base", Name: k.Name, Description: k.Description, EmbeddingModel: k.EmbeddingModel,
		Retrieval: json.RawMessage(k.Retrieval.String()), CreatedAt: k.CreatedAt.Unix()}
}

// retrievalSettings reads a request's "retrieval" object (absent or null: none).
func retrievalSettings(raw json.RawMessage) (knowledge.Settings, error) {
	set, err := knowledge.ParseSettings(raw, "retrieval")
	if e := settingsError(err); e != nil {
		return set, e
	}
	return set, err
}

// decodeStrict decodes a request body as oai.Decode does and refuses a field v has
// none for with a 400 naming it: the knowledge-base routes are ragway's own, and a
// misspelt "retrieval" would otherwise be ignored.
func decodeStrict(body []byte, v any) error {
	if err := oai.Decode(body, v, ""); err != nil {
		return err
	}
	if k := oai.UnknownField(body, v); k != "" {
		return oai.Invalid(k, "unknown_parameter", "unknown field '%s'", k)
	}
	return nil
}

// settingsError is the 400 of retrieval settings that are not valid, naming the
// setting; nil for other errors.
func settingsError(err error) *oai.Error {
	var se *knowledge.SettingsError
	if errors.As(err, &se) {
		return oai.Invalid(se.Field, oai.CodeInvalidValue, "invalid '%s': %s", se.Field, se.Reason)
	}
	return nil
}

func toDocumentJSON(d knowledge.Document) documentJSON {
	return documentJSON{ID: d.ID, Object: "document", KBID: d.BaseID, Title: d.Title, Source: d.Source, MimeType: d.MimeType,
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
	ing, chat := s.requireScope(auth.ScopeIngest), s.requireScope(auth.ScopeChat)
	app.Post("/v1/knowledge-bases", ing, s.createKB)
	app.Get("/v1/knowledge-bases", ing, s.listKBs)
	app.Get("/v1/knowledge-bases/:kb", ing, s.getKB)
	app.Patch("/v1/knowledge-bases/:kb", ing, s.patchKB)
	app.Delete("/v1/knowledge-bases/:kb", ing, s.deleteKB)
	app.Post("/v1/knowledge-bases/:kb/documents", ing, s.addDocument)
	app.Get("/v1/knowledge-bases/:kb/documents", ing, s.listDocuments)
	app.Get("/v1/knowledge-bases/:kb/documents/:id", ing, s.getDocument)
	app.Delete("/v1/knowledge-bases/:kb/documents/:id", ing, s.deleteDocument)
	app.Post("/v1/knowledge-bases/:kb/search", chat, s.searchKB)
	// `ragway eval` in the gateway (the caller's knowledge base, admin scope).
	app.Post("/admin/knowledge-bases/:kb/eval", s.requireScope(auth.ScopeAdmin), s.adminEval)
}

// kb resolves the :kb parameter (an id or a percent-encoded name) among the caller's
// knowledge bases.
func (s *server) kb(c *fiber.Ctx) (knowledge.Base, error) {
	name, err := url.PathUnescape(c.Params("kb"))
	if err != nil {
		return knowledge.Base{}, oai.Invalid("kb", oai.CodeInvalidValue, "the knowledge base in the path is not valid percent-encoding")
	}
	if e := oai.CheckText("kb", name); e != nil {
		// No knowledge base can have such a name (nor can the database look it up).
		return knowledge.Base{}, e
	}
	k, err := s.opts.Knowledge.Base(c.UserContext(), principalOf(c).UserID, name)
	if errors.Is(err, knowledge.ErrNotFound) {
		return k, oai.NoKnowledgeBase(name, "")
	}
	return k, err
}

func (s *server) createKB(c *fiber.Ctx) error {
	var req struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Retrieval   json.RawMessage `json:"retrieval"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
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
	set, err := retrievalSettings(req.Retrieval)
	if err != nil {
		return err
	}
	k, err := s.opts.Knowledge.CreateBase(c.UserContext(), principalOf(c).UserID,
		knowledge.NewBase{Name: req.Name, Description: req.Description, Retrieval: set})
	if e := settingsError(err); e != nil {
		return e
	}
	if errors.Is(err, knowledge.ErrConflict) {
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: oai.CodeConflict, Param: "name",
			Message: fmt.Sprintf("you already have a knowledge base named '%s'", req.Name)}
	}
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(toKBJSON(k))
}

func (s *server) listKBs(c *fiber.Ctx) error {
	kbs, err := s.opts.Knowledge.Bases(c.UserContext(), principalOf(c).UserID)
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

// patchKB serves PATCH /v1/knowledge-bases/{kb} {"retrieval": {…}}: the knowledge
// base's own retrieval settings, replaced whole ({} or null: the gateway's). Nothing
// else of a knowledge base changes here: another field is a 400.
func (s *server) patchKB(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	var req struct {
		Retrieval json.RawMessage `json:"retrieval"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	if req.Retrieval == nil {
		return oai.Missing("retrieval")
	}
	set, err := retrievalSettings(req.Retrieval)
	if err != nil {
		return err
	}
	updated, err := s.opts.Knowledge.SetSettings(c.UserContext(), principalOf(c).UserID, k.ID, set)
	if e := settingsError(err); e != nil {
		return e
	}
	if err != nil {
		return notFound(err, knowledge.ErrNotFound, "knowledge base", k.ID)
	}
	return c.JSON(toKBJSON(updated))
}

func (s *server) deleteKB(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	if err := s.opts.Knowledge.DeleteBase(c.UserContext(), principalOf(c).UserID, k.ID); err != nil {
		return notFound(err, knowledge.ErrNotFound, "knowledge base", k.ID)
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
	wait := c.QueryBool("wait")
	d, err := s.opts.Knowledge.AddDocument(c.UserContext(), principalOf(c).UserID, k,
		knowledge.Upload{Name: name, Title: title, ContentType: contentType, Data: data, Wait: wait})
	var dup *knowledge.DuplicateError
	if errors.As(err, &dup) {
		return &oai.Error{Status: http.StatusConflict, Type: oai.TypeInvalidRequest, Code: "duplicate_document",
			Message: fmt.Sprintf("this knowledge base already has this content: document '%s' (%s)", dup.Existing.ID, dup.Existing.Title)}
	}
	if err != nil {
		return uploadError(err)
	}
	if wait {
		return c.Status(fiber.StatusCreated).JSON(toDocumentJSON(d))
	}
	return c.Status(fiber.StatusAccepted).JSON(toDocumentJSON(d))
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

// uploadError maps AddDocument's errors to API errors: an UploadError describes the
// upload (its message names the file and what is wrong with it); a failed extraction
// is the server's fault (a child process that could not start), a 500 without
// details; the rest (the store's) is chat.APIError's.
func uploadError(err error) error {
	var ue *knowledge.UploadError
	switch {
	case errors.As(err, &ue):
		e := &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: oai.CodeInvalidValue, Param: "file", Message: ue.Error()}
		switch {
		case errors.Is(ue, knowledge.ErrUnsupportedFormat):
			e.Status, e.Code = http.StatusUnsupportedMediaType, "unsupported_format"
		case errors.Is(ue, knowledge.ErrTooLarge):
			e.Status, e.Code, e.Param = http.StatusRequestEntityTooLarge, oai.CodeTooLarge, ""
		}
		return e
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, knowledge.ErrExtract):
		return &oai.Error{Status: http.StatusInternalServerError, Type: oai.TypeServer, Code: oai.CodeInternal,
			Message: "the server could not extract the document's text; try again later", Cause: err}
	}
	return err
}

func (s *server) listDocuments(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	p, aerr := pageOf(c, knowledge.MaxPageLimit)
	if aerr != nil {
		return aerr
	}
	docs, err := s.opts.Knowledge.Documents(c.UserContext(), principalOf(c).UserID, k.ID, knowledge.Page(p))
	if err != nil {
		return notFound(err, knowledge.ErrNotFound, "document", p.After)
	}
	return c.JSON(pageList(docs.Documents, docs.HasMore, toDocumentJSON))
}

func (s *server) getDocument(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	d, err := s.opts.Knowledge.Document(c.UserContext(), principalOf(c).UserID, k.ID, c.Params("id"))
	if err != nil {
		return notFound(err, knowledge.ErrNotFound, "document", c.Params("id"))
	}
	return c.JSON(toDocumentJSON(d))
}

func (s *server) deleteDocument(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	id := c.Params("id")
	if err := s.opts.Knowledge.DeleteDocument(c.UserContext(), principalOf(c).UserID, k.ID, id); err != nil {
		return notFound(err, knowledge.ErrNotFound, "document", id)
	}
	return c.JSON(fiber.Map{"id": id, "object": "document.deleted", "deleted": true})
}

// searchKB serves POST /v1/knowledge-bases/{kb}/search {"query", "top_k"?, "filter"?:
// {"document_ids": [...]}, "retrieval"?: {…}}: the chunks that answer the query, best
// first, by the knowledge base's retrieval settings (and the search's own over them:
// what acts at search time).
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
		Retrieval json.RawMessage `json:"retrieval"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	if req.Query == "" {
		return oai.Missing("query")
	}
	if req.TopK == 0 {
		req.TopK = s.opts.Knowledge.TopK()
	}
	if req.TopK < 1 || req.TopK > knowledge.MaxTopK {
		return oai.Invalid("top_k", oai.CodeInvalidValue, "invalid value for 'top_k': %d; it must be between 1 and %d", req.TopK, knowledge.MaxTopK)
	}
	var docs []string
	if req.Filter != nil {
		docs = req.Filter.DocumentIDs
		for i, id := range docs {
			if !knowledge.IsID(id) {
				return oai.Invalid(fmt.Sprintf("filter.document_ids[%d]", i), oai.CodeInvalidValue,
					"invalid 'filter.document_ids[%d]': document ids look like 3f0c2a4e-…; list them with GET /v1/knowledge-bases/{kb}/documents", i)
			}
		}
	}
	set, err := retrievalSettings(req.Retrieval)
	if err != nil {
		return err
	}
	hits, err := s.opts.Knowledge.Search(c.UserContext(), principalOf(c).UserID, k,
		knowledge.Query{Text: req.Query, TopK: req.TopK, DocumentIDs: docs, Settings: set})
	if e := settingsError(err); e != nil {
		return e
	}
	if errors.Is(err, knowledge.ErrInvalidFilter) {
		return oai.Invalid("filter.document_ids", oai.CodeInvalidValue, "invalid 'filter.document_ids'")
	}
	if e := chat.APIError(err); err != nil && e.Status >= 400 && e.Status < 500 && e.Status != oai.StatusClientClosed {
		return e // the query itself was refused (a poison request, an input the model refuses)
	}
	if err != nil {
		return &oai.Error{Status: http.StatusServiceUnavailable, Type: oai.TypeServer, Code: "index_unavailable", RetryAfter: time.Second,
			Message: "the knowledge base's index is unavailable; try again shortly"}
	}
	return c.JSON(list(hits, toHitJSON))
}
