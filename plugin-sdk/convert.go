package sdk

import (
	"fmt"

	"github.com/ragway/ragway/plugin-sdk/internal/pb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Converters between the hand-written SDK types and the generated wire
// types. Only this file and the gRPC adapters touch package pb.

var capabilityToPB = map[Capability]pb.Capability{
	CapabilityChat:             pb.Capability_CAPABILITY_CHAT,
	CapabilityCompletion:       pb.Capability_CAPABILITY_COMPLETION,
	CapabilityEmbedding:        pb.Capability_CAPABILITY_EMBEDDING,
	CapabilityTokenize:         pb.Capability_CAPABILITY_TOKENIZE,
	CapabilityRerank:           pb.Capability_CAPABILITY_RERANK,
	CapabilityStructuredOutput: pb.Capability_CAPABILITY_STRUCTURED_OUTPUT,
	CapabilityTools:            pb.Capability_CAPABILITY_TOOLS,
}

var finishToPB = map[FinishReason]pb.FinishReason{
	"":              pb.FinishReason_FINISH_REASON_UNSPECIFIED,
	FinishStop:      pb.FinishReason_FINISH_REASON_STOP,
	FinishLength:    pb.FinishReason_FINISH_REASON_LENGTH,
	FinishCancelled: pb.FinishReason_FINISH_REASON_CANCELLED,
	FinishError:     pb.FinishReason_FINISH_REASON_ERROR,
	FinishToolCalls: pb.FinishReason_FINISH_REASON_TOOL_CALLS,
}

func infoToPB(i Info) *pb.InfoResponse {
	out := &pb.InfoResponse{Name: validText(i.Name), Version: validText(i.Version), ApiVersion: validText(i.APIVersion), MaxParallel: int32(i.MaxParallel)}
	for _, c := range i.Capabilities {
		if v, ok := capabilityToPB[c]; ok {
			out.Capabilities = append(out.Capabilities, v)
		}
	}
	return out
}

func infoFromPB(p *pb.InfoResponse) Info {
	out := Info{Name: p.GetName(), Version: p.GetVersion(), APIVersion: p.GetApiVersion(), MaxParallel: int(p.GetMaxParallel())}
	for _, c := range p.GetCapabilities() {
		for k, v := range capabilityToPB {
			if v == c {
				out.Capabilities = append(out.Capabilities, k)
			}
		}
	}
	return out
}

func loadRequestToPB(r LoadRequest) (*pb.LoadRequest, error) {
	if err := checkText("model", r.Model); err != nil {
		return nil, err
	}
	opts, err := structpb.NewStruct(normalizeOptions(r.Options))
	if err != nil {
		return nil, fmt.Errorf("%w: options: %v", ErrInvalidRequest, err)
	}
	return &pb.LoadRequest{Model: r.Model, Options: opts, Embedding: r.Embedding, Rerank: r.Rerank}, nil
}

func loadRequestFromPB(p *pb.LoadRequest) LoadRequest {
	return LoadRequest{Model: p.GetModel(), Options: p.GetOptions().AsMap(), Embedding: p.GetEmbedding(), Rerank: p.GetRerank()}
}

// normalizeOptions converts the value types a YAML decoder produces (ints,
// map[any]any, []string ...) into the JSON-like types structpb accepts.
func normalizeOptions(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = normalizeValue(v)
	}
	return out
}

func normalizeValue(v any) any {
	switch x := v.(type) {
	case int:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case uint:
		return float64(x)
	case uint64:
		return float64(x)
	case float32:
		return float64(x)
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeValue(e)
		}
		return out
	case map[string]any:
		return normalizeOptions(x)
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[fmt.Sprint(k)] = normalizeValue(e)
		}
		return out
	}
	return v
}

func modelInfoToPB(m ModelInfo) *pb.LoadResponse {
	return &pb.LoadResponse{ContextLength: int32(m.ContextLength), EmbeddingSize: int32(m.EmbeddingSize), HasChatTemplate: m.HasChatTemplate,
		MaxInputTokens: int32(m.MaxInputTokens)}
}

func modelInfoFromPB(p *pb.LoadResponse) ModelInfo {
	return ModelInfo{ContextLength: int(p.GetContextLength()), EmbeddingSize: int(p.GetEmbeddingSize()), HasChatTemplate: p.GetHasChatTemplate(),
		MaxInputTokens: int(p.GetMaxInputTokens())}
}

