package rag

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// memChunks is an in-memory ChunkWriter and ChunkReader of one user.
type memChunks struct {
	mu     sync.Mutex
	user   string
	chunks map[string]store.Chunk
	failed map[string]string
	n      int
}

func newMemChunks(user string) *memChunks {
	return &memChunks{user: user, chunks: map[string]store.Chunk{}, failed: map[string]string{}}
}

func (m *memChunks) IndexDocument(_ context.Context, userID, kbID, docID string, rows []store.NewChunk) ([]store.Chunk, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if userID != m.user {
		return nil, store.ErrNotFound
	}
	var out []store.Chunk
	for _, r := range rows {
		m.n++
		id := r.ID
		if id == "" {
			id = fmt.Sprintf("00000000-0000-4000-8000-%012d", m.n)
		}
		c := store.Chunk{ID: id, DocumentID: docID, DocumentTitle: "title of " + docID,
			KBID: kbID, Ordinal: r.Ordinal, Heading: r.Heading, Content: r.Content, Dense: r.Dense,
			SparseIndices: r.SparseIndices, SparseValues: r.SparseValues}
		m.chunks[c.ID] = c
		out = append(out, c)
	}
	return out, nil
}

func (m *memChunks) FailDocument(_ context.Context, _, _, docID, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failed[docID] = reason
	return nil
}

func (m *memChunks) Chunks(_ context.Context, userID, kbID string, ids []string) ([]store.Chunk, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Chunk
	for _, id := range ids {
		if c, ok := m.chunks[id]; ok && c.KBID == kbID && userID == m.user {
			out = append(out, c)
		}
	}
	return out, nil
}

const (
	kbA  = "11111111-1111-4111-8111-111111111111"
	kbB  = "22222222-2222-4222-8222-222222222222"
	docX = "33333333-3333-4333-8333-333333333333"
	docY = "44444444-4444-4444-8444-444444444444"
	docZ = "55555555-5555-4555-8555-555555555555"
)

func TestIndexAndRetrieve(t *testing.T) {
	ctx := context.Background()
	mem := newMemChunks("alice")
	vs := embedded.New()
	defer vs.Close()
	x := &Indexer{Store: mem, Vectors: vs, Options: Options{ChunkTokens: 60}}

	docs := []struct{ kb, id, text string }{
		{kbA, docX, "# Postgres\n\nWhen the database is down the gateway answers 503 and reconnects by itself.\n\n# Keys\n\nAPI keys are hashed with SHA-256 and shown once."},
		{kbA, docY, "# 网关\n\n数据库不可用时，网关返回503错误。数据库恢复后，网关会自动重新连接。"},
		{kbB, docZ, "# Other\n\nThe database of another knowledge base is down and 503 too."},
	}
	for _, d := range docs {
		if n, err := x.Index(ctx, "alice", d.kb, d.id, Document{Title: "t", Text: d.text, Markdown: true}, Settings{}); err != nil || n == 0 {
			t.Fatalf("Index %s: %d chunks, %v", d.id, n, err)
		}
	}

	r := &Retriever{Vectors: vs, Chunks: mem}
	for _, c := range []struct {
		query, wantDoc, wantText string
	}{
		{"what happens when the database is down?", docX, "reconnects"},
		{"数据库恢复后会怎样", docY, "重新连接"},
		{"how are API keys stored", docX, "SHA-256"},
	} {
		srcs, err := r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: c.query, TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(srcs) == 0 || srcs[0].DocumentID != c.wantDoc || !strings.Contains(srcs[0].Text, c.wantText) {
			t.Fatalf("%q: top source %+v, want document %s containing %q", c.query, srcs, c.wantDoc, c.wantText)
		}
		for i, s := range srcs {
			if s.N != i+1 || s.DocumentID == docZ || s.Title != "title of "+s.DocumentID || s.Snippet == "" {
				t.Fatalf("%q: source %d is %+v", c.query, i, s)
			}
		}
	}
	// Another user reads nothing of alice's chunks, even when the index has hits.
	if srcs, err := r.Retrieve(ctx, Request{UserID: "bob", KBID: kbA, Query: "database down", TopK: 3}); err != nil || len(srcs) != 0 {
		t.Fatalf("bob's retrieval in alice's knowledge base: %+v, %v", srcs, err)
	}
	// A question with no searchable term finds nothing, without error.
	if srcs, err := r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: "the of and ?!", TopK: 3}); err != nil || len(srcs) != 0 {
		t.Fatalf("stopword question: %+v, %v", srcs, err)
	}
}

