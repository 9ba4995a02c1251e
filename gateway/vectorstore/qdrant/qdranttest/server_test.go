package qdranttest

import (
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"strconv"
	"testing"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func client(t *testing.T) (*Server, *qdrant.Client) {
	t.Helper()
	s := New()
	addr := s.Start(t)
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := qdrant.NewClient(&qdrant.Config{Host: host, Port: port, SkipCompatibilityCheck: true, PoolSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c
}

func code(err error) codes.Code { return status.Code(err) }

func setup(t *testing.T, c *qdrant.Client) {
	t.Helper()
	ctx := context.Background()
	err := c.CreateCollection(ctx, &qdrant.CreateCollection{
		CollectionName: "c",
		VectorsConfig: qdrant.NewVectorsConfigMap(map[string]*qdrant.VectorParams{
			"dense": {Size: 2, Distance: qdrant.Distance_Cosine},
		}),
		SparseVectorsConfig: qdrant.NewSparseVectorsConfig(map[string]*qdrant.SparseVectorParams{
			"sparse": {Modifier: qdrant.Modifier_Idf.Enum()},
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	pt := func(n uint64, kb string, dense []float32, idx []uint32, vals []float32) *qdrant.PointStruct {
		v := map[string]*qdrant.Vector{}
		if dense != nil {
			v["dense"] = qdrant.NewVectorDense(dense)
		}
		if idx != nil {
			v["sparse"] = qdrant.NewVectorSparse(idx, vals)
		}
		return &qdrant.PointStruct{Id: qdrant.NewIDNum(n), Payload: qdrant.NewValueMap(map[string]any{"kb": kb}), Vectors: qdrant.NewVectorsMap(v)}
	}
	_, err = c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Wait: qdrant.PtrOf(true), Points: []*qdrant.PointStruct{
		pt(1, "a", []float32{3, 0}, []uint32{7}, []float32{1}),
		pt(2, "a", []float32{1, 1}, []uint32{7, 8}, []float32{2, 1}),
		pt(3, "b", []float32{0, 2}, []uint32{8}, []float32{1}),
		pt(4, "b", []float32{-1, 0}, nil, nil), // no sparse vector: not counted in N
	}})
	if err != nil {
		t.Fatal(err)
	}
}

func ids(res []*qdrant.ScoredPoint) []uint64 {
	var out []uint64
	for _, p := range res {
		out = append(out, p.GetId().GetNum())
	}
	return out
}

func TestScores(t *testing.T) {
	_, c := client(t)
	setup(t, c)
	ctx := context.Background()
	idf := func(N, n float64) float64 { return math.Log(1 + (N-n+0.5)/(n+0.5)) }

	// Sparse, IDF over the 3 points with a sparse vector; term 7 in 2.
	res, err := c.Query(ctx, &qdrant.QueryPoints{CollectionName: "c", Using: qdrant.PtrOf("sparse"), Query: qdrant.NewQuerySparse([]uint32{7}, []float32{2})})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res); !slices.Equal(got, []uint64{2, 1}) {
		t.Fatalf("sparse: %v", got)
	}
	if want := 2 * 2 * idf(3, 2); math.Abs(float64(res[0].Score)-want) > 1e-5 {
		t.Errorf("sparse score %v, want %v", res[0].Score, want)
	}

	// Dense cosine with a keyword filter.
	res, err = c.Query(ctx, &qdrant.QueryPoints{CollectionName: "c", Using: qdrant.PtrOf("dense"), Query: qdrant.NewQueryDense([]float32{1, 0}),
		Filter: &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeywords("kb", "b", "x")}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(res); !slices.Equal(got, []uint64{3, 4}) || res[0].Score != 0 || res[1].Score != -1 {
		t.Errorf("dense filtered: %v %v", got, res)
	}

	// Fusion RRF: Σ 1/(k + 0-based position), default k = 2.
	fuse := func(q *qdrant.Query) []*qdrant.ScoredPoint {
		res, err := c.Query(ctx, &qdrant.QueryPoints{CollectionName: "c", Query: q, Prefetch: []*qdrant.PrefetchQuery{
			{Using: qdrant.PtrOf("dense"), Query: qdrant.NewQueryDense([]float32{1, 0})},
			{Using: qdrant.PtrOf("sparse"), Query: qdrant.NewQuerySparse([]uint32{7}, []float32{1})},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// dense: 1 (pos 0), 2 (1), 3 (2), 4 (3); sparse: 2 (0), 1 (1).
	for _, tc := range []struct {
		q *qdrant.Query
		k float64
	}{
		{qdrant.NewQueryFusion(qdrant.Fusion_RRF), 2},
		{qdrant.NewQueryRRF(&qdrant.Rrf{}), 2},
		{qdrant.NewQueryRRF(&qdrant.Rrf{K: qdrant.PtrOf(uint32(61))}), 61},
	} {
		res := fuse(tc.q)
		want := map[uint64]float64{1: 1/tc.k + 1/(tc.k+1), 2: 1/(tc.k+1) + 1/tc.k, 3: 1 / (tc.k + 2), 4: 1 / (tc.k + 3)}
		if len(res) != 4 {
			t.Fatalf("fusion k=%v: %v", tc.k, ids(res))
		}
		for _, p := range res {
			if w := want[p.GetId().GetNum()]; math.Abs(float64(p.Score)-w) > 1e-6 {
				t.Errorf("fusion k=%v: point %d score %v, want %v", tc.k, p.GetId().GetNum(), p.Score, w)
			}
		}
		// Equal scores (1 and 2): reverse id order.
		if got := ids(res); !slices.Equal(got, []uint64{2, 1, 3, 4}) {
			t.Errorf("fusion k=%v order %v", tc.k, got)
		}
	}

	// Delete by filter, then N shrinks.
	if _, err := c.Delete(ctx, &qdrant.DeletePoints{CollectionName: "c", Points: qdrant.NewPointsSelectorFilter(&qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("kb", "b")}})}); err != nil {
		t.Fatal(err)
	}
	res, err = c.Query(ctx, &qdrant.QueryPoints{CollectionName: "c", Using: qdrant.PtrOf("sparse"), Query: qdrant.NewQuerySparse([]uint32{7}, []float32{1}), Limit: qdrant.PtrOf(uint64(1))})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || math.Abs(float64(res[0].Score)-2*idf(2, 2)) > 1e-5 {
		t.Errorf("after delete: %v", res)
	}
}

func TestErrors(t *testing.T) {
	s, c := client(t)
	setup(t, c)
	ctx := context.Background()
	_, err := c.Query(ctx, &qdrant.QueryPoints{CollectionName: "nope", Using: qdrant.PtrOf("dense"), Query: qdrant.NewQueryDense([]float32{1, 0})})
	if code(err) != codes.NotFound {
		t.Errorf("unknown collection: %v", err)
	}
	_, err = c.Query(ctx, &qdrant.QueryPoints{CollectionName: "c", Using: qdrant.PtrOf("dense"), Query: qdrant.NewQueryDense([]float32{1, 0, 0})})
	if code(err) != codes.InvalidArgument {
		t.Errorf("query dimension: %v", err)
	}
	_, err = c.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "c", Points: []*qdrant.PointStruct{
		{Id: qdrant.NewIDNum(9), Vectors: qdrant.NewVectorsMap(map[string]*qdrant.Vector{"dense": qdrant.NewVectorDense([]float32{1})})},
	}})
	if code(err) != codes.InvalidArgument {
		t.Errorf("upsert dimension: %v", err)
	}
	_, err = c.Query(ctx, &qdrant.QueryPoints{CollectionName: "c", Using: qdrant.PtrOf("dense"), Query: qdrant.NewQueryDense([]float32{1, 0}), Offset: qdrant.PtrOf(uint64(1))})
	if code(err) != codes.Unimplemented {
		t.Errorf("offset: %v", err)
	}
	s.FailNext(2, codes.Unavailable)
	for range 2 {
		if _, err := c.HealthCheck(ctx); code(err) != codes.Unavailable {
			t.Errorf("injected failure: %v", err)
		}
	}
	if _, err := c.HealthCheck(ctx); err != nil {
		t.Errorf("after the injected failures: %v", err)
	}
	if n := s.Calls("/qdrant.Qdrant/HealthCheck"); n != 3 {
		t.Errorf("%d health checks counted, want 3", n)
	}
	if err := c.CreateCollection(ctx, &qdrant.CreateCollection{CollectionName: "c"}); code(err) != codes.InvalidArgument {
		t.Errorf("existing collection: %v", err)
	}
	if err := c.DeleteCollection(ctx, "c"); err != nil {
		t.Errorf("DeleteCollection: %v", err)
	}
	var qe *qdrant.QdrantError
	if err := c.DeleteCollection(ctx, "c"); !errors.As(err, &qe) {
		t.Errorf("DeleteCollection of a missing one: %v", err)
	}
}