// checkGenerateRequest refuses a request holding a string the wire cannot
// carry, naming the field.
func checkGenerateRequest(r GenerateRequest) error {
	if err := checkText("prompt", r.Prompt); err != nil {
		return err
	}
	for i, m := range r.Messages {
		for _, f := range []struct{ name, s string }{{"role", m.Role}, {"content", m.Content}, {"name", m.Name}, {"tool_call_id", m.ToolCallID}} {
			if err := checkText(fmt.Sprintf("messages[%d].%s", i, f.name), f.s); err != nil {
				return err
			}
		}
		for j, c := range m.ToolCalls {
			for _, f := range []struct{ name, s string }{{"id", c.ID}, {"name", c.Name}, {"arguments", c.Arguments}} {
				if err := checkText(fmt.Sprintf("messages[%d].tool_calls[%d].%s", i, j, f.name), f.s); err != nil {
					return err
				}
			}
		}
	}
	for i, t := range r.Tools {
		for _, f := range []struct{ name, s string }{{"name", t.Name}, {"description", t.Description}, {"parameters", string(t.Parameters)}} {
			if err := checkText(fmt.Sprintf("tools[%d].%s", i, f.name), f.s); err != nil {
				return err
			}
		}
	}
	if c := r.ToolChoice; c != nil {
		if err := checkText("tool_choice.name", c.Name); err != nil {
			return err
		}
	}
	if err := checkTexts("sampling.stop", r.Sampling.Stop); err != nil {
		return err
	}
	return checkText("request_id", r.RequestID)
}

func generateRequestToPB(r GenerateRequest) (*pb.GenerateRequest, error) {
	if err := checkGenerateRequest(r); err != nil {
		return nil, err
	}
	s := r.Sampling
	out := &pb.GenerateRequest{
		Prompt:    r.Prompt,
		RequestId: r.RequestID,
		Sampling: &pb.Sampling{
			Temperature:       s.Temperature,
			TopP:              s.TopP,
			TopK:              int32(s.TopK),
			MinP:              s.MinP,
			MaxTokens:         int32(s.MaxTokens),
			Stop:              s.Stop,
			Seed:              s.Seed,
			RepetitionPenalty: s.RepetitionPenalty,
			PresencePenalty:   s.PresencePenalty,
			FrequencyPenalty:  s.FrequencyPenalty,
			Logprobs:          s.Logprobs,
			TopLogprobs:       int32(s.TopLogprobs),
			StopTokenIds:      s.StopTokenIDs,
			IgnoreEos:         s.IgnoreEOS,
			MinTokens:         int32(s.MinTokens),
		},
	}
	for _, m := range r.Messages {
		pm := &pb.Message{Role: m.Role, Content: m.Content, Name: m.Name, ToolCallId: m.ToolCallID}
		for _, c := range m.ToolCalls {
			pm.ToolCalls = append(pm.ToolCalls, &pb.ToolCall{Id: c.ID, Name: c.Name, Arguments: c.Arguments})
		}
		out.Messages = append(out.Messages, pm)
	}
	for _, t := range r.Tools {
		out.Tools = append(out.Tools, &pb.Tool{Name: t.Name, Description: t.Description, Parameters: string(t.Parameters)})
	}
	if c := r.ToolChoice; c != nil {
		mode, ok := toolModeToPB[c.Mode]
		if !ok {
			return nil, fmt.Errorf("%w: tool choice %q (want auto, none, required or function)", ErrInvalidRequest, c.Mode)
		}
		out.ToolChoice = &pb.ToolChoice{Mode: mode, Name: c.Name}
	}
	out.ParallelToolCalls = r.ParallelToolCalls
	if f := r.ResponseFormat; f != nil {
		t, ok := responseTypeToPB[f.Type]
		if !ok {
			return nil, fmt.Errorf("%w: response format type %q (want text, json_object or json_schema)", ErrInvalidRequest, f.Type)
		}
		if err := checkText("response_format.schema", string(f.Schema)); err != nil {
			return nil, err
		}
		out.ResponseFormat = &pb.ResponseFormat{Type: t, Schema: string(f.Schema)}
	}
	return out, nil
}

var toolModeToPB = map[string]pb.ToolChoice_Mode{
	ToolChoiceAuto:     pb.ToolChoice_MODE_AUTO,
	ToolChoiceNone:     pb.ToolChoice_MODE_NONE,
	ToolChoiceRequired: pb.ToolChoice_MODE_REQUIRED,
	ToolChoiceFunction: pb.ToolChoice_MODE_FUNCTION,
}

