package qdrant

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ragway/ragway/gateway/vectorstore"
)

var _ vectorstore.Store = (*Store)(nil)

// Names of the vectors and payload fields of every collection.
const (
	DenseVector  = "dense"
	SparseVector = "sparse"
	FieldKB      = "kb_id"
	FieldDoc     = "document_id"
	FieldChunk   = "chunk_id"
)

const (
	// DefaultPort is Qdrant's gRPC port, used when Config.URL has none.
	DefaultPort = 6334
	// DefaultCollection is the default collection name prefix.
	DefaultCollection = "ragway"
	// DefaultTimeout bounds each Store call when Config.Timeout is 0.
	DefaultTimeout = 10 * time.Second
)

// Config says where the Qdrant server is and how to use it.
type Config struct {
	// URL is the server's gRPC address: "host:port", "host" (port 6334),
	// "http://host:port" or "https://host:port" (TLS).
	URL string
	// APIKey, if set, is sent with every call.
	APIKey string
	// Collection is the prefix of the collection names (see the package
	// documentation): ASCII letters, digits, '-' and '_', at most 64.
	// Default "ragway".
	Collection string
	// Timeout bounds each Store call, retries included. Default 10s.
	Timeout time.Duration
}

// Store is a vectorstore.Store on a Qdrant server. It is safe for concurrent
// use.
type Store struct {
	client  *qc.Client
	prefix  string
	timeout time.Duration
	closed  atomic.Bool

	// createMu serialises the resolution and creation of collections
	// (Upsert) and their deletion (DeleteKB).
	createMu sync.Mutex
	mu       sync.Mutex
	kbs      map[string]coll // cache: kb id → its collection
}

// coll is a knowledge base's collection; dim is 0 for a sparse-only one.
type coll struct {
	name string
	dim  int
}

// New connects to the server and checks that it answers (a health check,
// within cfg.Timeout). Errors: vectorstore.ErrInvalid for a bad Config,
// vectorstore.ErrUnavailable when the server cannot be reached.
func New(ctx context.Context, cfg Config) (*Store, error) {
	host, port, useTLS, err := parseURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	prefix := cfg.Collection
	if prefix == "" {
		prefix = DefaultCollection
	}
	if !validName(prefix, true) {
		return nil, fmt.Errorf("qdrant: %w: collection prefix %q: want 1-64 of [A-Za-z0-9_-]", vectorstore.ErrInvalid, prefix)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	client, err := qc.NewClient(&qc.Config{
		Host:                   host,
		Port:                   port,
		APIKey:                 cfg.APIKey,
		UseTLS:                 useTLS,
		SkipCompatibilityCheck: true, // it would log, not fail; the health check below is ours
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant: %w: %w", vectorstore.ErrInvalid, err)
	}
	s := &Store{client: client, prefix: prefix, timeout: timeout, kbs: make(map[string]coll)}
	err = s.call(ctx, "health check", func(ctx context.Context) error {
		_, err := client.HealthCheck(ctx)
		return err
	})
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return s, nil
}

func parseURL(raw string) (host string, port int, useTLS bool, err error) {
	bad := func(why string) (string, int, bool, error) {
		return "", 0, false, fmt.Errorf("qdrant: %w: url %q: %s", vectorstore.ErrInvalid, raw, why)
	}
	if raw == "" {
		return bad("empty")
	}
	var portStr string
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil {
			return bad(err.Error())
		}
		switch u.Scheme {
		case "http":
		case "https":
			useTLS = true
		default:
			return bad("scheme must be http or https")
		}
		if u.Path != "" && u.Path != "/" {
			return bad("unexpected path")
		}
		host, portStr = u.Hostname(), u.Port()
	} else if h, p, err := net.SplitHostPort(raw); err == nil {
		host, portStr = h, p
	} else {
		host = raw
	}
	if host == "" {
		return bad("no host")
	}
	port = DefaultPort
	if portStr != "" {
		port, err = strconv.Atoi(portStr)
		if err != nil || port < 1 || port > 65535 {
			return bad("bad port")
		}
	}
	return host, port, useTLS, nil
}

// validName reports whether s is 1-64 ASCII letters, digits and '-' (and '_'
// if underscore).
func validName(s string, underscore bool) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
		case c == '_' && underscore:
		default:
			return false
		}
	}
	return true
}

// stem is the common start of a knowledge base's collection names (without
// the trailing "_").
func (s *Store) stem(kbID string) string {
	if validName(kbID, false) {
		return s.prefix + "_kb_" + kbID
	}
	sum := sha256.Sum256([]byte(kbID))
	return s.prefix + "_kbh_" + hex.EncodeToString(sum[:16])
}

