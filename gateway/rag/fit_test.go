package rag

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/tokens"
	"github.com/ragway/ragway/gateway/vectorstore/embedded"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestResplit(t *testing.T) {
	english := strings.Repeat("The gateway retries a request once when its replica dies. A request that kills two replicas is refused, ", 3) +
		strings.Repeat("and words without any sentence end go on and on ", 12)
	chinese := strings.Repeat("网关返回503错误时，客户端应当按照指数退避的方式重试。", 12)
	for _, tc := range []struct {
		name            string
		text            string
		target, overlap int
	}{
		{"english", english, 40, 6},
		{"english no overlap", english, 25, 0},
		{"chinese", chinese, 30, 5},
		{"one long token", strings.Repeat("z", 900), 50, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A chunk as Split makes it: an overlap from the chunk before, then its own text.
			prev := "Earlier text ends here. Its last sentence is the overlap."
			c := Chunk{Heading: "Doc > Part", Text: prev[24:] + " " + tc.text, OverlapBytes: len(prev[24:]) + 1}
			pieces := Resplit(c, tc.target, tc.overlap)
			if len(pieces) < 2 {
				t.Fatalf("%d pieces", len(pieces))
			}
			ovLimit := min(tc.overlap, tc.target/2)
			var own strings.Builder
			for i, p := range pieces {
				if p.Heading != c.Heading {
					t.Errorf("piece %d: heading %q, want %q", i, p.Heading, c.Heading)
				}
				if p.Tokens != tokens.Estimate(p.Text) || p.Tokens > tc.target || !utf8.ValidString(p.Text) || p.Text != strings.TrimSpace(p.Text) {
					t.Errorf("piece %d: %d tokens (target %d): %q", i, p.Tokens, tc.target, p.Text)
				}
				ov := p.Text[:p.OverlapBytes]
				if tokens.Estimate(ov) > ovLimit {
					t.Errorf("piece %d: overlap %q over %d tokens", i, ov, ovLimit)
				}
				switch {
				case ovLimit == 0 && ov != "":
					t.Errorf("piece %d: overlap %q, want none", i, ov)
				case i == 0 && !strings.HasSuffix(c.Text[:c.OverlapBytes], ov):
					t.Errorf("first piece: overlap %q is not the end of the chunk's own overlap", ov)
				case i > 0 && !strings.HasSuffix(pieces[i-1].Text, strings.TrimSpace(ov)):
					t.Errorf("piece %d: overlap %q is not the end of the piece before", i, ov)
				}
				own.WriteString(p.Text[p.OverlapBytes:])
			}
			if stripSpace(own.String()) != stripSpace(c.Text[c.OverlapBytes:]) {
				t.Fatal("the pieces' own texts do not reproduce the chunk's own text")
			}
		})
	}
	// Sentences that fit are not cut.
	sentences := strings.TrimSpace(strings.Repeat("The gateway retries a request once when its replica dies. A request that kills two replicas is refused. ", 4))
	for _, p := range Resplit(Chunk{Text: sentences}, 45, 0) {
		if !endsSentence(p.Text) {
			t.Errorf("piece not cut at a sentence end: %q", p.Text)
		}
	}
}

// byteModel is an embedding model whose tokens are bytes: it takes at most limit
// of them per input, refusing more unless told to truncate, as llama.cpp does. Its
// vectors count letters. canCount false: Tokenize is unsupported.
type byteModel struct {
	limit    int
	canCount bool

	mu        sync.Mutex
	truncated []bool // the truncate flag of each Embed
}

func (m *byteModel) Embed(_ context.Context, texts []string, truncate bool) ([][]float32, error) {
	m.mu.Lock()
	m.truncated = append(m.truncated, truncate)
	m.mu.Unlock()
	out := make([][]float32, len(texts))
	for i, s := range texts {
		if len(s) > m.limit {
			if !truncate {
				return nil, sdk.InvalidRequestf("input[%d] is %d tokens; at most %d fit", i, len(s), m.limit)
			}
			s = s[:m.limit]
		}
		v := make([]float32, 26)
		for _, r := range strings.ToLower(s) {
			if r >= 'a' && r <= 'z' {
				v[r-'a']++
			}
		}
		out[i] = v
	}
	return out, nil
}

func (m *byteModel) Tokenize(_ context.Context, texts []string) ([]int, int, error) {
	if !m.canCount {
		return nil, 0, fmt.Errorf("tokenize: %w", sdk.ErrUnsupported)
	}
	counts := make([]int, len(texts))
	for i, s := range texts {
		counts[i] = len(s)
	}
	return counts, m.limit, nil
}

// longParagraphs is a document of long paragraphs under headings: its chunks are
// far over 200 bytes.
func longParagraphs() string {
	var b strings.Builder
	for i := range 4 {
		fmt.Fprintf(&b, "# Part %d\n\n", i)
		for range 3 {
			b.WriteString(strings.Repeat("When the database is down the gateway answers 503 and reconnects by itself, with backoff. ", 6))
			b.WriteString("\n\n")
		}
	}
	return b.String()
}

