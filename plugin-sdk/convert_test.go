package sdk

import (
	"reflect"
	"testing"
	"time"

	"github.com/ragway/ragway/plugin-sdk/internal/pb"
)

func ptr[T any](v T) *T { return &v }

func TestInfoRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Info
		want Info
	}{
		{
			name: "empty",
			in:   Info{},
			want: Info{},
		},
		{
			name: "every capability in order",
			in: Info{Name: "llama", Version: "0.3.1", APIVersion: "1.2.0", MaxParallel: 4,
				Capabilities: []Capability{CapabilityTokenize, CapabilityChat, CapabilityEmbedding, CapabilityCompletion}},
			want: Info{Name: "llama", Version: "0.3.1", APIVersion: "1.2.0", MaxParallel: 4,
				Capabilities: []Capability{CapabilityTokenize, CapabilityChat, CapabilityEmbedding, CapabilityCompletion}},
		},
		{
			name: "unknown capability is dropped",
			in:   Info{Name: "x", Capabilities: []Capability{"telepathy", CapabilityChat}},
			want: Info{Name: "x", Capabilities: []Capability{CapabilityChat}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := infoFromPB(infoToPB(tt.in))
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestInfoHas(t *testing.T) {
	i := Info{Capabilities: []Capability{CapabilityChat}}
	if !i.Has(CapabilityChat) || i.Has(CapabilityEmbedding) {
		t.Errorf("Has: got chat=%v embedding=%v, want true false", i.Has(CapabilityChat), i.Has(CapabilityEmbedding))
	}
}

func TestLoadRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   LoadRequest
		want LoadRequest
	}{
		{
			name: "nil options become an empty map",
			in:   LoadRequest{Model: "m"},
			want: LoadRequest{Model: "m", Options: map[string]any{}},
		},
		{
			name: "JSON-like values pass unchanged",
			in: LoadRequest{Model: "m", Embedding: true, Options: map[string]any{
				"s": "x", "f": 1.5, "b": true, "nil": nil,
				"list": []any{"a", 2.0}, "map": map[string]any{"k": "v"},
			}},
			want: LoadRequest{Model: "m", Embedding: true, Options: map[string]any{
				"s": "x", "f": 1.5, "b": true, "nil": nil,
				"list": []any{"a", 2.0}, "map": map[string]any{"k": "v"},
			}},
		},
		{
			name: "YAML decoder values are normalised",
			in: LoadRequest{Model: "m", Options: map[string]any{
				"int": 3, "int32": int32(-4), "int64": int64(5), "uint": uint(6), "uint64": uint64(7),
				"float32": float32(0.5),
				"strings": []string{"a", "b"},
				"anymap":  map[any]any{"k": 1, 2: "two", true: []string{"x"}},
				"nested":  map[string]any{"deep": []any{map[any]any{"n": int64(8)}}},
			}},
			want: LoadRequest{Model: "m", Options: map[string]any{
				"int": 3.0, "int32": -4.0, "int64": 5.0, "uint": 6.0, "uint64": 7.0,
				"float32": 0.5,
				"strings": []any{"a", "b"},
				"anymap":  map[string]any{"k": 1.0, "2": "two", "true": []any{"x"}},
				"nested":  map[string]any{"deep": []any{map[string]any{"n": 8.0}}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := loadRequestToPB(tt.in)
			if err != nil {
				t.Fatalf("loadRequestToPB: %v", err)
			}
			got := loadRequestFromPB(p)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}

func TestLoadRequestUnsupportedOption(t *testing.T) {
	tests := []struct {
		name  string
		value any
	}{
		{"struct", struct{ A int }{1}},
		{"duration", time.Second},
		{"channel", make(chan int)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadRequestToPB(LoadRequest{Options: map[string]any{"opt": tt.value}})
			if !IsInvalidRequest(err) {
				t.Errorf("loadRequestToPB(%T) = %v, want ErrInvalidRequest", tt.value, err)
			}
		})
	}
}

func TestModelInfoRoundTrip(t *testing.T) {
	for _, in := range []ModelInfo{{}, {ContextLength: 8192, EmbeddingSize: 768, HasChatTemplate: true, MaxInputTokens: 512}} {
		if got := modelInfoFromPB(modelInfoToPB(in)); got != in {
			t.Errorf("round trip: got %+v, want %+v", got, in)
		}
	}
}

func TestGenerateRequestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   GenerateRequest
	}{
		{
			name: "zero",
			in:   GenerateRequest{},
		},
		{
			name: "prompt with unset pointers",
			in:   GenerateRequest{Prompt: "once upon", RequestID: "r1", Sampling: Sampling{TopK: 40, MaxTokens: 16}},
		},
		{
			name: "pointers set to zero stay set",
			in: GenerateRequest{Prompt: "p", Sampling: Sampling{
				Temperature: ptr(0.0), TopP: ptr(0.0), Seed: ptr(int64(0)),
			}},
		},
		{
			name: "every field",
			in: GenerateRequest{
				Messages: []Message{
					{Role: "system", Content: "be brief"},
					{Role: "user", Content: "hi", Name: "alice"},
				},
				RequestID: "req-42",
				Sampling: Sampling{
					Temperature: ptr(0.7), TopP: ptr(0.9), TopK: 40, MinP: 0.05, MaxTokens: 128,
					Stop: []string{"\n\n", "END"}, Seed: ptr(int64(-3)),
					RepetitionPenalty: 1.1, PresencePenalty: 0.2, FrequencyPenalty: -0.3,
					Logprobs: true, TopLogprobs: 5, StopTokenIDs: []int32{2, 7}, IgnoreEOS: true, MinTokens: 3,
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := generateRequestToPB(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			got := generateRequestFromPB(w)
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tt.in)
			}
			s := got.Sampling
			if (s.Temperature == nil) != (tt.in.Sampling.Temperature == nil) ||
				(s.TopP == nil) != (tt.in.Sampling.TopP == nil) ||
				(s.Seed == nil) != (tt.in.Sampling.Seed == nil) {
				t.Errorf("pointer presence changed: got %+v, want %+v", s, tt.in.Sampling)
			}
		})
	}
}

func TestGenerateRequestFromPBWithoutSampling(t *testing.T) {
	got := generateRequestFromPB(&pb.GenerateRequest{Prompt: "p"})
	if want := (GenerateRequest{Prompt: "p"}); !reflect.DeepEqual(got, want) {
		t.Errorf("got %#v, want %#v", got, want)
	}
}

func TestEventRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   Event
	}{
		{name: "empty delta", in: Event{}},
		{name: "delta", in: Event{Text: "Hello", Tokens: 2}},
		{name: "final stop", in: Event{Text: "!", Tokens: 1, FinishReason: FinishStop, Usage: &Usage{PromptTokens: 9, CompletionTokens: 3, CachedTokens: 4}}},
		{name: "final length", in: Event{FinishReason: FinishLength, Usage: &Usage{PromptTokens: 1, CompletionTokens: 16}}},
		{name: "final cancelled", in: Event{FinishReason: FinishCancelled, Usage: &Usage{}}},
		{name: "final error", in: Event{FinishReason: FinishError, Usage: &Usage{PromptTokens: 2}, Error: "CUDA out of memory"}},
		{
			name: "logprobs",
			in: Event{Text: " the cat", Tokens: 2, Logprobs: []TokenLogprob{
				{Token: " the", Logprob: -0.1, Top: []TopLogprob{{Token: " the", Logprob: -0.1}, {Token: " a", Logprob: -2.5}}},
				{Token: " cat", Logprob: -1.25},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := eventFromPB(eventToPB(tt.in))
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tt.in)
			}
			if got.Final() != (tt.in.FinishReason != "") {
				t.Errorf("Final() = %v for finish reason %q", got.Final(), tt.in.FinishReason)
			}
		})
	}
}

