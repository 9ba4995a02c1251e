package sdk

import (
	"context"
	"errors"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/ragway/ragway/plugin-sdk/internal/pb"
	"google.golang.org/grpc"
)

// fakeBackend is a Backend whose methods are function fields; nil ones
// return zero values.
type fakeBackend struct {
	info     func(context.Context) (Info, error)
	load     func(context.Context, LoadRequest) (ModelInfo, error)
	generate func(context.Context, GenerateRequest, func(Event) error) error
	health   func(context.Context) (Health, error)
}

func (f *fakeBackend) Info(ctx context.Context) (Info, error) {
	if f.info == nil {
		return Info{Name: "fake"}, nil
	}
	return f.info(ctx)
}

func (f *fakeBackend) Load(ctx context.Context, r LoadRequest) (ModelInfo, error) {
	if f.load == nil {
		return ModelInfo{}, nil
	}
	return f.load(ctx, r)
}

func (f *fakeBackend) Generate(ctx context.Context, r GenerateRequest, emit func(Event) error) error {
	if f.generate == nil {
		return emit(Event{FinishReason: FinishStop, Usage: &Usage{}})
	}
	return f.generate(ctx, r, emit)
}

func (f *fakeBackend) Health(ctx context.Context) (Health, error) {
	if f.health == nil {
		return Health{OK: true}, nil
	}
	return f.health(ctx)
}

type fakeEmbedder struct {
	*fakeBackend
	embed func(context.Context, EmbedRequest) (EmbedResponse, error)
}

func (f fakeEmbedder) Embed(ctx context.Context, r EmbedRequest) (EmbedResponse, error) {
	return f.embed(ctx, r)
}

// inProcess serves b over a real in-memory gRPC connection and returns the
// host side, without a subprocess. die simulates the process exiting.
func inProcess(t *testing.T, b Backend) (p *Plugin, die func()) {
	t.Helper()
	conn, srv := plugin.TestGRPCConn(t, func(s *grpc.Server) {
		pb.RegisterBackendServer(s, &server{impl: b})
	})
	t.Cleanup(func() { conn.Close(); srv.Stop() })
	dead, markDead := context.WithCancel(context.Background())
	t.Cleanup(markDead)
	proc := &procRunner{cmd: exec.Command("fake"), done: make(chan struct{})}
	p = &Plugin{name: "fake", rpc: pb.NewBackendClient(conn), proc: proc, tail: newStderrTail(8), dead: dead}
	return p, func() {
		proc.waitErr = errors.New("signal: killed")
		close(proc.done)
		markDead()
	}
}

func collect(ctx context.Context, p *Plugin, req GenerateRequest) ([]Event, error) {
	var evs []Event
	err := p.Generate(ctx, req, func(e Event) error { evs = append(evs, e); return nil })
	return evs, err
}

func TestAdapterGenerateStreamsInOrder(t *testing.T) {
	var gotReq GenerateRequest
	p, _ := inProcess(t, &fakeBackend{generate: func(_ context.Context, r GenerateRequest, emit func(Event) error) error {
		gotReq = r
		for _, w := range []string{"a", " b", " c"} {
			if err := emit(Event{Text: w, Tokens: 1}); err != nil {
				return err
			}
		}
		return emit(Event{FinishReason: FinishStop, Usage: &Usage{PromptTokens: 2, CompletionTokens: 3}})
	}})
	req := GenerateRequest{Messages: []Message{{Role: "user", Content: "hi"}}, RequestID: "r", Sampling: Sampling{Temperature: ptr(0.0), Stop: []string{"x"}}}
	evs, err := collect(context.Background(), p, req)
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{{Text: "a", Tokens: 1}, {Text: " b", Tokens: 1}, {Text: " c", Tokens: 1},
		{FinishReason: FinishStop, Usage: &Usage{PromptTokens: 2, CompletionTokens: 3}}}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events %+v, want %+v", evs, want)
	}
	if !reflect.DeepEqual(gotReq, req) {
		t.Errorf("plugin got request %+v, want %+v", gotReq, req)
	}
}