func TestIndexerSplitsChunksOverTheModelLimit(t *testing.T) {
	ctx := context.Background()
	mem := newMemChunks("alice")
	vs := embedded.New()
	defer vs.Close()
	model := &byteModel{limit: 200, canCount: true}
	x := &Indexer{Store: mem, Vectors: vs, Embedding: model, Options: Options{ChunkTokens: 120}}
	doc := Document{Title: "Ops", Text: longParagraphs(), Markdown: true}
	n, err := x.Index(ctx, "alice", kbA, docX, doc, Settings{})
	if err != nil {
		t.Fatalf("indexing long paragraphs with a 200-token model: %v", err)
	}
	sparseOnly := len(Split(Document{Title: doc.Title, Text: Normalize(doc.Text), Markdown: true}, x.Options))
	if n <= sparseOnly {
		t.Fatalf("%d chunks, want more than the %d chunks that do not fit", n, sparseOnly)
	}
	if len(model.truncated) != 1 || model.truncated[0] {
		t.Fatalf("Embed calls' truncate flags %v, want one call without truncation", model.truncated)
	}
	byOrdinal := map[int]bool{}
	for _, c := range mem.chunks {
		if l := len(c.Heading + "\n" + c.Content); l > model.limit || len(c.Dense) == 0 {
			t.Errorf("chunk %d: %d tokens (limit %d), dense %v", c.Ordinal, l, model.limit, len(c.Dense))
		}
		if !strings.HasPrefix(c.Heading, "Ops > Part ") {
			t.Errorf("chunk %d lost its heading path: %q", c.Ordinal, c.Heading)
		}
		byOrdinal[c.Ordinal] = true
	}
	for i := range n {
		if !byOrdinal[i] {
			t.Fatalf("ordinals are not 0..%d: %d missing", n-1, i)
		}
	}
	// Dense retrieval finds them.
	r := &Retriever{Vectors: vs, Chunks: mem, Embedding: model}
	if srcs, err := r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: "database reconnects", TopK: 3}); err != nil || len(srcs) == 0 {
		t.Fatalf("retrieve: %+v, %v", srcs, err)
	}
}

func TestIndexerTruncatesWhenTheModelCannotCount(t *testing.T) {
	ctx := context.Background()
	mem := newMemChunks("alice")
	vs := embedded.New()
	defer vs.Close()
	var logs logCount
	model := &byteModel{limit: 200}
	x := &Indexer{Store: mem, Vectors: vs, Embedding: model, Options: Options{ChunkTokens: 120}, Logger: slog.New(&logs)}
	for _, id := range []string{docX, docY} {
		if _, err := x.Index(ctx, "alice", kbA, id, Document{Text: longParagraphs(), Markdown: true}, Settings{}); err != nil {
			t.Fatalf("indexing with a model that cannot count: %v", err)
		}
	}
	if len(model.truncated) != 2 || !model.truncated[0] || !model.truncated[1] {
		t.Fatalf("Embed calls' truncate flags %v, want truncation for both documents", model.truncated)
	}
	if n := logs.n(); n != 1 {
		t.Fatalf("%d warnings, want the model's inability logged once", n)
	}
}

func TestRetrieveTruncatesALongQuestionForTheModel(t *testing.T) {
	ctx := context.Background()
	mem := newMemChunks("alice")
	vs := embedded.New()
	defer vs.Close()
	model := &byteModel{limit: 200, canCount: true}
	x := &Indexer{Store: mem, Vectors: vs, Embedding: model}
	if _, err := x.Index(ctx, "alice", kbA, docX, Document{Text: "The gateway reconnects to the database."}, Settings{}); err != nil {
		t.Fatal(err)
	}
	r := &Retriever{Vectors: vs, Chunks: mem, Embedding: model}
	// No word in common with the chunk (the sparse side finds nothing), and far over
	// the model's limit: the dense side still answers.
	q := strings.Repeat("qwertz zyxwv ", 100)
	srcs, err := r.Retrieve(ctx, Request{UserID: "alice", KBID: kbA, Query: q, TopK: 3})
	if err != nil || len(srcs) != 1 {
		t.Fatalf("a question over the model's limit: %+v, %v; want the chunk by its embedding", srcs, err)
	}
}

// logCount is a slog.Handler counting records of level Warn and above.
type logCount struct {
	mu    sync.Mutex
	count int
}

func (l *logCount) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCount) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		l.mu.Lock()
		l.count++
		l.mu.Unlock()
	}
	return nil
}
func (l *logCount) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCount) WithGroup(string) slog.Handler      { return l }
func (l *logCount) n() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

// TestFitAMixedCorpus: Chinese and English under headings, code fences, a model
// counting 3 tokens per Chinese character (bytes): every chunk fits, keeps its
// heading path, and the chunks' own texts still reproduce the document.
func TestFitAMixedCorpus(t *testing.T) {
	doc, bodies := mixedCorpus(60 << 10)
	d := Document{Title: "Corpus", Text: Normalize(doc), Markdown: true}
	for _, limit := range []int{512, 300, 160, 100} {
		model := &byteModel{limit: limit, canCount: true}
		x := &Indexer{Embedding: model}
		cs, truncate, err := x.fit(context.Background(), Split(d, x.Options), x.Options)
		if err != nil || truncate {
			t.Fatalf("limit %d: fit: truncate %v, %v", limit, truncate, err)
		}
		var own strings.Builder
		for i, c := range cs {
			if l := len(embedText(c)); l > limit || c.Ordinal != i {
				t.Errorf("limit %d: chunk %d (ordinal %d) is %d tokens: %q", limit, i, c.Ordinal, l, embedText(c))
			}
			if c.Heading != "Corpus" && !strings.HasPrefix(c.Heading, "Corpus > 第") {
				t.Errorf("limit %d: chunk %d: heading %q", limit, i, c.Heading)
			}
			if c.OverlapBytes > 0 && (cs[i-1].Heading != c.Heading || !strings.HasSuffix(cs[i-1].Text, strings.TrimSpace(c.Text[:c.OverlapBytes]))) {
				t.Errorf("limit %d: chunk %d: overlap %q not from the previous chunk", limit, i, c.Text[:c.OverlapBytes])
			}
			own.WriteString(c.Text[c.OverlapBytes:] + "\n")
		}
		if stripSpace(withoutHeadings(own.String())) != stripSpace(bodies) {
			t.Errorf("limit %d: the chunks do not reproduce the document", limit)
		}
	}
}
