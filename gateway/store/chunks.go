package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"

	"github.com/lib/pq"
)

// NewChunk is a chunk IndexDocument stores.
type NewChunk struct {
	Ordinal    int
	Heading    string
	Content    string
	TokenCount int
	// Dense is the chunk's embedding (nil: none).
	Dense []float32
	// SparseIndices and SparseValues are its lexical vector (term ids ascending).
	SparseIndices []uint32
	SparseValues  []float32
}

// Chunk is a stored chunk of a document.
type Chunk struct {
	ID         string
	DocumentID string
	// DocumentTitle is filled by Chunks (for citations), empty elsewhere.
	DocumentTitle string
	KBID          string
	Ordinal       int
	Heading       string
	Content       string
	TokenCount    int
	Dense         []float32
	SparseIndices []uint32
	SparseValues  []float32
}

// newUUID returns a random (version 4) UUID: chunk ids are made here so a batch of
// chunks is written with COPY, and its ids are known without reading them back.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// IndexDocument stores chunks as the whole content of document docID of userID's
// knowledge base kbID, in one transaction: the document's earlier chunks are replaced,
// and it becomes indexed with its chunk count. It returns the stored chunks with their
// ids. A document that is not userID's is ErrNotFound.
func (s *Store) IndexDocument(ctx context.Context, userID, kbID, docID string, chunks []NewChunk) ([]Chunk, error) {
	out := make([]Chunk, len(chunks))
	err := s.do(ctx, "index document", func(ctx context.Context) error {
		if !validIDs(userID, kbID, docID) {
			return ErrNotFound
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // a no-op after Commit
		var found bool
		err = tx.QueryRowContext(ctx, `SELECT true FROM documents d JOIN knowledge_bases k ON k.id = d.kb_id
			WHERE d.id = $1 AND d.kb_id = $2 AND k.user_id = $3 FOR UPDATE OF d`, docID, kbID, userID).Scan(&found)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM chunks WHERE document_id = $1`, docID); err != nil {
			return err
		}
		// COPY: one round trip for the whole batch.
		stmt, err := tx.PrepareContext(ctx, pq.CopyIn("chunks", "id", "document_id", "kb_id", "ordinal", "heading",
			"content", "token_count", "dense", "sparse_indices", "sparse_values"))
		if err != nil {
			return err
		}
		for i, c := range chunks {
			out[i] = Chunk{ID: newUUID(), DocumentID: docID, KBID: kbID, Ordinal: c.Ordinal, Heading: c.Heading,
				Content: c.Content, TokenCount: c.TokenCount, Dense: c.Dense, SparseIndices: c.SparseIndices, SparseValues: c.SparseValues}
			var dense any
			if c.Dense != nil {
				dense = pq.Array(c.Dense)
			}
			idx := make(pq.Int64Array, len(c.SparseIndices))
			for j, v := range c.SparseIndices {
				idx[j] = int64(v)
			}
			if _, err := stmt.ExecContext(ctx, out[i].ID, docID, kbID, c.Ordinal, c.Heading, c.Content, c.TokenCount,
				dense, idx, pq.Array(c.SparseValues)); err != nil {
				stmt.Close()
				return err
			}
		}
		if _, err := stmt.ExecContext(ctx); err != nil {
			stmt.Close()
			return err
		}
		if err := stmt.Close(); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE documents SET status = 'indexed', error = NULL, chunk_count = $2, updated_at = now()
			WHERE id = $1`, docID, len(chunks)); err != nil {
			return err
		}
		return tx.Commit()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// FailDocument marks document docID of userID's knowledge base kbID failed, with the
// reason.
func (s *Store) FailDocument(ctx context.Context, userID, kbID, docID, reason string) error {
	return s.do(ctx, "fail document", func(ctx context.Context) error {
		if !validIDs(userID, kbID, docID) {
			return ErrNotFound
		}
		res, err := s.db.ExecContext(ctx, `UPDATE documents d SET status = 'failed', error = $4, updated_at = now()
			FROM knowledge_bases k WHERE d.id = $1 AND d.kb_id = $2 AND k.id = d.kb_id AND k.user_id = $3`,
			docID, kbID, userID, reason)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return ErrNotFound
		}
		return err
	})
}

// Chunks returns the chunks ids of userID's knowledge base kbID (ids of other
// knowledge bases, or unknown, are left out), in the order of ids.
func (s *Store) Chunks(ctx context.Context, userID, kbID string, ids []string) ([]Chunk, error) {
	var out []Chunk
	err := s.do(ctx, "get chunks", func(ctx context.Context) error {
		if !validIDs(userID, kbID) {
			return ErrNotFound
		}
		valid := make(pq.StringArray, 0, len(ids))
		for _, id := range ids {
			if validID(id) {
				valid = append(valid, id)
			}
		}
		rows, err := s.db.QueryContext(ctx, `SELECT `+chunkColumns+`, d.title FROM chunks c
			JOIN knowledge_bases k ON k.id = c.kb_id JOIN documents d ON d.id = c.document_id
			JOIN unnest($3::uuid[]) WITH ORDINALITY AS want(id, ord) ON want.id = c.id
			WHERE c.kb_id = $1 AND k.user_id = $2 ORDER BY want.ord`, kbID, userID, valid)
		if err != nil {
			return err
		}
		out, err = scanChunks(rows, out, true)
		return err
	})
	return out, err
}

// EachKBChunks calls fn with the chunks of knowledge base kbID, batch at a time, in
// document and ordinal order: what rebuilds a vector index from Postgres. It is not
// scoped by user (the operator's and the gateway's path, never a client's).
func (s *Store) EachKBChunks(ctx context.Context, kbID string, batch int, fn func([]Chunk) error) error {
	if batch <= 0 {
		batch = 1000
	}
	if !validID(kbID) {
		return fmt.Errorf("store: knowledge base chunks: %w", ErrNotFound)
	}
	afterDoc, afterOrd := "00000000-0000-0000-0000-000000000000", -1
	for {
		var page []Chunk
		err := s.do(ctx, "knowledge base chunks", func(ctx context.Context) error {
			rows, err := s.db.QueryContext(ctx, `SELECT `+chunkColumns+` FROM chunks c
				WHERE c.kb_id = $1 AND (c.document_id, c.ordinal) > ($2::uuid, $3)
				ORDER BY c.document_id, c.ordinal LIMIT $4`, kbID, afterDoc, afterOrd, batch)
			if err != nil {
				return err
			}
			page, err = scanChunks(rows, nil, false)
			return err
		})
		if err != nil || len(page) == 0 {
			return err
		}
		if err := fn(page); err != nil {
			return err
		}
		last := page[len(page)-1]
		afterDoc, afterOrd = last.DocumentID, last.Ordinal
	}
}

// KnowledgeBaseIDs returns the id of every knowledge base (all users'): what the
// gateway loads its embedded index from at start.
func (s *Store) KnowledgeBaseIDs(ctx context.Context) ([]string, error) {
	var ids []string
	err := s.do(ctx, "knowledge base ids", func(ctx context.Context) error {
		rows, err := s.db.QueryContext(ctx, `SELECT id FROM knowledge_bases ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	return ids, err
}

const chunkColumns = `c.id, c.document_id, c.kb_id, c.ordinal, c.heading, c.content, c.token_count,
	c.dense, c.sparse_indices, c.sparse_values`

// scanChunks reads rows of chunkColumns (followed by the document's title when
// withTitle).
func scanChunks(rows *sql.Rows, out []Chunk, withTitle bool) ([]Chunk, error) {
	defer rows.Close()
	for rows.Next() {
		var (
			c      Chunk
			dense  pq.Float32Array
			idx    pq.Int64Array
			values pq.Float32Array
		)
		dest := []any{&c.ID, &c.DocumentID, &c.KBID, &c.Ordinal, &c.Heading, &c.Content, &c.TokenCount, &dense, &idx, &values}
		if withTitle {
			dest = append(dest, &c.DocumentTitle)
		}
		if err := rows.Scan(dest...); err != nil {
			return out, err
		}
		if dense != nil {
			c.Dense = []float32(dense)
		}
		c.SparseIndices = make([]uint32, len(idx))
		for i, v := range idx {
			c.SparseIndices[i] = uint32(v)
		}
		c.SparseValues = []float32(values)
		out = append(out, c)
	}
	return out, rows.Err()
}
