package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/aarondl/null/v8"
	"github.com/aarondl/sqlboiler/v4/boil"
	"github.com/aarondl/sqlboiler/v4/queries/qm"
	"github.com/aarondl/sqlboiler/v4/types"

	"github.com/ragway/ragway/db/models"
)

// MaxKnowledgeBaseName is the longest knowledge-base name, in characters.
const MaxKnowledgeBaseName = 200

// CreateKnowledgeBase creates a knowledge base of userID. A name the user already gave
// one is ErrConflict (other users' names do not count); an empty name, one over
// MaxKnowledgeBaseName characters, or a name or description Postgres cannot store
// ([CheckText]) is a *FieldError ("name", "description") before any write.
func (s *Store) CreateKnowledgeBase(ctx context.Context, userID string, kb NewKnowledgeBase) (KnowledgeBase, error) {
	o := &models.KnowledgeBasis{
		UserID:         userID,
		Name:           kb.Name,
		Description:    kb.Description,
		EmbeddingModel: null.NewString(kb.EmbeddingModel, kb.EmbeddingModel != ""),
		Retrieval:      types.JSON(cmp.Or(kb.Retrieval, "{}")),
	}
	err := s.do(ctx, "create knowledge base", func(ctx context.Context) error {
		if err := checkRetrieval(kb.Retrieval); err != nil {
			return err
		}
		if !validID(userID) {
			return fmt.Errorf("%w: user %q", ErrNotFound, userID)
		}
		if err := checkTexts("name", kb.Name, "description", kb.Description); err != nil {
			return err
		}
		if n := utf8.RuneCountInString(kb.Name); n == 0 || n > MaxKnowledgeBaseName {
			return &FieldError{Field: "name", Reason: fmt.Sprintf("it must be 1 to %d characters long, not %d", MaxKnowledgeBaseName, n)}
		}
		return o.Insert(ctx, s.db, boil.Infer())
	})
	if err != nil {
		return KnowledgeBase{}, err
	}
	return knowledgeBaseFromModel(o), nil
}

// ListKnowledgeBases lists userID's knowledge bases by name.
func (s *Store) ListKnowledgeBases(ctx context.Context, userID string) ([]KnowledgeBase, error) {
	var rows models.KnowledgeBasisSlice
	err := s.do(ctx, "list knowledge bases", func(ctx context.Context) (err error) {
		if !validID(userID) {
			return ErrNotFound
		}
		rows, err = models.KnowledgeBases(models.KnowledgeBasisWhere.UserID.EQ(userID), qm.OrderBy(`"name", "id"`)).All(ctx, s.db)
		return err
	})
	if err != nil {
		return nil, err
	}
	return convert(rows, knowledgeBaseFromModel), nil
}

// KnowledgeBase returns userID's knowledge base idOrName: by id when it is a UUID, else
// by name.
func (s *Store) KnowledgeBase(ctx context.Context, userID, idOrName string) (KnowledgeBase, error) {
	var o *models.KnowledgeBasis
	err := s.do(ctx, "get knowledge base", func(ctx context.Context) (err error) {
		if !validID(userID) {
			return ErrNotFound
		}
		which := models.KnowledgeBasisWhere.Name.EQ(idOrName)
		if validID(idOrName) {
			which = models.KnowledgeBasisWhere.ID.EQ(idOrName)
		}
		o, err = models.KnowledgeBases(which, models.KnowledgeBasisWhere.UserID.EQ(userID)).One(ctx, s.db)
		return err
	})
	if err != nil {
		return KnowledgeBase{}, err
	}
	return knowledgeBaseFromModel(o), nil
}

