package sdk

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/ragway/ragway/plugin-sdk/internal/pb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// server adapts a Backend to the generated gRPC server interface and checks
// the plugin keeps the event contract.
type server struct {
	pb.UnimplementedBackendServer
	impl Backend
}

func (s *server) Info(ctx context.Context, _ *pb.InfoRequest) (*pb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	if info.APIVersion == "" {
		info.APIVersion = APIVersion
	}
	return infoToPB(info), nil
}

func (s *server) Load(ctx context.Context, req *pb.LoadRequest) (*pb.LoadResponse, error) {
	mi, err := s.impl.Load(ctx, loadRequestFromPB(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return modelInfoToPB(mi), nil
}

// errAfterFinal is returned to a plugin that emits after its final event.
var errAfterFinal = errors.New("sdk: event emitted after the final event")

func (s *server) Generate(req *pb.GenerateRequest, stream pb.Backend_GenerateServer) error {
	ctx := stream.Context()
	gr := generateRequestFromPB(req)
	if gr.ResponseFormat != nil || len(gr.Tools) > 0 || hasToolMessages(gr.Messages) {
		// A plugin that does not say it honours a response format, or tools, never
		// gets them silently: it would answer in free text.
		info, err := s.impl.Info(ctx)
		if err != nil {
			return toStatus(err)
		}
		if gr.ResponseFormat != nil && !info.Has(CapabilityStructuredOutput) {
			return toStatus(InvalidRequestf("this backend does not honour a response format (%s)", gr.ResponseFormat.Type))
		}
		if (len(gr.Tools) > 0 || hasToolMessages(gr.Messages)) && !info.Has(CapabilityTools) {
			return toStatus(InvalidRequestf("this backend does not take tools, tool calls or tool results"))
		}
	}
	finished := false
	err := s.impl.Generate(ctx, gr, func(e Event) error {
		if finished {
			return errAfterFinal
		}
		if _, ok := finishToPB[e.FinishReason]; !ok {
			return fmt.Errorf("sdk: event with unknown finish reason %q", e.FinishReason)
		}
		finished = e.Final()
		if e.Final() && e.Usage == nil {
			e.Usage = &Usage{}
		}
		return stream.Send(eventToPB(e))
	})
	switch {
	case err != nil:
		return toStatus(err)
	case !finished:
		return status.Error(codes.Internal, "plugin ended the generation without a final event")
	}
	return nil
}

func (s *server) Embed(ctx context.Context, req *pb.EmbedRequest) (*pb.EmbedResponse, error) {
	e, ok := s.impl.(Embedder)
	if !ok {
		return nil, status.Error(codes.Unimplemented, ErrUnsupported.Error()+": embeddings")
	}
	resp, err := e.Embed(ctx, embedRequestFromPB(req))
	if err != nil {
		return nil, toStatus(err)
	}
	return embedResponseToPB(resp), nil
}

func (s *server) Rerank(ctx context.Context, req *pb.RerankRequest) (*pb.RerankResponse, error) {
	r, ok := s.impl.(Reranker)
	if !ok {
		return nil, status.Error(codes.Unimplemented, ErrUnsupported.Error()+": rerank")
	}
	in := rerankRequestFromPB(req)
	resp, err := r.Rerank(ctx, in)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(resp.Scores) != len(in.Documents) {
		return nil, status.Errorf(codes.Internal, "plugin returned %d scores for %d documents", len(resp.Scores), len(in.Documents))
	}
	for i, v := range resp.Scores {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, status.Errorf(codes.Internal, "plugin returned a score that is not a number for document %d", i)
		}
	}
	return rerankResponseToPB(resp), nil
}

func (s *server) Tokenize(ctx context.Context, req *pb.TokenizeRequest) (*pb.TokenizeResponse, error) {
	t, ok := s.impl.(Tokenizer)
	if !ok {
		return nil, status.Error(codes.Unimplemented, ErrUnsupported.Error()+": tokenize")
	}
	in := tokenizeRequestFromPB(req)
	resp, err := t.Tokenize(ctx, in)
	if err != nil {
		return nil, toStatus(err)
	}
	if len(resp.Counts) != len(in.Input) {
		return nil, status.Errorf(codes.Internal, "plugin returned %d token counts for %d inputs", len(resp.Counts), len(in.Input))
	}
	for i, n := range resp.Counts {
		if n < 0 || n > math.MaxInt32 {
			return nil, status.Errorf(codes.Internal, "plugin returned token count %d for input[%d]", n, i)
		}
	}
	return tokenizeResponseToPB(resp), nil
}

func (s *server) Health(ctx context.Context, _ *pb.HealthRequest) (*pb.HealthResponse, error) {
	h, err := s.impl.Health(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return healthToPB(h), nil
}

// hasToolMessages reports whether msgs hold tool calls or tool results.
func hasToolMessages(msgs []Message) bool {
	for _, m := range msgs {
		if len(m.ToolCalls) > 0 || m.ToolCallID != "" || m.Role == "tool" {
			return true
		}
	}
	return false
}
