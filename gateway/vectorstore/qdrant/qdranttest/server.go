package qdranttest

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Server is the stand-in's state. Its zero value is not usable; use New.
type Server struct {
	mu          sync.Mutex
	collections map[string]*collection
	failN       int
	failCode    codes.Code
	calls       map[string]int
}

type collection struct {
	dense   map[string]denseParams // vector name → params
	sparse  map[string]bool        // vector name → IDF modifier
	indexes map[string]bool        // payload field → keyword index exists
	points  map[string]*point      // point id key → point
}

type denseParams struct {
	size     int
	distance qdrant.Distance
}

type point struct {
	id      *qdrant.PointId
	payload map[string]*qdrant.Value
	dense   map[string][]float32
	sparse  map[string]map[uint32]float32
}

// New returns an empty stand-in that is not yet serving.
func New() *Server {
	return &Server{collections: make(map[string]*collection), calls: make(map[string]int)}
}

// Start serves s on 127.0.0.1 at a free port until t's cleanup and returns
// the address ("127.0.0.1:port").
func (s *Server) Start(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("qdranttest: listen: %v", err)
	}
	g := grpc.NewServer(
		grpc.UnaryInterceptor(s.intercept),
		// The client pings every 10s even when idle; grpc-go's default
		// policy (5 minutes) would answer that with GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: time.Second, PermitWithoutStream: true}),
	)
	qdrant.RegisterCollectionsServer(g, collectionsService{s: s})
	qdrant.RegisterPointsServer(g, pointsService{s: s})
	qdrant.RegisterQdrantServer(g, qdrantService{s: s})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Serve(lis)
	}()
	t.Cleanup(func() {
		g.Stop()
		<-done
	})
	return lis.Addr().String()
}

// Start starts a new stand-in and returns its address.
func Start(t testing.TB) string {
	return New().Start(t)
}

// FailNext makes the next n calls (of any method) fail with code.
func (s *Server) FailNext(n int, code codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failCode = n, code
}

// Calls reports how many calls of the full gRPC method name (for example
// "/qdrant.Points/Upsert") the server has received, failed ones included.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Collections returns the names of the existing collections, sorted.
func (s *Server) Collections() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name := range s.collections {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	s.mu.Lock()
	s.calls[info.FullMethod]++
	if s.failN > 0 {
		s.failN--
		code := s.failCode
		s.mu.Unlock()
		return nil, status.Errorf(code, "qdranttest: injected failure")
	}
	s.mu.Unlock()
	return h(ctx, req)
}

func (s *Server) collection(name string) (*collection, error) {
	c := s.collections[name]
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "Not found: Collection `%s` doesn't exist!", name)
	}
	return c, nil
}

func unimplemented(what string) error {
	return status.Errorf(codes.Unimplemented, "qdranttest: %s is not implemented", what)
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "Wrong input: "+format, args...)
}

// ---- Qdrant service

type qdrantService struct {
	qdrant.UnimplementedQdrantServer
	s *Server
}

func (qdrantService) HealthCheck(context.Context, *qdrant.HealthCheckRequest) (*qdrant.HealthCheckReply, error) {
	return &qdrant.HealthCheckReply{Title: "qdrant - vector search engine (qdranttest)", Version: "1.17.1"}, nil
}

// ---- Collections service

type collectionsService struct {
	qdrant.UnimplementedCollectionsServer
	s *Server
}

