package store_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ragway/ragway/gateway/store"
)

// wantField fails the test unless err is a *store.FieldError about field (an
// ErrInvalid) whose reason is words for a client, not Postgres's.
func wantField(t *testing.T, what string, err error, field string) {
	t.Helper()
	var fe *store.FieldError
	switch {
	case !errors.As(err, &fe):
		t.Errorf("%s: got %v, want a FieldError about %q", what, err, field)
	case fe.Field != field:
		t.Errorf("%s: FieldError about %q, want %q", what, fe.Field, field)
	case !errors.Is(err, store.ErrInvalid):
		t.Errorf("%s: %v is not ErrInvalid", what, err)
	case strings.Contains(fe.Reason, "UTF8") || strings.Contains(fe.Reason, "constraint"):
		t.Errorf("%s: reason %q is Postgres's", what, fe.Reason)
	}
}

// TestTextIsCheckedBeforeAnyWrite: text Postgres cannot store (NUL, invalid UTF-8) or
// that breaks a constraint is a FieldError naming the field, and nothing is written.
func TestTextIsCheckedBeforeAnyWrite(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	for _, bad := range []string{"nul\x00here", "bad \xff byte"} {
		_, err := s.CreateKnowledgeBase(ctx(t), u.ID, store.NewKnowledgeBase{Name: bad})
		wantField(t, "kb name", err, "name")
		_, err = s.CreateKnowledgeBase(ctx(t), u.ID, store.NewKnowledgeBase{Name: "ok", Description: bad})
		wantField(t, "kb description", err, "description")
		_, err = s.CreateConversation(ctx(t), u.ID, store.NewConversation{Title: bad})
		wantField(t, "conversation title", err, "title")
		_, err = s.CreateConversation(ctx(t), u.ID, store.NewConversation{SystemPrompt: bad})
		wantField(t, "conversation system prompt", err, "system_prompt")
		_, err = s.BeginTurn(ctx(t), u.ID, "", userTurn(bad))
		wantField(t, "turn message", err, "content")
		sys := bad
		tr := userTurn("fine")
		tr.SystemPrompt = &sys
		_, err = s.BeginTurn(ctx(t), u.ID, "", tr)
		wantField(t, "turn system prompt", err, "system_prompt")
	}
	_, err := s.CreateKnowledgeBase(ctx(t), u.ID, store.NewKnowledgeBase{Name: strings.Repeat("é", 201)})
	wantField(t, "kb name too long", err, "name")
	if n := count(t, s, `SELECT count(*) FROM knowledge_bases`) + count(t, s, `SELECT count(*) FROM conversations`); n != 0 {
		t.Errorf("%d rows written", n)
	}

	kb, err := s.CreateKnowledgeBase(ctx(t), u.ID, store.NewKnowledgeBase{Name: strings.Repeat("é", 200)})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"nul\x00here", "bad \xff byte"} {
		_, err = s.CreateDocument(ctx(t), u.ID, kb.ID, store.NewDocument{Title: bad, SHA256: hash(bad)})
		wantField(t, "document title", err, "title")
		_, err = s.CreateDocument(ctx(t), u.ID, kb.ID, store.NewDocument{Title: "t", Source: bad, SHA256: hash(bad)})
		wantField(t, "document source", err, "source")
	}
	if n := count(t, s, `SELECT count(*) FROM documents`); n != 0 {
		t.Errorf("%d documents written", n)
	}
}