func TestIndexFailureMarksTheDocument(t *testing.T) {
	mem := newMemChunks("alice")
	vs := embedded.New()
	defer vs.Close()
	x := &Indexer{Store: mem, Vectors: vs}
	if _, err := x.Index(context.Background(), "alice", kbA, docX, Document{Text: "  \n\n "}, Settings{}); err == nil {
		t.Fatal("indexing an empty document: want an error")
	}
	if mem.failed[docX] == "" {
		t.Fatal("the empty document was not marked failed")
	}
	// A document of headings only is its headings.
	if n, err := x.Index(context.Background(), "alice", kbA, docZ, Document{Text: "## Ports\n\n### Darwin\n", Markdown: true}, Settings{}); err != nil || n != 1 {
		t.Fatalf("a document of headings only: %d chunks, %v", n, err)
	}
	x.Embedding = failingModel{fmt.Errorf("model unavailable: stderr: r13 0x0")}
	if _, err := x.Index(context.Background(), "alice", kbA, docY, Document{Text: "some text"}, Settings{}); err == nil ||
		!strings.Contains(err.Error(), "model unavailable") || mem.failed[docY] != reasonEmbed {
		t.Fatalf("embedding failure: %v, stored reason %q", err, mem.failed[docY])
	}
}

// failingModel is an embedding model that fails with err.
type failingModel struct{ err error }

func (m failingModel) Embed(context.Context, []string, bool) ([][]float32, error) { return nil, m.err }
func (m failingModel) Tokenize(context.Context, []string) ([]int, int, error)     { return nil, 0, m.err }

func TestAugment(t *testing.T) {
	msgs := []sdk.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "q1"}, {Role: "assistant", Content: "a1"}, {Role: "user", Content: "q2"}}
	srcs := []Source{{N: 1, Title: "Guide", Heading: "Guide > Install", Text: "run task setup"}, {N: 2, Title: "FAQ", Text: "yes"}}
	out := Augment(msgs, Context(srcs))
	if len(out) != 5 || out[3].Role != "system" || out[4].Content != "q2" || out[0].Content != "be brief" {
		t.Fatalf("Augment placed the sources wrong: %+v", out)
	}
	ctx := out[3].Content
	for _, want := range []string{"[1] Guide — Guide > Install\nrun task setup", "[2] FAQ\nyes", "Cite"} {
		if !strings.Contains(ctx, want) {
			t.Fatalf("the sources message lacks %q:\n%s", want, ctx)
		}
	}
	if got := Augment(msgs, Context(nil)); len(got) != len(msgs) {
		t.Fatal("Augment without sources changed the messages")
	}
}

func TestSnippet(t *testing.T) {
	if s := Snippet("  short   text "); s != "short text" {
		t.Fatalf("Snippet = %q", s)
	}
	long := strings.Repeat("word ", 100)
	s := Snippet(long)
	if !strings.HasSuffix(s, "…") || len([]rune(s)) > snippetRunes+1 || strings.HasSuffix(strings.TrimSuffix(s, "…"), " ") {
		t.Fatalf("Snippet of a long text = %q", s)
	}
}

// scanner serves EachKBChunks from memChunks.
func (m *memChunks) EachKBChunks(_ context.Context, kbID string, batch int, fn func([]store.Chunk) error) error {
	m.mu.Lock()
	var cs []store.Chunk
	for _, c := range m.chunks {
		if c.KBID == kbID {
			cs = append(cs, c)
		}
	}
	m.mu.Unlock()
	for len(cs) > 0 {
		n := min(batch, len(cs))
		if err := fn(cs[:n]); err != nil {
			return err
		}
		cs = cs[n:]
	}
	return nil
}

// EachKBVectors serves the chunks without their text.
func (m *memChunks) EachKBVectors(ctx context.Context, kbID string, batch int, fn func([]store.Chunk) error) error {
	return m.EachKBChunks(ctx, kbID, batch, func(cs []store.Chunk) error {
		out := slices.Clone(cs)
		for i := range out {
			out[i].Heading, out[i].Content = "", ""
		}
		return fn(out)
	})
}