func (c collectionsService) Create(_ context.Context, req *qdrant.CreateCollection) (*qdrant.CollectionOperationResponse, error) {
	s := c.s
	if req.GetCollectionName() == "" {
		return nil, invalid("empty collection name")
	}
	if req.ShardNumber != nil || req.QuantizationConfig != nil || req.ShardingMethod != nil || req.StrictModeConfig != nil {
		return nil, unimplemented("collection options")
	}
	col := &collection{
		dense:   make(map[string]denseParams),
		sparse:  make(map[string]bool),
		indexes: make(map[string]bool),
		points:  make(map[string]*point),
	}
	if vc := req.GetVectorsConfig(); vc != nil {
		m := vc.GetParamsMap()
		if m == nil {
			return nil, unimplemented("unnamed vectors")
		}
		for name, p := range m.GetMap() {
			if p.GetSize() == 0 {
				return nil, invalid("vector %q has size 0", name)
			}
			switch p.GetDistance() {
			case qdrant.Distance_Cosine, qdrant.Distance_Dot:
			default:
				return nil, unimplemented(fmt.Sprintf("distance %v", p.GetDistance()))
			}
			col.dense[name] = denseParams{size: int(p.GetSize()), distance: p.GetDistance()}
		}
	}
	for name, p := range req.GetSparseVectorsConfig().GetMap() {
		if _, dup := col.dense[name]; dup {
			return nil, invalid("vector name %q used twice", name)
		}
		col.sparse[name] = p.GetModifier() == qdrant.Modifier_Idf
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.collections[req.GetCollectionName()] != nil {
		return nil, invalid("Collection `%s` already exists!", req.GetCollectionName())
	}
	s.collections[req.GetCollectionName()] = col
	return &qdrant.CollectionOperationResponse{Result: true}, nil
}

func (c collectionsService) Get(_ context.Context, req *qdrant.GetCollectionInfoRequest) (*qdrant.GetCollectionInfoResponse, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	col, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	dense := make(map[string]*qdrant.VectorParams)
	for name, p := range col.dense {
		dense[name] = &qdrant.VectorParams{Size: uint64(p.size), Distance: p.distance}
	}
	sparse := make(map[string]*qdrant.SparseVectorParams)
	for name, idf := range col.sparse {
		m := qdrant.Modifier_None
		if idf {
			m = qdrant.Modifier_Idf
		}
		sparse[name] = &qdrant.SparseVectorParams{Modifier: m.Enum()}
	}
	schema := make(map[string]*qdrant.PayloadSchemaInfo)
	for field := range col.indexes {
		schema[field] = &qdrant.PayloadSchemaInfo{DataType: qdrant.PayloadSchemaType_Keyword}
	}
	n := uint64(len(col.points))
	return &qdrant.GetCollectionInfoResponse{Result: &qdrant.CollectionInfo{
		Status: qdrant.CollectionStatus_Green,
		Config: &qdrant.CollectionConfig{Params: &qdrant.CollectionParams{
			ShardNumber:         1,
			VectorsConfig:       qdrant.NewVectorsConfigMap(dense),
			SparseVectorsConfig: qdrant.NewSparseVectorsConfig(sparse),
		}},
		PayloadSchema: schema,
		PointsCount:   &n,
	}}, nil
}

func (c collectionsService) List(context.Context, *qdrant.ListCollectionsRequest) (*qdrant.ListCollectionsResponse, error) {
	resp := &qdrant.ListCollectionsResponse{}
	for _, name := range c.s.Collections() {
		resp.Collections = append(resp.Collections, &qdrant.CollectionDescription{Name: name})
	}
	return resp, nil
}

func (c collectionsService) CollectionExists(_ context.Context, req *qdrant.CollectionExistsRequest) (*qdrant.CollectionExistsResponse, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.collections[req.GetCollectionName()]
	return &qdrant.CollectionExistsResponse{Result: &qdrant.CollectionExists{Exists: ok}}, nil
}

func (c collectionsService) Delete(_ context.Context, req *qdrant.DeleteCollection) (*qdrant.CollectionOperationResponse, error) {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.collections[req.GetCollectionName()]
	delete(s.collections, req.GetCollectionName())
	return &qdrant.CollectionOperationResponse{Result: ok}, nil
}

// ---- Points service

type pointsService struct {
	qdrant.UnimplementedPointsServer
	s *Server
}

func completed() *qdrant.PointsOperationResponse {
	return &qdrant.PointsOperationResponse{Result: &qdrant.UpdateResult{Status: qdrant.UpdateStatus_Completed}}
}

func pointKey(id *qdrant.PointId) (string, error) {
	switch v := id.GetPointIdOptions().(type) {
	case *qdrant.PointId_Uuid:
		return "u" + v.Uuid, nil
	case *qdrant.PointId_Num:
		return fmt.Sprintf("n%020d", v.Num), nil
	}
	return "", invalid("missing point id")
}

func (p pointsService) Upsert(_ context.Context, req *qdrant.UpsertPoints) (*qdrant.PointsOperationResponse, error) {
	if req.UpdateFilter != nil || req.UpdateMode != nil || req.ShardKeySelector != nil {
		return nil, unimplemented("conditional upserts")
	}
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	col, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	// Validate everything before applying anything.
	staged := make([]*point, 0, len(req.GetPoints()))
	keys := make([]string, 0, len(req.GetPoints()))
	for _, ps := range req.GetPoints() {
		key, err := pointKey(ps.GetId())
		if err != nil {
			return nil, err
		}
		pt := &point{id: ps.GetId(), payload: ps.GetPayload(), dense: map[string][]float32{}, sparse: map[string]map[uint32]float32{}}
		if ps.GetVectors() != nil {
			named, ok := ps.GetVectors().GetVectorsOptions().(*qdrant.Vectors_Vectors)
			if !ok {
				return nil, invalid("unnamed vector, the collection has named vectors only")
			}
			for name, v := range named.Vectors.GetVectors() {
				if err := col.stage(pt, name, v); err != nil {
					return nil, err
				}
			}
		}
		staged = append(staged, pt)
		keys = append(keys, key)
	}
	for i, pt := range staged {
		col.points[keys[i]] = pt
	}
	return completed(), nil
}

func (col *collection) stage(pt *point, name string, v *qdrant.Vector) error {
	var (
		dense    []float32
		indices  []uint32
		values   []float32
		isSparse bool
	)
	switch x := v.GetVector().(type) {
	case *qdrant.Vector_Dense:
		dense = x.Dense.GetData()
	case *qdrant.Vector_Sparse:
		indices, values, isSparse = x.Sparse.GetIndices(), x.Sparse.GetValues(), true
	default:
		return unimplemented(fmt.Sprintf("vector encoding %T (the deprecated data/indices fields included)", x))
	}
	if isSparse {
		if _, ok := col.sparse[name]; !ok {
			return invalid("Not existing vector name error: %s", name)
		}
		if len(indices) != len(values) {
			return invalid("sparse vector %q: %d indices, %d values", name, len(indices), len(values))
		}
		m := make(map[uint32]float32, len(indices))
		for i, ix := range indices {
			if _, dup := m[ix]; dup {
				return invalid("sparse vector %q: duplicate index %d", name, ix)
			}
			m[ix] = values[i]
		}
		pt.sparse[name] = m
		return nil
	}
	p, ok := col.dense[name]
	if !ok {
		return invalid("Not existing vector name error: %s", name)
	}
	if len(dense) != p.size {
		return invalid("Vector dimension error: expected dim: %d, got %d", p.size, len(dense))
	}
	if p.distance == qdrant.Distance_Cosine {
		dense = normalised(dense)
	} else {
		dense = slices.Clone(dense)
	}
	pt.dense[name] = dense
	return nil
}

func normalised(v []float32) []float32 {
	var n float64
	for _, x := range v {
		n += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if n == 0 {
		return out
	}
	inv := float32(1 / math.Sqrt(n))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}

func (p pointsService) Delete(_ context.Context, req *qdrant.DeletePoints) (*qdrant.PointsOperationResponse, error) {
	if req.ShardKeySelector != nil {
		return nil, unimplemented("shard keys")
	}
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	col, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	switch sel := req.GetPoints().GetPointsSelectorOneOf().(type) {
	case *qdrant.PointsSelector_Points:
		for _, id := range sel.Points.GetIds() {
			key, err := pointKey(id)
			if err != nil {
				return nil, err
			}
			delete(col.points, key)
		}
	case *qdrant.PointsSelector_Filter:
		var del []string
		for key, pt := range col.points {
			ok, err := matches(sel.Filter, pt)
			if err != nil {
				return nil, err
			}
			if ok {
				del = append(del, key)
			}
		}
		for _, key := range del {
			delete(col.points, key)
		}
	default:
		return nil, invalid("missing points selector")
	}
	return completed(), nil
}

func (p pointsService) CreateFieldIndex(_ context.Context, req *qdrant.CreateFieldIndexCollection) (*qdrant.PointsOperationResponse, error) {
	if req.GetFieldType() != qdrant.FieldType_FieldTypeKeyword {
		return nil, unimplemented(fmt.Sprintf("field index type %v", req.GetFieldType()))
	}
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	col, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	col.indexes[req.GetFieldName()] = true
	return completed(), nil
}

type scored struct {
	key   string
	pt    *point
	score float64
}

func (p pointsService) Query(_ context.Context, req *qdrant.QueryPoints) (*qdrant.QueryResponse, error) {
	if req.ScoreThreshold != nil || req.Offset != nil || req.LookupFrom != nil || req.ShardKeySelector != nil || req.WithVectors != nil {
		return nil, unimplemented("query options")
	}
	s := p.s
	s.mu.Lock()
	defer s.mu.Unlock()
	col, err := s.collection(req.GetCollectionName())
	if err != nil {
		return nil, err
	}
	list, err := col.query(req.GetPrefetch(), req.Query, req.Using, req.Filter, nil, req.Limit)
	if err != nil {
		return nil, err
	}
	resp := &qdrant.QueryResponse{}
	for _, sc := range list {
		resp.Result = append(resp.Result, &qdrant.ScoredPoint{
			Id:      sc.pt.id,
			Payload: selectPayload(req.GetWithPayload(), sc.pt.payload),
			Score:   float32(sc.score),
		})
	}
	return resp, nil
}

func selectPayload(sel *qdrant.WithPayloadSelector, payload map[string]*qdrant.Value) map[string]*qdrant.Value {
	switch x := sel.GetSelectorOptions().(type) {
	case *qdrant.WithPayloadSelector_Enable:
		if x.Enable {
			return payload
		}
	case *qdrant.WithPayloadSelector_Include:
		out := make(map[string]*qdrant.Value)
		for _, f := range x.Include.GetFields() {
			if v, ok := payload[f]; ok {
				out[f] = v
			}
		}
		return out
	}
	return nil
}

// query evaluates one query level: the prefetches (each also restricted by
// this level's filter and its parents'), then q over them or over the
// collection.
func (col *collection) query(prefetch []*qdrant.PrefetchQuery, q *qdrant.Query, using *string, filter *qdrant.Filter, parents []*qdrant.Filter, limitp *uint64) ([]scored, error) {
	limit := 10
	if limitp != nil {
		limit = int(*limitp)
	}
	filters := parents
	if filter != nil {
		filters = append(slices.Clip(parents), filter)
	}
	var lists [][]scored
	for _, pf := range prefetch {
		if pf.ScoreThreshold != nil || pf.LookupFrom != nil || pf.Params != nil {
			return nil, unimplemented("prefetch options")
		}
		l, err := col.query(pf.GetPrefetch(), pf.Query, pf.Using, pf.Filter, filters, pf.Limit)
		if err != nil {
			return nil, err
		}
		lists = append(lists, l)
	}
	if q == nil {
		return nil, unimplemented("query without a query")
	}
	var out []scored
	switch v := q.GetVariant().(type) {
	case *qdrant.Query_Nearest:
		if len(prefetch) > 0 {
			return nil, unimplemented("nearest over prefetches")
		}
		name := ""
		if using != nil {
			name = *using
		}
		var err error
		out, err = col.nearest(name, v.Nearest, filters)
		if err != nil {
			return nil, err
		}
	case *qdrant.Query_Fusion:
		if v.Fusion != qdrant.Fusion_RRF {
			return nil, unimplemented(fmt.Sprintf("fusion %v", v.Fusion))
		}
		out = rrf(lists, 2, nil)
	case *qdrant.Query_Rrf:
		k := 2
		if v.Rrf.K != nil {
			k = int(v.Rrf.GetK())
		}
		w := v.Rrf.GetWeights()
		if len(w) != 0 && len(w) != len(lists) {
			return nil, invalid("%d rrf weights for %d prefetches", len(w), len(lists))
		}
		out = rrf(lists, k, w)
	default:
		return nil, unimplemented(fmt.Sprintf("query %T", v))
	}
	sortScored(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// sortScored orders by score descending, equal scores by point id
// descending (Qdrant leaves their order unspecified).
func sortScored(l []scored) {
	slices.SortFunc(l, func(a, b scored) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(b.key, a.key)
	})
}

func rrf(lists [][]scored, k int, weights []float32) []scored {
	acc := make(map[string]*scored)
	var order []string
	for i, l := range lists {
		w := 1.0
		if weights != nil {
			w = float64(weights[i])
		}
		for pos, sc := range l {
			a := acc[sc.key]
			if a == nil {
				a = &scored{key: sc.key, pt: sc.pt}
				acc[sc.key] = a
				order = append(order, sc.key)
			}
			a.score += w / float64(k+pos)
		}
	}
	out := make([]scored, 0, len(order))
	for _, key := range order {
		out = append(out, *acc[key])
	}
	return out
}

func (col *collection) nearest(name string, in *qdrant.VectorInput, filters []*qdrant.Filter) ([]scored, error) {
	pass := func(pt *point) (bool, error) {
		for _, f := range filters {
			if ok, err := matches(f, pt); err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	}
	var out []scored
	switch v := in.GetVariant().(type) {
	case *qdrant.VectorInput_Dense:
		p, ok := col.dense[name]
		if !ok {
			return nil, invalid("Not existing vector name error: %s", name)
		}
		q := v.Dense.GetData()
		if len(q) != p.size {
			return nil, invalid("Vector dimension error: expected dim: %d, got %d", p.size, len(q))
		}
		if p.distance == qdrant.Distance_Cosine {
			q = normalised(q)
		}
		for key, pt := range col.points {
			d, has := pt.dense[name]
			if !has {
				continue
			}
			if ok, err := pass(pt); err != nil {
				return nil, err
			} else if !ok {
				continue
			}
			var dot float32
			for i := range q {
				dot += q[i] * d[i]
			}
			out = append(out, scored{key: key, pt: pt, score: float64(dot)})
		}
	case *qdrant.VectorInput_Sparse:
		idf, ok := col.sparse[name]
		if !ok {
			return nil, invalid("Not existing vector name error: %s", name)
		}
		idx, vals := v.Sparse.GetIndices(), v.Sparse.GetValues()
		if len(idx) != len(vals) {
			return nil, invalid("sparse query: %d indices, %d values", len(idx), len(vals))
		}
		weights := make([]float32, len(idx))
		copy(weights, vals)
		if idf {
			// Statistics over the whole collection, unfiltered.
			var n int
			df := make([]int, len(idx))
			for _, pt := range col.points {
				sv, has := pt.sparse[name]
				if !has {
					continue
				}
				n++
				for i, t := range idx {
					if _, in := sv[t]; in {
						df[i]++
					}
				}
			}
			for i := range weights {
				N, d := float64(n), float64(df[i])
				weights[i] *= float32(math.Log(1 + (N-d+0.5)/(d+0.5)))
			}
		}
		for key, pt := range col.points {
			sv, has := pt.sparse[name]
			if !has {
				continue
			}
			var score float32
			shared := false
			for i, t := range idx {
				if w, in := sv[t]; in {
					score += weights[i] * w
					shared = true
				}
			}
			if !shared {
				continue
			}
			if ok, err := pass(pt); err != nil {
				return nil, err
			} else if !ok {
				continue
			}
			out = append(out, scored{key: key, pt: pt, score: float64(score)})
		}
	default:
		return nil, unimplemented(fmt.Sprintf("vector input %T", v))
	}
	return out, nil
}

// matches evaluates a filter on a point.
func matches(f *qdrant.Filter, pt *point) (bool, error) {
	if f == nil {
		return true, nil
	}
	if f.MinShould != nil {
		return false, unimplemented("min_should")
	}
	for _, c := range f.GetMust() {
		ok, err := condition(c, pt)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, c := range f.GetMustNot() {
		ok, err := condition(c, pt)
		if err != nil || ok {
			return false, err
		}
	}
	if len(f.GetShould()) == 0 {
		return true, nil
	}
	for _, c := range f.GetShould() {
		ok, err := condition(c, pt)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

func condition(c *qdrant.Condition, pt *point) (bool, error) {
	switch x := c.GetConditionOneOf().(type) {
	case *qdrant.Condition_Filter:
		return matches(x.Filter, pt)
	case *qdrant.Condition_HasId:
		key, err := pointKey(pt.id)
		if err != nil {
			return false, err
		}
		for _, id := range x.HasId.GetHasId() {
			if k, err := pointKey(id); err == nil && k == key {
				return true, nil
			}
		}
		return false, nil
	case *qdrant.Condition_Field:
		fc := x.Field
		if fc.Range != nil || fc.GeoBoundingBox != nil || fc.GeoRadius != nil || fc.GeoPolygon != nil ||
			fc.ValuesCount != nil || fc.DatetimeRange != nil || fc.IsEmpty != nil || fc.IsNull != nil {
			return false, unimplemented("field condition")
		}
		var have []string
		switch v := pt.payload[fc.GetKey()].GetKind().(type) {
		case *qdrant.Value_StringValue:
			have = []string{v.StringValue}
		case *qdrant.Value_ListValue:
			for _, e := range v.ListValue.GetValues() {
				if s, ok := e.GetKind().(*qdrant.Value_StringValue); ok {
					have = append(have, s.StringValue)
				}
			}
		}
		switch m := fc.GetMatch().GetMatchValue().(type) {
		case *qdrant.Match_Keyword:
			return slices.Contains(have, m.Keyword), nil
		case *qdrant.Match_Keywords:
			for _, k := range m.Keywords.GetStrings() {
				if slices.Contains(have, k) {
					return true, nil
				}
			}
			return false, nil
		default:
			return false, unimplemented(fmt.Sprintf("match %T", m))
		}
	}
	return false, unimplemented(fmt.Sprintf("condition %T", c.GetConditionOneOf()))
}