func TestAdapterGenerateContract(t *testing.T) {
	tests := []struct {
		name      string
		generate  func(context.Context, GenerateRequest, func(Event) error) error
		wantErr   string // substring; "" means success
		wantFinal *Event
		emitErr   string // what the plugin's emit must have returned ("": nil)
	}{
		{
			name: "final without usage gets zero usage",
			generate: func(_ context.Context, _ GenerateRequest, emit func(Event) error) error {
				return emit(Event{Text: "x", Tokens: 1, FinishReason: FinishLength})
			},
			wantFinal: &Event{Text: "x", Tokens: 1, FinishReason: FinishLength, Usage: &Usage{}},
		},
		{
			name: "no final event",
			generate: func(_ context.Context, _ GenerateRequest, emit func(Event) error) error {
				return emit(Event{Text: "x", Tokens: 1})
			},
			wantErr: "without a final event",
		},
		{
			name: "event after the final event is refused",
			generate: func(_ context.Context, _ GenerateRequest, emit func(Event) error) error {
				if err := emit(Event{FinishReason: FinishStop, Usage: &Usage{}}); err != nil {
					return err
				}
				return emit(Event{Text: "late"})
			},
			wantFinal: &Event{FinishReason: FinishStop, Usage: &Usage{}},
			emitErr:   errAfterFinal.Error(),
		},
		{
			name: "unknown finish reason is refused",
			generate: func(_ context.Context, _ GenerateRequest, emit func(Event) error) error {
				return emit(Event{FinishReason: "eos"})
			},
			wantErr: `unknown finish reason "eos"`,
			emitErr: `unknown finish reason "eos"`,
		},
		{
			name: "error before the final event",
			generate: func(_ context.Context, _ GenerateRequest, emit func(Event) error) error {
				if err := emit(Event{Text: "x", Tokens: 1}); err != nil {
					return err
				}
				return InvalidRequestf("prompt too long")
			},
			wantErr: "prompt too long",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emitErrs := make(chan error, 4)
			p, _ := inProcess(t, &fakeBackend{generate: func(ctx context.Context, r GenerateRequest, emit func(Event) error) error {
				err := tt.generate(ctx, r, func(e Event) error {
					err := emit(e)
					if err != nil {
						emitErrs <- err
					}
					return err
				})
				close(emitErrs)
				return err
			}})
			evs, err := collect(context.Background(), p, GenerateRequest{Prompt: "p"})
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Generate error %v, want %q", err, tt.wantErr)
			}
			if tt.wantFinal != nil && (len(evs) == 0 || !reflect.DeepEqual(evs[len(evs)-1], *tt.wantFinal)) {
				t.Errorf("events %+v, want last %+v", evs, *tt.wantFinal)
			}
			var first error
			for e := range emitErrs { // closed when the plugin's Generate returned
				if first == nil {
					first = e
				}
			}
			if (first == nil) != (tt.emitErr == "") || first != nil && !strings.Contains(first.Error(), tt.emitErr) {
				t.Errorf("plugin's emit returned %v, want %v", first, tt.emitErr)
			}
		})
	}
}

func TestAdapterCancellationReachesPlugin(t *testing.T) {
	started := make(chan struct{})
	pluginDone := make(chan error, 1)
	p, _ := inProcess(t, &fakeBackend{generate: func(ctx context.Context, _ GenerateRequest, emit func(Event) error) error {
		if err := emit(Event{Text: "x", Tokens: 1}); err != nil {
			return err
		}
		close(started)
		<-ctx.Done()
		pluginDone <- ctx.Err()
		return ctx.Err()
	}})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := collect(ctx, p, GenerateRequest{Prompt: "p"}); errc <- err }()
	<-started
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || IsPluginShutdown(err) {
		t.Errorf("Generate = %v, want context.Canceled and not ErrPluginShutdown", err)
	}
	select {
	case <-pluginDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin's ctx was not cancelled")
	}
}