// TestDeleteKnowledgeBaseDuringUploads runs uploads (a document created, then indexed
// with its chunks) into a knowledge base while it is deleted, many times: every upload
// either succeeds or finds the knowledge base gone (ErrNotFound), the delete succeeds,
// and nothing is a database error (a deadlock between the index's COPY and the delete's
// cascade once was).
func TestDeleteKnowledgeBaseDuringUploads(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	const rounds, uploads, chunks = 60, 4, 40
	for round := range rounds {
		kb, err := s.CreateKnowledgeBase(ctx(t), u.ID, store.NewKnowledgeBase{Name: fmt.Sprintf("kb%d", round)})
		if err != nil {
			t.Fatal(err)
		}
		var (
			wg      sync.WaitGroup
			created = make(chan struct{}, uploads)
			mu      sync.Mutex
			errs    []error
		)
		fail := func(what string, err error) {
			mu.Lock()
			errs = append(errs, fmt.Errorf("round %d: %s: %w", round, what, err))
			mu.Unlock()
		}
		for i := range uploads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				text := fmt.Sprintf("round %d upload %d", round, i)
				d, err := s.CreateDocument(ctx(t), u.ID, kb.ID, store.NewDocument{Title: text, SHA256: hash(text), Bytes: 1})
				created <- struct{}{}
				if err != nil {
					if !errors.Is(err, store.ErrNotFound) {
						fail("create document", err)
					}
					return
				}
				cs := make([]store.NewChunk, chunks)
				for k := range cs {
					cs[k] = store.NewChunk{Ordinal: k, Content: text, SparseIndices: []uint32{uint32(k)}, SparseValues: []float32{1}}
				}
				if _, err := s.IndexDocument(ctx(t), u.ID, kb.ID, d.ID, cs); err != nil && !errors.Is(err, store.ErrNotFound) {
					fail("index document", err)
				}
			}()
		}
		// The delete starts once an upload has its document: the index and the
		// delete's cascade then run at the same time.
		<-created
		if err := s.DeleteKnowledgeBase(ctx(t), u.ID, kb.ID); err != nil {
			fail("delete knowledge base", err)
		}
		wg.Wait()
		for _, err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
	}
	if n := count(t, s, `SELECT count(*) FROM chunks`) + count(t, s, `SELECT count(*) FROM documents`); n != 0 {
		t.Errorf("%d documents and chunks outlive their knowledge bases", n)
	}
}

// TestTransientConflictsAreRetried: a deadlock or serialization failure (Postgres rolled
// the work back) is run again a bounded number of times; one that persists is
// ErrDatabase, never a client's error.
func TestTransientConflictsAreRetried(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	// Postgres itself fails the first inserts into conversations: a sequence is not
	// rolled back with the failed statement, so it counts the attempts.
	if _, err := s.DB().ExecContext(ctx(t), `
		CREATE SEQUENCE attempts;
		CREATE TABLE fail_first (n bigint, code text);
		CREATE FUNCTION fail_first() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE f fail_first;
		BEGIN
			SELECT * INTO f FROM fail_first;
			IF nextval('attempts') <= f.n THEN
				RAISE EXCEPTION 'conflict' USING ERRCODE = f.code;
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER fail_first BEFORE INSERT ON conversations FOR EACH ROW EXECUTE FUNCTION fail_first();`); err != nil {
		t.Fatal(err)
	}
	attempts := func(n int, code string) {
		t.Helper()
		for _, q := range []string{`DELETE FROM fail_first`, fmt.Sprintf(`INSERT INTO fail_first VALUES (%d, '%s')`, n, code),
			`SELECT setval('attempts', 1, false)`} {
			if _, err := s.DB().ExecContext(ctx(t), q); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, code := range []string{"40P01", "40001"} {
		attempts(2, code)
		if _, err := s.CreateConversation(ctx(t), u.ID, store.NewConversation{Title: code}); err != nil {
			t.Errorf("%s twice: %v", code, err)
		}
		attempts(100, code)
		_, err := s.CreateConversation(ctx(t), u.ID, store.NewConversation{Title: code})
		wantErr(t, code+" always", err, store.ErrDatabase)
		if n := count(t, s, `SELECT last_value FROM attempts`); n < 2 || n > 10 {
			t.Errorf("%s always: %d attempts, want a few", code, n)
		}
	}
	if n := count(t, s, `SELECT count(*) FROM conversations`); n != 2 {
		t.Errorf("%d conversations, want 2", n)
	}
}
