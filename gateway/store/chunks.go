package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/lib/pq"
)

// NewChunk is a chunk IndexDocument stores.
type NewChunk struct {
	// ID, when set, is the chunk's id (a UUID; NewChunkID makes one); empty: one is made.
	ID         string
	Ordinal    int
	Heading    string
	Content    string
	TokenCount int
	// Dense is the chunk's embedding (nil: none).
	Dense []float32
	// SparseIndices and SparseValues are its lexical vector (term ids ascending).
	SparseIndices []uint32
	SparseValues  []float32
	// Analyzer names the rules that made the sparse vector (gateway/rag.Analyzer;
	// 0: the first rules).
	Analyzer int
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
	// Analyzer names the rules that made the sparse vector (gateway/rag.Analyzer).
	Analyzer int
}

// NewChunkID returns a random (version 4) UUID for a chunk: chunk ids are made by the
// client so a batch of chunks is written with COPY, and the ids are known before (the
// vector index can be written at the same time).
func NewChunkID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// IndexDocument stores chunks as the whole content of document docID of userID's
// knowledge base kbID, in one transaction: the document's earlier chunks are replaced,
// and it becomes indexed with its chunk count. It returns the stored chunks with their
// ids. A document that is not userID's (or whose knowledge base is deleted meanwhile)
// is ErrNotFound; a chunk's text Postgres cannot store is a *FieldError ("text").
func (s *Store) IndexDocument(ctx context.Context, userID, kbID, docID string, chunks []NewChunk) ([]Chunk, error) {
	out := make([]Chunk, len(chunks))
	err := s.do(ctx, "index document", func(ctx context.Context) error {
		if !validIDs(userID, kbID, docID) {
			return ErrNotFound
		}
		for _, c := range chunks {
			if err := checkTexts("text", c.Heading, "text", c.Content); err != nil {
				return err
			}
		}
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() // a no-op after Commit
		// Lock order: the knowledge base, then the document. DeleteKnowledgeBase locks
		// the knowledge base's row first and its cascade then the documents'; locking
		// the document first would let the chunks' foreign-key check (at the end of the
		// COPY, a KEY SHARE lock on the knowledge base) wait for a delete that waits for
		// this document: a deadlock. KEY SHARE is the weakest lock a delete waits for;
		// concurrent indexing into one knowledge base shares it.
		var found bool
		err = tx.QueryRowContext(ctx, `SELECT true FROM knowledge_bases WHERE id = $1 AND user_id = $2 FOR KEY SHARE`,
			kbID, userID).Scan(&found)
		if err != nil {
			return err
		}
		err = tx.QueryRowContext(ctx, `SELECT true FROM documents WHERE id = $1 AND kb_id = $2 FOR UPDATE`, docID, kbID).Scan(&found)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM chunks WHERE document_id = $1`, docID); err != nil {
			return err
		}
		// COPY: one round trip for the whole batch.
		stmt, err := tx.PrepareContext(ctx, pq.CopyIn("chunks", "id", "document_id", "kb_id", "ordinal", "heading",
			"content", "token_count", "dense", "sparse", "analyzer"))
		if err != nil {
			return err
		}
		for i, c := range chunks {
			id := c.ID
			if id == "" {
				id = NewChunkID()
			} else if !validID(id) {
				return fmt.Errorf("%w: chunk id %q", ErrInvalid, id)
			}
			out[i] = Chunk{ID: id, DocumentID: docID, KBID: kbID, Ordinal: c.Ordinal, Heading: c.Heading,
				Content: c.Content, TokenCount: c.TokenCount, Dense: c.Dense, SparseIndices: c.SparseIndices, SparseValues: c.SparseValues}
			if len(c.SparseIndices) != len(c.SparseValues) {
				return fmt.Errorf("%w: chunk %d: %d sparse indices, %d values", ErrInvalid, i, len(c.SparseIndices), len(c.SparseValues))
			}
			var dense any
			if c.Dense != nil {
				dense = packDense(c.Dense)
			}
			if _, err := stmt.ExecContext(ctx, out[i].ID, docID, kbID, c.Ordinal, c.Heading, c.Content, c.TokenCount,
				dense, packSparse(c.SparseIndices, c.SparseValues), max(c.Analyzer, 1)); err != nil {
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
	if !validID(kbID) {
		return fmt.Errorf("store: knowledge base chunks: %w", ErrNotFound)
	}
	return s.eachChunks(ctx, "knowledge base chunks", kbID, "", batch, fn)
}

// EachKBVectors is EachKBChunks without the chunks' text (Heading and Content are
// empty): what a vector index is loaded from, a fraction of the bytes.
func (s *Store) EachKBVectors(ctx context.Context, kbID string, batch int, fn func([]Chunk) error) error {
	if !validID(kbID) {
		return fmt.Errorf("store: knowledge base vectors: %w", ErrNotFound)
	}
	return s.eachChunksWhere(ctx, "knowledge base vectors", chunkVectorColumns, kbID, "", 0, batch, fn)
}

// eachChunks calls fn with the chunks of knowledge base kbID (of its document docID
// only, when docID is set), batch at a time, in document and ordinal order, reading a
// page after the last chunk of the one before.
func (s *Store) eachChunks(ctx context.Context, op, kbID, docID string, batch int, fn func([]Chunk) error) error {
	return s.eachChunksWhere(ctx, op, chunkColumns, kbID, docID, 0, batch, fn)
}

// eachChunksWhere is eachChunks over the chunks made by analyzer rules older than
// below only (0: every chunk), reading cols (chunkColumns or chunkVectorColumns).
func (s *Store) eachChunksWhere(ctx context.Context, op, cols, kbID, docID string, below, batch int, fn func([]Chunk) error) error {
	if batch <= 0 {
		batch = 1000
	}
	var doc any // NULL: every document
	if docID != "" {
		doc = docID
	}
	afterDoc, afterOrd := "00000000-0000-0000-0000-000000000000", -1
	for {
		var page []Chunk
		err := s.do(ctx, op, func(ctx context.Context) error {
			rows, err := s.db.QueryContext(ctx, `SELECT `+cols+` FROM chunks c
				WHERE c.kb_id = $1 AND ($5::uuid IS NULL OR c.document_id = $5) AND (c.document_id, c.ordinal) > ($2::uuid, $3)
				AND ($6 = 0 OR c.analyzer < $6)
				ORDER BY c.document_id, c.ordinal LIMIT $4`, kbID, afterDoc, afterOrd, batch, doc, below)
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

// KnowledgeBasesToReanalyze returns the ids of the knowledge bases holding chunks
// whose sparse vectors were made by analyzer rules older than analyzer (see
// gateway/rag.Analyzer).
func (s *Store) KnowledgeBasesToReanalyze(ctx context.Context, analyzer int) ([]string, error) {
	return s.ids(ctx, "knowledge bases to reanalyze", `SELECT DISTINCT kb_id FROM chunks WHERE analyzer < $1 ORDER BY kb_id`, analyzer)
}

// EachChunkToReanalyze calls fn with the chunks of knowledge base kbID (of its
// document docID only, when docID is set) whose sparse vectors were made by rules
// older than analyzer, batch at a time, in document and ordinal order.
func (s *Store) EachChunkToReanalyze(ctx context.Context, kbID, docID string, analyzer, batch int, fn func([]Chunk) error) error {
	if !validID(kbID) || docID != "" && !validID(docID) {
		return fmt.Errorf("store: chunks to reanalyze: %w", ErrNotFound)
	}
	return s.eachChunksWhere(ctx, "chunks to reanalyze", chunkColumns, kbID, docID, analyzer, batch, fn)
}

// SparseUpdate is a chunk's new sparse vector.
type SparseUpdate struct {
	ChunkID string
	Indices []uint32
	Values  []float32
}

// UpdateSparse replaces the sparse vectors of chunks of knowledge base kbID, made by
// analyzer, in one statement, and returns the ids of the chunks it changed: chunks
// deleted meanwhile, and chunks already made by analyzer or newer rules (another
// gateway's work), are left alone.
func (s *Store) UpdateSparse(ctx context.Context, kbID string, analyzer int, updates []SparseUpdate) ([]string, error) {
	if len(updates) == 0 {
		return nil, nil
	}
	ids := make([]string, len(updates))
	vecs := make([][]byte, len(updates))
	for i, u := range updates {
		if !validID(u.ChunkID) || len(u.Indices) != len(u.Values) {
			return nil, fmt.Errorf("store: update sparse vectors: %w: chunk %q", ErrInvalid, u.ChunkID)
		}
		ids[i], vecs[i] = u.ChunkID, packSparse(u.Indices, u.Values)
	}
	if !validID(kbID) {
		return nil, fmt.Errorf("store: update sparse vectors: %w", ErrNotFound)
	}
	return s.ids(ctx, "update sparse vectors", `UPDATE chunks c SET sparse = u.sparse, analyzer = $4
		FROM unnest($2::uuid[], $3::bytea[]) AS u (id, sparse)
		WHERE c.id = u.id AND c.kb_id = $1 AND c.analyzer < $4 RETURNING c.id`,
		kbID, pq.Array(ids), pq.ByteaArray(vecs), analyzer)
}

// WithLock runs fn holding the session advisory lock key: gateways doing the same
// long work (analysing stored chunks again) take turns. The lock is released when fn
// returns, or with its connection.
func (s *Store) WithLock(ctx context.Context, key int64, fn func() error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: lock: %w", classify(err))
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return fmt.Errorf("store: lock: %w", classify(err))
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key) //nolint:errcheck // the connection's end releases it too
	return fn()
}

// KnowledgeBaseIDs returns the id of every knowledge base (all users'): what the
// gateway loads its embedded index from at start.
func (s *Store) KnowledgeBaseIDs(ctx context.Context) ([]string, error) {
	return s.ids(ctx, "knowledge base ids", `SELECT id FROM knowledge_bases ORDER BY id`)
}

// ids runs query, which selects (or returns) one uuid column, and returns the ids.
func (s *Store) ids(ctx context.Context, op, query string, args ...any) ([]string, error) {
	var ids []string
	err := s.do(ctx, op, func(ctx context.Context) error {
		ids = ids[:0]
		rows, err := s.db.QueryContext(ctx, query, args...)
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
	c.dense, c.sparse, c.analyzer`

// chunkVectorColumns are chunkColumns without the text.
const chunkVectorColumns = `c.id, c.document_id, c.kb_id, c.ordinal, ''::text, ''::text, c.token_count,
	c.dense, c.sparse, c.analyzer`

// scanChunks reads rows of chunkColumns (followed by the document's title when
// withTitle).
func scanChunks(rows *sql.Rows, out []Chunk, withTitle bool) ([]Chunk, error) {
	defer rows.Close()
	for rows.Next() {
		var (
			c             Chunk
			dense, sparse []byte
		)
		dest := []any{&c.ID, &c.DocumentID, &c.KBID, &c.Ordinal, &c.Heading, &c.Content, &c.TokenCount, &dense, &sparse, &c.Analyzer}
		if withTitle {
			dest = append(dest, &c.DocumentTitle)
		}
		if err := rows.Scan(dest...); err != nil {
			return out, err
		}
		if dense != nil {
			c.Dense = unpackDense(dense)
		}
		c.SparseIndices, c.SparseValues = unpackSparse(sparse)
		out = append(out, c)
	}
	return out, rows.Err()
}

// packDense packs a dense vector as little-endian float32s.
func packDense(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func unpackDense(b []byte) []float32 {
	v := make([]float32, len(b)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return v
}

// packSparse packs a sparse vector as little-endian (uint32 index, float32 value) pairs.
func packSparse(idx []uint32, values []float32) []byte {
	b := make([]byte, 8*len(idx))
	for i := range idx {
		binary.LittleEndian.PutUint32(b[8*i:], idx[i])
		binary.LittleEndian.PutUint32(b[8*i+4:], math.Float32bits(values[i]))
	}
	return b
}

func unpackSparse(b []byte) ([]uint32, []float32) {
	n := len(b) / 8
	idx, values := make([]uint32, n), make([]float32, n)
	for i := range n {
		idx[i] = binary.LittleEndian.Uint32(b[8*i:])
		values[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[8*i+4:]))
	}
	return idx, values
}