var responseTypeToPB = map[string]pb.ResponseFormat_Type{
	ResponseText:       pb.ResponseFormat_TYPE_TEXT,
	ResponseJSONObject: pb.ResponseFormat_TYPE_JSON_OBJECT,
	ResponseJSONSchema: pb.ResponseFormat_TYPE_JSON_SCHEMA,
}

func generateRequestFromPB(p *pb.GenerateRequest) GenerateRequest {
	s := p.GetSampling()
	if s == nil {
		s = &pb.Sampling{}
	}
	out := GenerateRequest{
		Prompt:    p.GetPrompt(),
		RequestID: p.GetRequestId(),
		Sampling: Sampling{
			Temperature:       s.Temperature,
			TopP:              s.TopP,
			TopK:              int(s.GetTopK()),
			MinP:              s.GetMinP(),
			MaxTokens:         int(s.GetMaxTokens()),
			Stop:              s.GetStop(),
			Seed:              s.Seed,
			RepetitionPenalty: s.GetRepetitionPenalty(),
			PresencePenalty:   s.GetPresencePenalty(),
			FrequencyPenalty:  s.GetFrequencyPenalty(),
			Logprobs:          s.GetLogprobs(),
			TopLogprobs:       int(s.GetTopLogprobs()),
			StopTokenIDs:      s.GetStopTokenIds(),
			IgnoreEOS:         s.GetIgnoreEos(),
			MinTokens:         int(s.GetMinTokens()),
		},
	}
	for _, m := range p.GetMessages() {
		msg := Message{Role: m.GetRole(), Content: m.GetContent(), Name: m.GetName(), ToolCallID: m.GetToolCallId()}
		for _, c := range m.GetToolCalls() {
			msg.ToolCalls = append(msg.ToolCalls, ToolCall{ID: c.GetId(), Name: c.GetName(), Arguments: c.GetArguments()})
		}
		out.Messages = append(out.Messages, msg)
	}
	for _, t := range p.GetTools() {
		out.Tools = append(out.Tools, Tool{Name: t.GetName(), Description: t.GetDescription(), Parameters: []byte(t.GetParameters())})
	}
	if c := p.GetToolChoice(); c != nil {
		out.ToolChoice = &ToolChoice{Mode: ToolChoiceAuto, Name: c.GetName()}
		for k, v := range toolModeToPB {
			if v == c.GetMode() {
				out.ToolChoice.Mode = k
			}
		}
	}
	out.ParallelToolCalls = p.ParallelToolCalls
	if f := p.GetResponseFormat(); f != nil && f.GetType() != pb.ResponseFormat_TYPE_TEXT {
		for name, t := range responseTypeToPB {
			if t == f.GetType() {
				out.ResponseFormat = &ResponseFormat{Type: name, Schema: []byte(f.GetSchema())}
			}
		}
		if out.ResponseFormat == nil {
			// A type of a later version: not one this plugin knows to honour.
			out.ResponseFormat = &ResponseFormat{Type: fmt.Sprintf("unknown (%d)", f.GetType())}
		}
	}
	return out
}

func eventToPB(e Event) *pb.GenerateEvent {
	out := &pb.GenerateEvent{Text: validText(e.Text), Tokens: int32(e.Tokens), FinishReason: finishToPB[e.FinishReason], Error: validText(e.Error)}
	for _, d := range e.ToolCalls {
		out.ToolCalls = append(out.ToolCalls, &pb.ToolCallDelta{Index: int32(d.Index), Id: validText(d.ID), Name: validText(d.Name), Arguments: validText(d.Arguments)})
	}
	if e.Usage != nil {
		out.Usage = &pb.Usage{PromptTokens: int32(e.Usage.PromptTokens), CompletionTokens: int32(e.Usage.CompletionTokens), CachedTokens: int32(e.Usage.CachedTokens)}
	}
	for _, lp := range e.Logprobs {
		t := &pb.TokenLogprob{Token: validText(lp.Token), Logprob: lp.Logprob}
		for _, a := range lp.Top {
			t.Top = append(t.Top, &pb.TopLogprob{Token: validText(a.Token), Logprob: a.Logprob})
		}
		out.Logprobs = append(out.Logprobs, t)
	}
	return out
}