// DeleteKnowledgeBase deletes userID's knowledge base id with its documents and chunks.
func (s *Store) DeleteKnowledgeBase(ctx context.Context, userID, id string) error {
	return s.do(ctx, "delete knowledge base", func(ctx context.Context) error {
		if !validIDs(userID, id) {
			return ErrNotFound
		}
		n, err := models.KnowledgeBases(models.KnowledgeBasisWhere.ID.EQ(id), models.KnowledgeBasisWhere.UserID.EQ(userID)).DeleteAll(ctx, s.db)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
}

// SetRetrieval replaces the retrieval settings (a JSON object) of userID's knowledge
// base id.
func (s *Store) SetRetrieval(ctx context.Context, userID, id, retrieval string) error {
	return s.do(ctx, "set retrieval settings", func(ctx context.Context) error {
		if !validIDs(userID, id) {
			return ErrNotFound
		}
		if err := checkRetrieval(retrieval); err != nil {
			return err
		}
		n, err := models.KnowledgeBases(models.KnowledgeBasisWhere.ID.EQ(id), models.KnowledgeBasisWhere.UserID.EQ(userID)).
			UpdateAll(ctx, s.db, models.M{models.KnowledgeBasisColumns.Retrieval: types.JSON(cmp.Or(retrieval, "{}"))})
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
}

// maxRetrieval caps a knowledge base's retrieval settings (a few numbers and words).
const maxRetrieval = 4 << 10

// checkRetrieval is a *FieldError ("retrieval") unless b is empty or a JSON object of
// at most maxRetrieval bytes. What the object says is the caller's to check.
func checkRetrieval(s string) error {
	if s == "" {
		return nil
	}
	if len(s) > maxRetrieval || !json.Valid([]byte(s)) || strings.TrimSpace(s)[0] != '{' {
		return &FieldError{Field: "retrieval", Reason: fmt.Sprintf("it must be a JSON object of at most %d bytes", maxRetrieval)}
	}
	return nil
}

// ownKnowledgeBase returns ErrNotFound unless userID has the knowledge base id.
func (s *Store) ownKnowledgeBase(ctx context.Context, userID, id string) error {
	ok, err := models.KnowledgeBases(models.KnowledgeBasisWhere.ID.EQ(id), models.KnowledgeBasisWhere.UserID.EQ(userID)).Exists(ctx, s.db)
	if err == nil && !ok {
		err = ErrNotFound
	}
	return err
}

// CreateDocument adds a pending document to userID's knowledge base kbID. Content the
// knowledge base already holds (the same SHA-256) is a *DuplicateError (ErrConflict)
// carrying the stored document; a title or source Postgres cannot store ([CheckText])
// is a *FieldError ("title", "source") before any write.
func (s *Store) CreateDocument(ctx context.Context, userID, kbID string, d NewDocument) (Document, error) {
	o := &models.Document{KBID: kbID, Title: d.Title, Source: d.Source, MimeType: d.MimeType, Sha256: d.SHA256, Bytes: d.Bytes}
	err := s.do(ctx, "create document", func(ctx context.Context) error {
		if !validIDs(userID, kbID) {
			return ErrNotFound
		}
		if err := checkTexts("title", d.Title, "source", d.Source, "mime_type", d.MimeType); err != nil {
			return err
		}
		if err := s.ownKnowledgeBase(ctx, userID, kbID); err != nil {
			return err
		}
		err := classify(o.Insert(ctx, s.db, boil.Infer()))
		if !errors.Is(err, ErrConflict) {
			return err
		}
		existing, ferr := models.Documents(models.DocumentWhere.KBID.EQ(kbID), models.DocumentWhere.Sha256.EQ(d.SHA256)).One(ctx, s.db)
		switch {
		case errors.Is(ferr, sql.ErrNoRows): // deleted since
			return err
		case ferr != nil:
			return ferr
		}
		return &DuplicateError{Existing: documentFromModel(existing)}
	})
	if err != nil {
		return Document{}, err
	}
	return documentFromModel(o), nil
}

// inOwnKnowledgeBase restricts a documents query to knowledge bases of userID.
func inOwnKnowledgeBase(userID string) qm.QueryMod {
	return qm.Where(`EXISTS (SELECT 1 FROM "knowledge_bases" k WHERE k."id" = "documents"."kb_id" AND k."user_id" = ?)`, userID)
}

// ListDocuments lists the documents of userID's knowledge base kbID, newest first
// (ties: greater id first). p.After names the last document of the previous page; one
// that is not in this knowledge base is ErrNotFound.
func (s *Store) ListDocuments(ctx context.Context, userID, kbID string, p Page) ([]Document, error) {
	var rows models.DocumentSlice
	err := s.do(ctx, "list documents", func(ctx context.Context) (err error) {
		if !validIDs(userID, kbID) || (p.After != "" && !validID(p.After)) {
			return ErrNotFound
		}
		mods := []qm.QueryMod{
			models.DocumentWhere.KBID.EQ(kbID),
			inOwnKnowledgeBase(userID),
			qm.OrderBy(`"created_at" DESC, "id" DESC`),
			qm.Limit(p.Size()),
		}
		if p.After != "" {
			mods = append(mods, after("documents", "created_at", p.After, "kb_id", kbID))
		}
		rows, err = models.Documents(mods...).All(ctx, s.db)
		if err != nil || len(rows) > 0 {
			return err
		}
		if err := s.ownKnowledgeBase(ctx, userID, kbID); err != nil || p.After == "" {
			return err
		}
		ok, err := models.Documents(models.DocumentWhere.ID.EQ(p.After), models.DocumentWhere.KBID.EQ(kbID)).Exists(ctx, s.db)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return convert(rows, documentFromModel), nil
}

// Document returns document id of userID's knowledge base kbID.
func (s *Store) Document(ctx context.Context, userID, kbID, id string) (Document, error) {
	var o *models.Document
	err := s.do(ctx, "get document", func(ctx context.Context) (err error) {
		if !validIDs(userID, kbID, id) {
			return ErrNotFound
		}
		o, err = models.Documents(models.DocumentWhere.ID.EQ(id), models.DocumentWhere.KBID.EQ(kbID), inOwnKnowledgeBase(userID)).One(ctx, s.db)
		return err
	})
	if err != nil {
		return Document{}, err
	}
	return documentFromModel(o), nil
}

// DeleteDocument deletes document id of userID's knowledge base kbID, with its chunks.
func (s *Store) DeleteDocument(ctx context.Context, userID, kbID, id string) error {
	return s.do(ctx, "delete document", func(ctx context.Context) error {
		if !validIDs(userID, kbID, id) {
			return ErrNotFound
		}
		n, err := models.Documents(models.DocumentWhere.ID.EQ(id), models.DocumentWhere.KBID.EQ(kbID), inOwnKnowledgeBase(userID)).DeleteAll(ctx, s.db)
		if err == nil && n == 0 {
			err = ErrNotFound
		}
		return err
	})
}

func knowledgeBaseFromModel(k *models.KnowledgeBasis) KnowledgeBase {
	return KnowledgeBase{
		ID:             k.ID,
		UserID:         k.UserID,
		Name:           k.Name,
		Description:    k.Description,
		EmbeddingModel: k.EmbeddingModel.String,
		Retrieval:      string(k.Retrieval),
		CreatedAt:      k.CreatedAt,
	}
}

func documentFromModel(d *models.Document) Document {
	return Document{
		ID:         d.ID,
		KBID:       d.KBID,
		Title:      d.Title,
		Source:     d.Source,
		MimeType:   d.MimeType,
		SHA256:     d.Sha256,
		Bytes:      d.Bytes,
		Status:     d.Status,
		Error:      d.Error.String,
		ChunkCount: d.ChunkCount,
		CreatedAt:  d.CreatedAt,
		UpdatedAt:  d.UpdatedAt,
	}
}
