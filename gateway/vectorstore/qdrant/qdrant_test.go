package qdrant

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/ragway/ragway/gateway/vectorstore"
	"github.com/ragway/ragway/gateway/vectorstore/qdrant/qdranttest"
	"github.com/ragway/ragway/gateway/vectorstore/vectorstoretest"
)

var prefixes atomic.Int64

// uniquePrefix returns a collection prefix no other test uses, also across
// runs against one real server.
func uniquePrefix() string {
	return fmt.Sprintf("rwtest%d_%d", time.Now().UnixNano()%1e9, prefixes.Add(1))
}

func open(t *testing.T, url string) *Store {
	t.Helper()
	prefix := uniquePrefix()
	s, err := New(context.Background(), Config{URL: url, Collection: prefix, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { dropPrefix(t, url, prefix) })
	return s
}

// dropPrefix deletes every collection whose name starts with prefix.
func dropPrefix(t *testing.T, url, prefix string) {
	s, err := New(context.Background(), Config{URL: url, Collection: prefix})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer s.Close()
	ctx := context.Background()
	names, err := s.client.ListCollections(ctx)
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, n := range names {
		if strings.HasPrefix(n, prefix+"_") {
			if _, err := s.client.GetCollectionsClient().Delete(ctx, &qc.DeleteCollection{CollectionName: n}); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	}
}

func TestContractStandIn(t *testing.T) {
	addr := qdranttest.Start(t)
	vectorstoretest.Run(t, func(t *testing.T) vectorstore.Store { return open(t, addr) })
}

func TestContractRealQdrant(t *testing.T) {
	url := os.Getenv("QDRANT_URL")
	if url == "" {
		t.Skip("QDRANT_URL is not set: skipping the contract tests against a real Qdrant (the stand-in variant ran)")
	}
	vectorstoretest.Run(t, func(t *testing.T) vectorstore.Store { return open(t, url) })
}

var id = vectorstoretest.ID

func TestRetryTransient(t *testing.T) {
	srv := qdranttest.New()
	addr := srv.Start(t)
	s := open(t, addr)
	defer s.Close()
	ctx := context.Background()
	p := vectorstore.Point{ChunkID: id(1), KBID: "kb", DocumentID: "d", Dense: []float32{1, 0}, Sparse: vectorstoretest.Terms(1)}
	if err := s.Upsert(ctx, []vectorstore.Point{p}); err != nil {
		t.Fatalf("Upsert: %v", err)
	}

	const upsertRPC = "/qdrant.Points/Upsert"
	before := srv.Calls(upsertRPC)
	srv.FailNext(2, codes.Unavailable)
	p.ChunkID = id(2)
	if err := s.Upsert(ctx, []vectorstore.Point{p}); err != nil {
		t.Fatalf("Upsert after 2 transient failures: %v", err)
	}
	if n := srv.Calls(upsertRPC) - before; n != 3 {
		t.Errorf("%d upsert calls, want 3 (2 failed, 1 retry that succeeds)", n)
	}
	hits, err := s.Search(ctx, vectorstore.Query{KBID: "kb", Sparse: vectorstoretest.Terms(1), TopK: 10})
	if err != nil || len(hits) != 2 {
		t.Fatalf("Search after the retried upsert: %v, %v; want 2 hits", hits, err)
	}

	for _, code := range []codes.Code{codes.ResourceExhausted, codes.DeadlineExceeded} {
		srv.FailNext(1, code)
		if _, err := s.Search(ctx, vectorstore.Query{KBID: "kb", Dense: []float32{1, 0}, TopK: 1}); err != nil {
			t.Errorf("Search after one %v: %v", code, err)
		}
	}

	// Not transient: no retry, mapped.
	before = srv.Calls(upsertRPC)
	srv.FailNext(1, codes.InvalidArgument)
	if err := s.Upsert(ctx, []vectorstore.Point{p}); !errors.Is(err, vectorstore.ErrInvalid) {
		t.Errorf("Upsert failing with InvalidArgument: %v, want ErrInvalid", err)
	}
	if n := srv.Calls(upsertRPC) - before; n != 1 {
		t.Errorf("InvalidArgument: %d upsert calls, want 1", n)
	}

	// Failing for good: ErrUnavailable once the timeout is spent.
	short, err := New(ctx, Config{URL: addr, Collection: s.prefix, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer short.Close()
	srv.FailNext(1<<30, codes.Unavailable)
	defer srv.FailNext(0, codes.OK)
	_, err = short.Search(ctx, vectorstore.Query{KBID: "kb", Sparse: vectorstoretest.Terms(1), TopK: 1})
	if !errors.Is(err, vectorstore.ErrUnavailable) {
		t.Errorf("Search while the server stays unavailable: %v, want ErrUnavailable", err)
	}
	// The caller's context bounds the retries too.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Upsert(cctx, []vectorstore.Point{p}); !errors.Is(err, context.Canceled) {
		t.Errorf("Upsert with a cancelled context: %v, want context.Canceled", err)
	}
}

func TestUnavailableWhenNothingListens(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	const timeout = 300 * time.Millisecond
	start := time.Now()
	_, err = New(context.Background(), Config{URL: addr, Timeout: timeout})
	if !errors.Is(err, vectorstore.ErrUnavailable) {
		t.Fatalf("New against a closed port: %v, want ErrUnavailable", err)
	}
	// Bounded by the timeout (with slack for a loaded machine), not by the
	// default 10s.
	if d := time.Since(start); d > timeout+5*time.Second {
		t.Errorf("New took %v with a %v timeout", d, timeout)
	}
}

func TestDiscoveryAfterRestart(t *testing.T) {
	srv := qdranttest.New()
	addr := srv.Start(t)
	ctx := context.Background()
	prefix := uniquePrefix()
	cfg := Config{URL: "http://" + addr, Collection: prefix}
	s1, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	const odd = "kb with spaces/ü" // not usable in a collection name as is
	sp := vectorstoretest.Terms
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s1.Upsert(ctx, []vectorstore.Point{
		{ChunkID: id(1), KBID: "kb-dense", DocumentID: "d", Dense: []float32{1, 0, 0}, Sparse: sp(1)},
		{ChunkID: id(2), KBID: "kb-sparse", DocumentID: "d", Sparse: sp(1)},
		{ChunkID: id(3), KBID: odd, DocumentID: "d", Dense: []float32{0, 1}, Sparse: sp(1)},
	}))
	must(s1.Close())
	if _, err := s1.Search(ctx, vectorstore.Query{KBID: "kb-dense", Sparse: sp(1), TopK: 1}); !errors.Is(err, vectorstore.ErrClosed) {
		t.Errorf("Search after Close: %v, want ErrClosed", err)
	}

	want := []string{
		prefix + "_kb_kb-dense_d3",
		prefix + "_kb_kb-sparse_sparse",
		s1.stem(odd) + "_d2",
	}
	slices.Sort(want)
	if got := srv.Collections(); !slices.Equal(got, want) {
		t.Errorf("collections %v, want %v", got, want)
	}
	if !strings.HasPrefix(s1.stem(odd), prefix+"_kbh_") {
		t.Errorf("stem of %q: %q", odd, s1.stem(odd))
	}

	s2, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, tc := range []struct {
		kb    string
		dense []float32
		want  string
	}{
		{"kb-dense", []float32{1, 0, 0}, id(1)},
		{"kb-sparse", nil, id(2)},
		{odd, []float32{0, 1}, id(3)},
	} {
		hits, err := s2.Search(ctx, vectorstore.Query{KBID: tc.kb, Dense: tc.dense, Sparse: sp(1), TopK: 5})
		if err != nil || len(hits) != 1 || hits[0].ChunkID != tc.want {
			t.Errorf("%s after restart: %v, %v; want %s", tc.kb, hits, err, tc.want)
		}
	}
	// The dimensions were discovered too.
	for _, p := range []vectorstore.Point{
		{ChunkID: id(4), KBID: "kb-dense", DocumentID: "d", Dense: []float32{1, 0}},
		{ChunkID: id(4), KBID: "kb-sparse", DocumentID: "d", Dense: []float32{1, 0}},
	} {
		if err := s2.Upsert(ctx, []vectorstore.Point{p}); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Errorf("Upsert of dimension 2 into %s after restart: %v, want ErrInvalid", p.KBID, err)
		}
	}
	if _, err := s2.Search(ctx, vectorstore.Query{KBID: "kb-dense", Dense: []float32{1, 0}, TopK: 1}); !errors.Is(err, vectorstore.ErrInvalid) {
		t.Errorf("Search with dimension 2 after restart: %v, want ErrInvalid", err)
	}

	// Collections carry the documented schema.
	info, err := s2.client.GetCollectionInfo(ctx, prefix+"_kb_kb-dense_d3")
	must(err)
	dense := info.GetConfig().GetParams().GetVectorsConfig().GetParamsMap().GetMap()[DenseVector]
	if dense.GetSize() != 3 || dense.GetDistance() != qc.Distance_Cosine {
		t.Errorf("dense vector params %v", dense)
	}
	sparse := info.GetConfig().GetParams().GetSparseVectorsConfig().GetMap()[SparseVector]
	if sparse.GetModifier() != qc.Modifier_Idf {
		t.Errorf("sparse vector params %v", sparse)
	}
	for _, f := range []string{FieldKB, FieldDoc, FieldChunk} {
		if info.GetPayloadSchema()[f].GetDataType() != qc.PayloadSchemaType_Keyword {
			t.Errorf("payload field %s: %v, want a keyword index", f, info.GetPayloadSchema()[f])
		}
	}

	// Another prefix sees nothing.
	other, err := New(ctx, Config{URL: addr, Collection: uniquePrefix()})
	must(err)
	defer other.Close()
	if hits, err := other.Search(ctx, vectorstore.Query{KBID: "kb-dense", Sparse: sp(1), TopK: 5}); err != nil || len(hits) != 0 {
		t.Errorf("other prefix: %v, %v; want nothing", hits, err)
	}

	must(s2.DeleteKB(ctx, "kb-dense"))
	if slices.Contains(srv.Collections(), prefix+"_kb_kb-dense_d3") {
		t.Errorf("DeleteKB left the collection: %v", srv.Collections())
	}
	// A store that still has the deleted knowledge base cached recovers.
	s3, err := New(ctx, cfg)
	must(err)
	defer s3.Close()
	must(s3.Upsert(ctx, []vectorstore.Point{{ChunkID: id(5), KBID: odd, DocumentID: "d", Dense: []float32{1, 1}}}))
	must(s2.DeleteKB(ctx, odd))
	if hits, err := s3.Search(ctx, vectorstore.Query{KBID: odd, Dense: []float32{1, 1}, TopK: 5}); err != nil || len(hits) != 0 {
		t.Errorf("search of a knowledge base deleted by another store: %v, %v", hits, err)
	}
	must(s3.Upsert(ctx, []vectorstore.Point{{ChunkID: id(6), KBID: odd, DocumentID: "d", Dense: []float32{1, 1, 1}}}))
	if hits, err := s2.Search(ctx, vectorstore.Query{KBID: odd, Dense: []float32{1, 1, 1}, TopK: 5}); err != nil || len(hits) != 1 {
		t.Errorf("knowledge base recreated by another store: %v, %v", hits, err)
	}
}

func TestClosed(t *testing.T) {
	s := open(t, qdranttest.Start(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	ctx := context.Background()
	p := vectorstore.Point{ChunkID: id(1), KBID: "kb", DocumentID: "d", Sparse: vectorstoretest.Terms(1)}
	for name, err := range map[string]error{
		"Upsert":         s.Upsert(ctx, []vectorstore.Point{p}),
		"DeleteDocument": s.DeleteDocument(ctx, "kb", "d"),
		"DeleteKB":       s.DeleteKB(ctx, "kb"),
	} {
		if !errors.Is(err, vectorstore.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if _, err := s.Search(ctx, vectorstore.Query{KBID: "kb", Sparse: vectorstoretest.Terms(1), TopK: 1}); !errors.Is(err, vectorstore.ErrClosed) {
		t.Errorf("Search after Close: %v, want ErrClosed", err)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		url  string
		host string
		port int
		tls  bool
	}{
		{"localhost:6334", "localhost", 6334, false},
		{"qdrant", "qdrant", DefaultPort, false},
		{"http://10.0.0.1:7000", "10.0.0.1", 7000, false},
		{"https://q.example.com", "q.example.com", DefaultPort, true},
		{"https://q.example.com:443/", "q.example.com", 443, true},
		{"[::1]:6334", "::1", 6334, false},
	} {
		host, port, tls, err := parseURL(tc.url)
		if err != nil || host != tc.host || port != tc.port || tls != tc.tls {
			t.Errorf("parseURL(%q) = %q %d %v %v, want %q %d %v", tc.url, host, port, tls, err, tc.host, tc.port, tc.tls)
		}
	}
	for _, bad := range []string{"", "ftp://h:1", "http://h:1/path", "h:0", "h:99999", "h:x", "http://:1"} {
		if _, _, _, err := parseURL(bad); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Errorf("parseURL(%q): %v, want ErrInvalid", bad, err)
		}
	}
	for _, prefix := range []string{"has space", "a/b", strings.Repeat("x", 65)} {
		if _, err := New(context.Background(), Config{URL: "localhost:1", Collection: prefix}); !errors.Is(err, vectorstore.ErrInvalid) {
			t.Errorf("New with prefix %q: %v, want ErrInvalid", prefix, err)
		}
	}
}