func eventFromPB(p *pb.GenerateEvent) Event {
	out := Event{Text: p.GetText(), Tokens: int(p.GetTokens()), Error: p.GetError()}
	for _, d := range p.GetToolCalls() {
		out.ToolCalls = append(out.ToolCalls, ToolCallDelta{Index: int(d.GetIndex()), ID: d.GetId(), Name: d.GetName(), Arguments: d.GetArguments()})
	}
	for k, v := range finishToPB {
		if v == p.GetFinishReason() {
			out.FinishReason = k
		}
	}
	if u := p.GetUsage(); u != nil {
		out.Usage = &Usage{PromptTokens: int(u.GetPromptTokens()), CompletionTokens: int(u.GetCompletionTokens()), CachedTokens: int(u.GetCachedTokens())}
	}
	for _, lp := range p.GetLogprobs() {
		t := TokenLogprob{Token: lp.GetToken(), Logprob: lp.GetLogprob()}
		for _, a := range lp.GetTop() {
			t.Top = append(t.Top, TopLogprob{Token: a.GetToken(), Logprob: a.GetLogprob()})
		}
		out.Logprobs = append(out.Logprobs, t)
	}
	return out
}

func embedRequestToPB(r EmbedRequest) (*pb.EmbedRequest, error) {
	if err := checkTexts("input", r.Input); err != nil {
		return nil, err
	}
	return &pb.EmbedRequest{Input: r.Input, Truncate: r.Truncate}, nil
}

func embedRequestFromPB(p *pb.EmbedRequest) EmbedRequest {
	return EmbedRequest{Input: p.GetInput(), Truncate: p.GetTruncate()}
}

func tokenizeRequestToPB(r TokenizeRequest) (*pb.TokenizeRequest, error) {
	if err := checkTexts("input", r.Input); err != nil {
		return nil, err
	}
	return &pb.TokenizeRequest{Input: r.Input}, nil
}

func tokenizeRequestFromPB(p *pb.TokenizeRequest) TokenizeRequest {
	return TokenizeRequest{Input: p.GetInput()}
}

func tokenizeResponseToPB(r TokenizeResponse) *pb.TokenizeResponse {
	out := &pb.TokenizeResponse{Counts: make([]int32, len(r.Counts))}
	for i, n := range r.Counts {
		out.Counts[i] = int32(n)
	}
	return out
}

func tokenizeResponseFromPB(p *pb.TokenizeResponse) TokenizeResponse {
	out := TokenizeResponse{Counts: make([]int, len(p.GetCounts()))}
	for i, n := range p.GetCounts() {
		out.Counts[i] = int(n)
	}
	return out
}

func embedResponseToPB(r EmbedResponse) *pb.EmbedResponse {
	out := &pb.EmbedResponse{PromptTokens: int32(r.PromptTokens)}
	for _, e := range r.Embeddings {
		out.Embeddings = append(out.Embeddings, &pb.Embedding{Values: e})
	}
	return out
}

func embedResponseFromPB(p *pb.EmbedResponse) EmbedResponse {
	out := EmbedResponse{PromptTokens: int(p.GetPromptTokens())}
	for _, e := range p.GetEmbeddings() {
		out.Embeddings = append(out.Embeddings, e.GetValues())
	}
	return out
}

func rerankRequestToPB(r RerankRequest) (*pb.RerankRequest, error) {
	if err := checkText("query", r.Query); err != nil {
		return nil, err
	}
	if err := checkTexts("documents", r.Documents); err != nil {
		return nil, err
	}
	return &pb.RerankRequest{Query: r.Query, Documents: r.Documents, Truncate: r.Truncate}, nil
}

func rerankRequestFromPB(p *pb.RerankRequest) RerankRequest {
	return RerankRequest{Query: p.GetQuery(), Documents: p.GetDocuments(), Truncate: p.GetTruncate()}
}

func rerankResponseToPB(r RerankResponse) *pb.RerankResponse {
	return &pb.RerankResponse{Scores: r.Scores, PromptTokens: int32(r.PromptTokens)}
}

func rerankResponseFromPB(p *pb.RerankResponse) RerankResponse {
	return RerankResponse{Scores: p.GetScores(), PromptTokens: int(p.GetPromptTokens())}
}

func healthToPB(h Health) *pb.HealthResponse {
	return &pb.HealthResponse{Ok: h.OK, Running: int32(h.Running), Waiting: int32(h.Waiting), Slots: int32(h.Slots), Message: validText(h.Message)}
}

func healthFromPB(p *pb.HealthResponse) Health {
	return Health{OK: p.GetOk(), Running: int(p.GetRunning()), Waiting: int(p.GetWaiting()), Slots: int(p.GetSlots()), Message: p.GetMessage()}
}