func TestRebuild(t *testing.T) {
	ctx := context.Background()
	mem := newMemChunks("alice")
	old := embedded.New()
	defer old.Close()
	x := &Indexer{Store: mem, Vectors: old}
	if _, err := x.Index(ctx, "alice", kbA, docX, Document{Text: "the gateway reconnects to the database"}, Settings{}); err != nil {
		t.Fatal(err)
	}
	fresh := embedded.New()
	defer fresh.Close()
	n, err := Rebuild(ctx, mem, fresh, kbA)
	if err != nil || n != 1 {
		t.Fatalf("Rebuild = %d, %v", n, err)
	}
	r := &Retriever{Vectors: fresh, Chunks: mem}
	if srcs, err := r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: "reconnects", TopK: 3}); err != nil || len(srcs) != 1 {
		t.Fatalf("retrieval from the rebuilt index: %+v, %v", srcs, err)
	}
}

func (m *memChunks) EachDocumentChunks(ctx context.Context, kbID, docID string, batch int, fn func([]store.Chunk) error) error {
	return m.EachKBChunks(ctx, kbID, batch, func(cs []store.Chunk) error {
		var mine []store.Chunk
		for _, c := range cs {
			if c.DocumentID == docID {
				mine = append(mine, c)
			}
		}
		if len(mine) == 0 {
			return nil
		}
		return fn(mine)
	})
}

func (m *memChunks) KnowledgeBaseIDs(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for _, c := range m.chunks {
		if !seen[c.KBID] {
			seen[c.KBID] = true
			out = append(out, c.KBID)
		}
	}
	return out, nil
}

// TestApplyChangeAndLoadAll: another gateway's index follows the changes of the feed
// (a document indexed elsewhere read from Postgres, a document or a knowledge base
// deleted), and LoadAll makes an index hold exactly what Postgres holds, dropping a
// knowledge base Postgres no longer has.
func TestApplyChangeAndLoadAll(t *testing.T) {
	ctx := context.Background()
	mem := newMemChunks("alice")
	here := embedded.New()
	defer here.Close()
	x := &Indexer{Store: mem, Vectors: here}
	if _, err := x.Index(ctx, "alice", kbA, docX, Document{Text: "the gateway reconnects to the database"}, Settings{}); err != nil {
		t.Fatal(err)
	}
	there := embedded.New() // another gateway's index
	defer there.Close()
	r := &Retriever{Vectors: there, Chunks: mem}
	found := func() int {
		t.Helper()
		srcs, err := r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: "reconnects", TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		return len(srcs)
	}
	if n := found(); n != 0 {
		t.Fatalf("before the change: %d sources", n)
	}
	indexed := store.Change{Kind: store.ChangeDocumentIndexed, KBID: kbA, DocumentID: docX}
	for range 2 { // applying twice is applying once
		if err := ApplyChange(ctx, mem, there, indexed); err != nil {
			t.Fatal(err)
		}
		if n := found(); n != 1 {
			t.Fatalf("after a document indexed elsewhere: %d sources, want 1", n)
		}
	}
	if err := ApplyChange(ctx, mem, there, store.Change{Kind: store.ChangeDocumentDeleted, KBID: kbA, DocumentID: docX}); err != nil || found() != 0 {
		t.Fatalf("after the document's deletion: %d sources, %v", found(), err)
	}
	_ = ApplyChange(ctx, mem, there, indexed)
	if err := ApplyChange(ctx, mem, there, store.Change{Kind: store.ChangeKBDeleted, KBID: kbA}); err != nil || found() != 0 {
		t.Fatalf("after the knowledge base's deletion: %d sources, %v", found(), err)
	}

	// A reload: a knowledge base deleted while the index was not following is dropped.
	stale := "00000000-0000-4000-8000-00000000dead"
	if err := there.Upsert(ctx, []vectorstore.Point{{ChunkID: "00000000-0000-4000-8000-000000000bad", KBID: stale, DocumentID: docX,
		Sparse: vectorstore.Sparse{Indices: []uint32{1}, Values: []float32{1}}}}); err != nil {
		t.Fatal(err)
	}
	kbs, chunks, err := LoadAll(ctx, mem, there)
	if err != nil || kbs != 1 || chunks != 1 {
		t.Fatalf("LoadAll = %d knowledge bases, %d chunks, %v; want 1, 1", kbs, chunks, err)
	}
	if ids := there.KBIDs(); len(ids) != 1 || ids[0] != kbA || found() != 1 {
		t.Fatalf("after LoadAll: the index holds %v and finds %d sources; want only %s, 1", ids, found(), kbA)
	}
}