func TestFinishReasonsAreDistinctOnTheWire(t *testing.T) {
	seen := map[pb.FinishReason]FinishReason{}
	for r, v := range finishToPB {
		if prev, dup := seen[v]; dup {
			t.Errorf("finish reasons %q and %q share wire value %v", prev, r, v)
		}
		seen[v] = r
	}
	for name, v := range pb.FinishReason_value {
		if _, ok := seen[pb.FinishReason(v)]; !ok {
			t.Errorf("wire finish reason %s has no Go FinishReason", name)
		}
	}
	for name, v := range pb.Capability_value {
		found := v == int32(pb.Capability_CAPABILITY_UNSPECIFIED)
		for _, c := range capabilityToPB {
			found = found || c == pb.Capability(v)
		}
		if !found {
			t.Errorf("wire capability %s has no Go Capability", name)
		}
	}
}

func TestEmbedResponseRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		in   EmbedResponse
	}{
		{name: "empty", in: EmbedResponse{}},
		{name: "vectors", in: EmbedResponse{PromptTokens: 7, Embeddings: [][]float32{{0.1, -0.2, 0.3}, {1, 0, -1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := embedResponseFromPB(embedResponseToPB(tt.in))
			if !reflect.DeepEqual(got, tt.in) {
				t.Errorf("round trip:\n got %#v\nwant %#v", got, tt.in)
			}
		})
	}
}

func TestEmbedRequestRoundTrip(t *testing.T) {
	for _, in := range []EmbedRequest{{}, {Input: []string{"a", "", "c\x00d"}}, {Input: []string{"x"}, Truncate: true}} {
		w, err := embedRequestToPB(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := embedRequestFromPB(w); !reflect.DeepEqual(got, in) {
			t.Errorf("round trip: got %#v, want %#v", got, in)
		}
	}
}

func TestTokenizeRoundTrip(t *testing.T) {
	for _, in := range []TokenizeRequest{{}, {Input: []string{"hello world", "", "\x00"}}} {
		w, err := tokenizeRequestToPB(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := tokenizeRequestFromPB(w); !reflect.DeepEqual(got, in) {
			t.Errorf("request round trip: got %#v, want %#v", got, in)
		}
	}
	for _, in := range []TokenizeResponse{{Counts: []int{}}, {Counts: []int{3, 0, 70000}}} {
		if got := tokenizeResponseFromPB(tokenizeResponseToPB(in)); !reflect.DeepEqual(got, in) {
			t.Errorf("response round trip: got %#v, want %#v", got, in)
		}
	}
}

func TestHealthRoundTrip(t *testing.T) {
	for _, in := range []Health{{}, {OK: true, Running: 3, Waiting: 2, Slots: 4, Message: "busy"}} {
		if got := healthFromPB(healthToPB(in)); got != in {
			t.Errorf("round trip: got %+v, want %+v", got, in)
		}
	}
}