func TestAdapterEmitErrorStopsGeneration(t *testing.T) {
	pluginDone := make(chan struct{})
	p, _ := inProcess(t, &fakeBackend{generate: func(ctx context.Context, _ GenerateRequest, emit func(Event) error) error {
		defer close(pluginDone)
		for {
			if err := emit(Event{Text: "x", Tokens: 1}); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}})
	stop := errors.New("client gone")
	err := p.Generate(context.Background(), GenerateRequest{Prompt: "p"}, func(Event) error { return stop })
	if !errors.Is(err, stop) {
		t.Errorf("Generate = %v, want the emit error", err)
	}
	select {
	case <-pluginDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the plugin kept generating after the host's emit failed")
	}
}

func TestAdapterProcessDeathEndsCalls(t *testing.T) {
	started := make(chan struct{})
	p, die := inProcess(t, &fakeBackend{generate: func(ctx context.Context, _ GenerateRequest, emit func(Event) error) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}})
	errc := make(chan error, 1)
	go func() { _, err := collect(context.Background(), p, GenerateRequest{Prompt: "p"}); errc <- err }()
	<-started
	die()
	err := <-errc
	if !IsPluginShutdown(err) || !strings.Contains(err.Error(), "signal: killed") {
		t.Errorf("Generate = %v, want ErrPluginShutdown naming the exit", err)
	}
	select {
	case <-p.Done():
	default:
		t.Error("Done not closed")
	}
	if _, err := p.Health(context.Background()); !IsPluginShutdown(err) {
		t.Errorf("Health after death = %v, want ErrPluginShutdown", err)
	}
}

func TestAdapterErrorsCrossTheWire(t *testing.T) {
	tests := []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"invalid", InvalidRequestf("unknown option %q", "bogus"), IsInvalidRequest},
		{"not loaded", ErrModelNotLoaded, IsModelNotLoaded},
		{"overloaded", ErrOverloaded, IsOverloaded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := inProcess(t, &fakeBackend{
				load:   func(context.Context, LoadRequest) (ModelInfo, error) { return ModelInfo{}, tt.err },
				health: func(context.Context) (Health, error) { return Health{}, tt.err },
				generate: func(context.Context, GenerateRequest, func(Event) error) error {
					return tt.err
				},
			})
			ctx := context.Background()
			_, lerr := p.Load(ctx, LoadRequest{Model: "m"})
			_, herr := p.Health(ctx)
			_, gerr := collect(ctx, p, GenerateRequest{Prompt: "p"})
			for op, err := range map[string]error{"load": lerr, "health": herr, "generate": gerr} {
				if !tt.is(err) || !strings.Contains(err.Error(), tt.err.Error()) || !strings.HasPrefix(err.Error(), op+": ") {
					t.Errorf("%s = %v, want %q matching its sentinel", op, err, op+": "+tt.err.Error())
				}
			}
		})
	}
}

func TestAdapterInfo(t *testing.T) {
	tests := []struct {
		name    string
		api     string
		wantAPI string
		wantErr bool
	}{
		{"filled in when empty", "", APIVersion, false},
		{"kept when set", "1.9.0", "1.9.0", false},
		{"incompatible major", "2.0.0", "2.0.0", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, _ := inProcess(t, &fakeBackend{info: func(context.Context) (Info, error) {
				return Info{Name: "fake", APIVersion: tt.api}, nil
			}})
			info, err := p.Info(context.Background())
			if (err != nil) != tt.wantErr || info.APIVersion != tt.wantAPI || info.Name != "fake" {
				t.Errorf("Info = %+v, %v; want api %q, error %v", info, err, tt.wantAPI, tt.wantErr)
			}
		})
	}
}

func TestAdapterLoadAndEmbed(t *testing.T) {
	var got LoadRequest
	fb := &fakeBackend{load: func(_ context.Context, r LoadRequest) (ModelInfo, error) {
		got = r
		return ModelInfo{ContextLength: 4096, EmbeddingSize: 3}, nil
	}}
	t.Run("without Embedder", func(t *testing.T) {
		p, _ := inProcess(t, fb)
		if _, err := p.Embed(context.Background(), EmbedRequest{Input: []string{"x"}}); !IsUnsupported(err) {
			t.Errorf("Embed = %v, want ErrUnsupported", err)
		}
	})
	t.Run("with Embedder", func(t *testing.T) {
		p, _ := inProcess(t, fakeEmbedder{fakeBackend: fb, embed: func(_ context.Context, r EmbedRequest) (EmbedResponse, error) {
			out := EmbedResponse{PromptTokens: len(r.Input)}
			for range r.Input {
				out.Embeddings = append(out.Embeddings, []float32{1, 2, 3})
			}
			return out, nil
		}})
		mi, err := p.Load(context.Background(), LoadRequest{Model: "m", Embedding: true, Options: map[string]any{"n": 1}})
		if err != nil || mi.EmbeddingSize != 3 {
			t.Fatalf("Load = %+v, %v", mi, err)
		}
		if want := (LoadRequest{Model: "m", Embedding: true, Options: map[string]any{"n": 1.0}}); !reflect.DeepEqual(got, want) {
			t.Errorf("plugin got %+v, want %+v", got, want)
		}
		resp, err := p.Embed(context.Background(), EmbedRequest{Input: []string{"a", "b"}})
		if err != nil || len(resp.Embeddings) != 2 || resp.PromptTokens != 2 {
			t.Errorf("Embed = %+v, %v", resp, err)
		}
	})
}