// collectionName is the name of kbID's collection for dense dimension dim
// (0: no dense vectors).
func (s *Store) collectionName(kbID string, dim int) string {
	if dim == 0 {
		return s.stem(kbID) + "_sparse"
	}
	return s.stem(kbID) + "_d" + strconv.Itoa(dim)
}

// parseCollection reports whether name is one of kbID's collections, and
// its dimension.
func (s *Store) parseCollection(kbID, name string) (dim int, ok bool) {
	rest, ok := strings.CutPrefix(name, s.stem(kbID)+"_")
	if !ok {
		return 0, false
	}
	if rest == "sparse" {
		return 0, true
	}
	d, ok := strings.CutPrefix(rest, "d")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(d)
	if err != nil || n < 1 || strconv.Itoa(n) != d {
		return 0, false
	}
	return n, true
}

// call runs f, retrying transient failures, within s.timeout and ctx, and
// maps the final error.
func (s *Store) call(ctx context.Context, op string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if !retryable(err) || ctx.Err() != nil || s.closed.Load() {
			return s.mapErr(ctx, op, err)
		}
		wait := backoff
		var re *qc.QdrantResourceExhaustedError
		if errors.As(err, &re) && re.RetryAfterS > 0 {
			wait = max(wait, time.Duration(re.RetryAfterS)*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return s.mapErr(ctx, op, err)
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

func retryable(err error) bool {
	var re *qc.QdrantResourceExhaustedError
	if errors.As(err, &re) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

func (s *Store) mapErr(ctx context.Context, op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("qdrant: %s: %w", op, vectorstore.ErrClosed)
	}
	var sentinel error
	if retryable(err) {
		sentinel = vectorstore.ErrUnavailable
	} else if status.Code(err) == codes.InvalidArgument {
		sentinel = vectorstore.ErrInvalid
	}
	var ctxErr error
	if ctx.Err() != nil {
		ctxErr = context.Cause(ctx)
	}
	switch {
	case sentinel != nil && ctxErr != nil:
		return fmt.Errorf("qdrant: %s: %w: %w: %w", op, sentinel, ctxErr, err)
	case sentinel != nil:
		return fmt.Errorf("qdrant: %s: %w: %w", op, sentinel, err)
	case ctxErr != nil:
		return fmt.Errorf("qdrant: %s: %w: %w", op, ctxErr, err)
	}
	return fmt.Errorf("qdrant: %s: %w", op, err)
}

func notFound(err error) bool { return status.Code(err) == codes.NotFound }

// lookup returns kbID's collection, from the cache or by listing the
// server's collections.
func (s *Store) lookup(ctx context.Context, kbID string) (coll, bool, error) {
	s.mu.Lock()
	c, ok := s.kbs[kbID]
	s.mu.Unlock()
	if ok {
		return c, true, nil
	}
	all, err := s.list(ctx, kbID)
	if err != nil || len(all) == 0 {
		return coll{}, false, err
	}
	c = all[0]
	for _, x := range all[1:] { // never more than one unless created by hand
		if x.dim > c.dim {
			c = x
		}
	}
	s.mu.Lock()
	s.kbs[kbID] = c
	s.mu.Unlock()
	return c, true, nil
}

// list returns every collection of kbID on the server.
func (s *Store) list(ctx context.Context, kbID string) ([]coll, error) {
	var names []string
	err := s.call(ctx, "list collections", func(ctx context.Context) error {
		var err error
		names, err = s.client.ListCollections(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []coll
	for _, n := range names {
		if dim, ok := s.parseCollection(kbID, n); ok {
			out = append(out, coll{name: n, dim: dim})
		}
	}
	return out, nil
}

func (s *Store) forget(kbID string) {
	s.mu.Lock()
	delete(s.kbs, kbID)
	s.mu.Unlock()
}

// create makes kbID's collection for dimension dim, with its payload
// indexes, unless it exists. Callers hold createMu.
func (s *Store) create(ctx context.Context, kbID string, dim int) (coll, error) {
	c := coll{name: s.collectionName(kbID, dim), dim: dim}
	req := &qc.CreateCollection{
		CollectionName: c.name,
		SparseVectorsConfig: qc.NewSparseVectorsConfig(map[string]*qc.SparseVectorParams{
			SparseVector: {Modifier: qc.Modifier_Idf.Enum()},
		}),
	}
	if dim > 0 {
		req.VectorsConfig = qc.NewVectorsConfigMap(map[string]*qc.VectorParams{
			DenseVector: {Size: uint64(dim), Distance: qc.Distance_Cosine},
		})
	}
	err := s.call(ctx, "create collection "+c.name, func(ctx context.Context) error {
		err := s.client.CreateCollection(ctx, req)
		if err != nil {
			// An earlier attempt (or another process) may have created it.
			if exists, e := s.client.CollectionExists(ctx, c.name); e == nil && exists {
				return nil
			}
		}
		return err
	})
	if err != nil {
		return coll{}, err
	}
	for _, field := range []string{FieldKB, FieldDoc, FieldChunk} {
		err := s.call(ctx, "create index "+field+" on "+c.name, func(ctx context.Context) error {
			_, err := s.client.CreateFieldIndex(ctx, &qc.CreateFieldIndexCollection{
				CollectionName: c.name,
				Wait:           qc.PtrOf(true),
				FieldName:      field,
				FieldType:      qc.FieldType_FieldTypeKeyword.Enum(),
			})
			return err
		})
		if err != nil {
			return coll{}, err
		}
	}
	s.mu.Lock()
	s.kbs[kbID] = c
	s.mu.Unlock()
	return c, nil
}

type batch struct {
	kbID string
	dim  int // dense dimension of the batch's points, 0 if none has one
	pts  []*qc.PointStruct
	c    coll
}

// Upsert implements vectorstore.Store. The batch is validated as a whole,
// dimensions included, before anything is written; it is then written one
// knowledge base at a time.
func (s *Store) Upsert(ctx context.Context, points []vectorstore.Point) error {
	if s.closed.Load() {
		return fmt.Errorf("qdrant: upsert: %w", vectorstore.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qdrant: upsert: %w", err)
	}
	var batches []*batch
	byKB := make(map[string]*batch)
	for i := range points {
		p := &points[i]
		if err := p.Validate(); err != nil {
			return fmt.Errorf("qdrant: upsert: %w", err)
		}
		b := byKB[p.KBID]
		if b == nil {
			b = &batch{kbID: p.KBID}
			byKB[p.KBID] = b
			batches = append(batches, b)
		}
		if p.Dense != nil {
			if b.dim == 0 {
				b.dim = len(p.Dense)
			} else if len(p.Dense) != b.dim {
				return fmt.Errorf("qdrant: upsert: chunk %s: %w: dense dimension %d, batch has %d for knowledge base %s",
					p.ChunkID, vectorstore.ErrInvalid, len(p.Dense), b.dim, p.KBID)
			}
		}
		b.pts = append(b.pts, pointStruct(p))
	}
	if err := s.resolve(ctx, batches); err != nil {
		return err
	}
	for _, b := range batches {
		err := s.upsert(ctx, b)
		if err != nil && notFound(err) {
			// The collection went away (DeleteKB elsewhere): start over once.
			s.forget(b.kbID)
			if err = s.resolve(ctx, []*batch{b}); err == nil {
				err = s.upsert(ctx, b)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// resolve finds or creates every batch's collection, after checking all of
// their dimensions.
func (s *Store) resolve(ctx context.Context, batches []*batch) error {
	s.createMu.Lock()
	defer s.createMu.Unlock()
	var missing []*batch
	for _, b := range batches {
		c, ok, err := s.lookup(ctx, b.kbID)
		if err != nil {
			return fmt.Errorf("qdrant: upsert: %w", err)
		}
		if !ok {
			missing = append(missing, b)
			continue
		}
		if b.dim != 0 && b.dim != c.dim {
			if c.dim == 0 {
				return fmt.Errorf("qdrant: upsert: %w: knowledge base %s has no dense vectors (collection %s); delete it before adding dense ones",
					vectorstore.ErrInvalid, b.kbID, c.name)
			}
			return fmt.Errorf("qdrant: upsert: %w: dense dimension %d, knowledge base %s has %d",
				vectorstore.ErrInvalid, b.dim, b.kbID, c.dim)
		}
		b.c = c
	}
	for _, b := range missing {
		c, err := s.create(ctx, b.kbID, b.dim)
		if err != nil {
			return fmt.Errorf("qdrant: upsert: %w", err)
		}
		b.c = c
	}
	return nil
}

func (s *Store) upsert(ctx context.Context, b *batch) error {
	return s.call(ctx, "upsert into "+b.c.name, func(ctx context.Context) error {
		_, err := s.client.Upsert(ctx, &qc.UpsertPoints{
			CollectionName: b.c.name,
			Wait:           qc.PtrOf(true),
			Points:         b.pts,
		})
		return err
	})
}

func pointStruct(p *vectorstore.Point) *qc.PointStruct {
	vectors := make(map[string]*qc.Vector, 2)
	if p.Dense != nil {
		vectors[DenseVector] = qc.NewVectorDense(p.Dense)
	}
	if len(p.Sparse.Indices) > 0 {
		vectors[SparseVector] = qc.NewVectorSparse(p.Sparse.Indices, p.Sparse.Values)
	}
	return &qc.PointStruct{
		Id: qc.NewIDUUID(p.ChunkID),
		Payload: map[string]*qc.Value{
			FieldKB:    qc.NewValueString(p.KBID),
			FieldDoc:   qc.NewValueString(p.DocumentID),
			FieldChunk: qc.NewValueString(p.ChunkID),
		},
		Vectors: qc.NewVectorsMap(vectors),
	}
}

// DeleteDocument implements vectorstore.Store.
func (s *Store) DeleteDocument(ctx context.Context, kbID, documentID string) error {
	if s.closed.Load() {
		return fmt.Errorf("qdrant: delete document: %w", vectorstore.ErrClosed)
	}
	if kbID == "" || documentID == "" {
		return fmt.Errorf("qdrant: delete document: %w: empty kb or document id", vectorstore.ErrInvalid)
	}
	c, ok, err := s.lookup(ctx, kbID)
	if err != nil || !ok {
		return err
	}
	err = s.call(ctx, "delete document from "+c.name, func(ctx context.Context) error {
		_, err := s.client.Delete(ctx, &qc.DeletePoints{
			CollectionName: c.name,
			Wait:           qc.PtrOf(true),
			Points: qc.NewPointsSelectorFilter(&qc.Filter{Must: []*qc.Condition{
				qc.NewMatchKeyword(FieldKB, kbID),
				qc.NewMatchKeyword(FieldDoc, documentID),
			}}),
		})
		return err
	})
	if err != nil && notFound(err) {
		s.forget(kbID)
		return nil
	}
	return err
}

// DeleteKB implements vectorstore.Store: it drops the knowledge base's
// collection.
func (s *Store) DeleteKB(ctx context.Context, kbID string) error {
	if s.closed.Load() {
		return fmt.Errorf("qdrant: delete kb: %w", vectorstore.ErrClosed)
	}
	if kbID == "" {
		return fmt.Errorf("qdrant: delete kb: %w: empty kb id", vectorstore.ErrInvalid)
	}
	s.createMu.Lock()
	defer s.createMu.Unlock()
	all, err := s.list(ctx, kbID)
	if err != nil {
		return err
	}
	for _, c := range all {
		err := s.call(ctx, "delete collection "+c.name, func(ctx context.Context) error {
			// The low-level call: deleting a missing collection answers
			// false, which the high-level client turns into an error.
			_, err := s.client.GetCollectionsClient().Delete(ctx, &qc.DeleteCollection{CollectionName: c.name})
			return err
		})
		if err != nil && !notFound(err) {
			return err
		}
	}
	s.forget(kbID)
	return nil
}

// Search implements vectorstore.Store.
func (s *Store) Search(ctx context.Context, q vectorstore.Query) ([]vectorstore.Hit, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("qdrant: search: %w", vectorstore.ErrClosed)
	}
	if err := q.Validate(); err != nil {
		return nil, fmt.Errorf("qdrant: search: %w", err)
	}
	c, ok, err := s.lookup(ctx, q.KBID)
	if err != nil || !ok {
		return nil, err
	}
	if q.Dense != nil && c.dim != 0 && len(q.Dense) != c.dim {
		return nil, fmt.Errorf("qdrant: search: %w: dense dimension %d, knowledge base %s has %d",
			vectorstore.ErrInvalid, len(q.Dense), q.KBID, c.dim)
	}
	filter := &qc.Filter{Must: []*qc.Condition{qc.NewMatchKeyword(FieldKB, q.KBID)}}
	if len(q.DocumentIDs) > 0 {
		filter.Must = append(filter.Must, qc.NewMatchKeywords(FieldDoc, q.DocumentIDs...))
	}
	hasDense := q.Dense != nil && c.dim != 0 // a sparse-only knowledge base has an empty dense list
	hasSparse := len(q.Sparse.Indices) > 0
	denseQ := func() *qc.Query { return qc.NewQueryDense(q.Dense) }
	sparseQ := func() *qc.Query { return qc.NewQuerySparse(q.Sparse.Indices, q.Sparse.Values) }
	req := &qc.QueryPoints{
		CollectionName: c.name,
		Filter:         filter,
		WithPayload:    qc.NewWithPayloadInclude(FieldDoc),
	}
	fuseHere := false
	switch {
	case hasDense && hasSparse && q.Fusion.Method == vectorstore.FusionWeighted:
		// Qdrant fuses by rank or by score distribution, not by min-max weights: the
		// two lists are fetched and fused here.
		return s.searchWeighted(ctx, q, req, denseQ(), sparseQ())
	case hasDense && hasSparse:
		limit := qc.PtrOf(uint64(vectorstore.PrefetchLimit(q.TopK)))
		req.Prefetch = []*qc.PrefetchQuery{
			{Query: denseQ(), Using: qc.PtrOf(DenseVector), Filter: filter, Limit: limit},
			{Query: sparseQ(), Using: qc.PtrOf(SparseVector), Filter: filter, Limit: limit},
		}
		// Qdrant: 1/(k' + 0-based position) = 1/(k + 1-based rank) with k' = k+1.
		req.Query = qc.NewQueryRRF(&qc.Rrf{K: qc.PtrOf(uint32(cmp.Or(q.Fusion.K, vectorstore.RRFK) + 1))})
	case hasDense:
		req.Query, req.Using = denseQ(), qc.PtrOf(DenseVector)
	case hasSparse:
		req.Query, req.Using = sparseQ(), qc.PtrOf(SparseVector)
		if q.Dense != nil {
			// Hybrid against a knowledge base without dense vectors: fuse
			// the sparse list with the empty dense one.
			fuseHere = true
		}
	default:
		return nil, nil // dense-only query, no dense vectors
	}
	want := q.TopK
	if fuseHere {
		want = vectorstore.PrefetchLimit(q.TopK)
	}
	hits, err := s.query(ctx, req, want)
	if err != nil {
		if notFound(err) {
			s.forget(q.KBID)
			return nil, nil
		}
		return nil, err
	}
	if fuseHere {
		return q.Fusion.Fuse(q.TopK, nil, hits), nil
	}
	return hits, nil
}

// searchWeighted runs a hybrid query's dense and sparse lists (req is the query
// without them) and fuses them by weights (vectorstore.FusionWeighted).
func (s *Store) searchWeighted(ctx context.Context, q vectorstore.Query, req *qc.QueryPoints, dense, sparse *qc.Query) ([]vectorstore.Hit, error) {
	var lists [2][]vectorstore.Hit
	for i, l := range []struct {
		query *qc.Query
		using string
	}{{dense, DenseVector}, {sparse, SparseVector}} {
		r := &qc.QueryPoints{CollectionName: req.CollectionName, Filter: req.Filter, WithPayload: req.WithPayload,
			Query: l.query, Using: qc.PtrOf(l.using)}
		hits, err := s.query(ctx, r, vectorstore.PrefetchLimit(q.TopK))
		if err != nil {
			if notFound(err) {
				s.forget(q.KBID)
				return nil, nil
			}
			return nil, err
		}
		lists[i] = hits
	}
	return q.Fusion.Fuse(q.TopK, lists[0], lists[1]), nil
}

// query runs req and returns its top want hits ordered by score descending,
// then ChunkID. Qdrant orders equal scores arbitrarily, so when the last
// hit wanted ties with the ones after it, the query is repeated with a larger
// limit until the tied group is complete.
func (s *Store) query(ctx context.Context, req *qc.QueryPoints, want int) ([]vectorstore.Hit, error) {
	limit := want + 1
	for {
		req.Limit = qc.PtrOf(uint64(limit))
		var res []*qc.ScoredPoint
		err := s.call(ctx, "query "+req.GetCollectionName(), func(ctx context.Context) error {
			var err error
			res, err = s.client.Query(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		hits := make([]vectorstore.Hit, 0, len(res))
		for _, p := range res {
			hits = append(hits, vectorstore.Hit{
				ChunkID:    p.GetId().GetUuid(),
				DocumentID: p.GetPayload()[FieldDoc].GetStringValue(),
				Score:      float64(p.GetScore()),
			})
		}
		vectorstore.SortHits(hits)
		if len(hits) < limit || hits[want-1].Score > hits[len(hits)-1].Score {
			return hits[:min(want, len(hits))], nil
		}
		limit *= 2
	}
}

// Close implements vectorstore.Store: it closes the connections.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.client.Close()
}