type fakeTokenizer struct {
	*fakeBackend
	tokenize func(context.Context, TokenizeRequest) (TokenizeResponse, error)
}

func (f fakeTokenizer) Tokenize(ctx context.Context, r TokenizeRequest) (TokenizeResponse, error) {
	return f.tokenize(ctx, r)
}

func TestAdapterTokenize(t *testing.T) {
	ctx := context.Background()
	t.Run("without Tokenizer", func(t *testing.T) {
		p, _ := inProcess(t, &fakeBackend{})
		if _, err := p.Tokenize(ctx, TokenizeRequest{Input: []string{"x"}}); !IsUnsupported(err) || !strings.HasPrefix(err.Error(), "tokenize: ") {
			t.Errorf("Tokenize = %v, want ErrUnsupported", err)
		}
	})
	words := func(_ context.Context, r TokenizeRequest) (TokenizeResponse, error) {
		out := TokenizeResponse{}
		for i, in := range r.Input {
			if in == "bad" {
				return TokenizeResponse{}, InvalidRequestf("input[%d] is bad", i)
			}
			out.Counts = append(out.Counts, len(strings.Fields(in)))
		}
		return out, nil
	}
	t.Run("with Tokenizer", func(t *testing.T) {
		p, _ := inProcess(t, fakeTokenizer{fakeBackend: &fakeBackend{}, tokenize: words})
		resp, err := p.Tokenize(ctx, TokenizeRequest{Input: []string{"a b c", "", "d"}})
		if err != nil || !reflect.DeepEqual(resp.Counts, []int{3, 0, 1}) {
			t.Errorf("Tokenize = %+v, %v; want counts [3 0 1]", resp, err)
		}
		if _, err := p.Tokenize(ctx, TokenizeRequest{Input: []string{"ok", "bad"}}); !IsInvalidRequest(err) || !strings.Contains(err.Error(), "input[1] is bad") {
			t.Errorf("Tokenize of a bad input = %v, want the plugin's ErrInvalidRequest", err)
		}
	})
	t.Run("a plugin breaking the contract", func(t *testing.T) {
		for name, counts := range map[string][]int{"too few counts": {1}, "negative count": {1, -1}} {
			p, _ := inProcess(t, fakeTokenizer{fakeBackend: &fakeBackend{}, tokenize: func(context.Context, TokenizeRequest) (TokenizeResponse, error) {
				return TokenizeResponse{Counts: counts}, nil
			}})
			if _, err := p.Tokenize(ctx, TokenizeRequest{Input: []string{"a", "b"}}); err == nil || IsInvalidRequest(err) {
				t.Errorf("%s: Tokenize = %v, want a plugin error", name, err)
			}
		}
	})
}

// EmbedRequest.Truncate reaches the plugin.
func TestAdapterEmbedTruncate(t *testing.T) {
	var got []EmbedRequest
	p, _ := inProcess(t, fakeEmbedder{fakeBackend: &fakeBackend{}, embed: func(_ context.Context, r EmbedRequest) (EmbedResponse, error) {
		got = append(got, r)
		return EmbedResponse{Embeddings: [][]float32{{1}}}, nil
	}})
	for _, truncate := range []bool{false, true} {
		if _, err := p.Embed(context.Background(), EmbedRequest{Input: []string{"x"}, Truncate: truncate}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []EmbedRequest{{Input: []string{"x"}}, {Input: []string{"x"}, Truncate: true}}; !reflect.DeepEqual(got, want) {
		t.Errorf("plugin got %+v, want %+v", got, want)
	}
}
