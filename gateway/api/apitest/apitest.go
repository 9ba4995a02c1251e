package apitest

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// GenerateFunc is the behaviour of Generate.
type GenerateFunc func(ctx context.Context, model string, req sdk.GenerateRequest, emit func(sdk.Event) error) error

// EmbedFunc is the behaviour of Embed.
type EmbedFunc func(ctx context.Context, model string, req sdk.EmbedRequest) (sdk.EmbedResponse, error)

// RerankFunc is the behaviour of Rerank.
type RerankFunc func(ctx context.Context, model string, req sdk.RerankRequest) (sdk.RerankResponse, error)

// Call is one recorded Generate call.
type Call struct {
	Model string
	Req   sdk.GenerateRequest
}

// Fake implements api.Backends and ws.Backend over a fixed model list and
// scripted behaviours. Its zero behaviour echoes the last message (or the
// prompt) word by word.
type Fake struct {
	mu       sync.Mutex
	models   []workers.ModelStatus
	generate GenerateFunc
	refuse   func(model string) error
	embed    EmbedFunc
	rerank   RerankFunc
	calls    []Call
}

// Key is a key of the shape of a ragway key, for tests against the fake Gate (which
// accepts any key): the server reads no body of a request without a well-formed key.
const Key = "rgw_testtest_0123456789abcdefghijABCDEFGHIJ0123456789"

// New returns a Fake serving models.
func New(models ...workers.ModelStatus) *Fake {
	return &Fake{models: models, generate: Echo, embed: HashEmbed, rerank: OverlapRerank}
}

// ReadyModel returns the status of a model with one ready replica.
func ReadyModel(name string, aliases ...string) workers.ModelStatus {
	return workers.ModelStatus{
		Name: name, Aliases: aliases, Backend: "fake", Created: time.Unix(1700000000, 0),
		Replicas: []workers.ReplicaStatus{{ID: 0, State: workers.StateReady, Pid: 4242}},
	}
}

// EmbeddingModel returns the status of a ready embedding model.
func EmbeddingModel(name string) workers.ModelStatus {
	m := ReadyModel(name)
	m.Embedding = true
	return m
}

// SetGenerate replaces the behaviour of Generate.
func (f *Fake) SetGenerate(fn GenerateFunc) {
	f.mu.Lock()
	f.generate = fn
	f.mu.Unlock()
}

// SetEmbed replaces the behaviour of Embed.
func (f *Fake) SetEmbed(fn EmbedFunc) {
	f.mu.Lock()
	f.embed = fn
	f.mu.Unlock()
}

// SetRerank replaces the behaviour of Rerank.
func (f *Fake) SetRerank(fn RerankFunc) {
	f.mu.Lock()
	f.rerank = fn
	f.mu.Unlock()
}

// Rerank runs the current behaviour.
func (f *Fake) Rerank(ctx context.Context, model string, req sdk.RerankRequest) (sdk.RerankResponse, error) {
	f.mu.Lock()
	fn := f.rerank
	f.mu.Unlock()
	return fn(ctx, model, req)
}

// RerankModel returns the status of a ready rerank model.
func RerankModel(name string) workers.ModelStatus {
	m := ReadyModel(name)
	m.Rerank = true
	return m
}

// OverlapRerank scores each document by how many of the query's words (lower-cased,
// split at spaces) it contains, and counts a token per word of the query and the
// documents.
func OverlapRerank(_ context.Context, _ string, req sdk.RerankRequest) (sdk.RerankResponse, error) {
	words := strings.Fields(strings.ToLower(req.Query))
	resp := sdk.RerankResponse{Scores: make([]float32, len(req.Documents))}
	for i, d := range req.Documents {
		d = strings.ToLower(d)
		for _, w := range words {
			if strings.Contains(d, w) {
				resp.Scores[i]++
			}
		}
		resp.PromptTokens += len(words) + len(strings.Fields(d))
	}
	return resp, nil
}

// SetModels replaces the model list.
func (f *Fake) SetModels(models ...workers.ModelStatus) {
	f.mu.Lock()
	f.models = models
	f.mu.Unlock()
}

// Calls returns the Generate calls so far.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// Generate admits the request (unless SetRefuse refuses it: a replica never took
// it), admits it as workers.Manager does, records the call and runs the
// current behaviour.
func (f *Fake) Generate(ctx context.Context, model string, req sdk.GenerateRequest, adm *workers.Admission, emit func(sdk.Event) error) error {
	f.mu.Lock()
	refuse := f.refuse
	f.mu.Unlock()
	if refuse != nil {
		if err := refuse(model); err != nil {
			return err
		}
	}
	if adm != nil && adm.Admit != nil {
		if err := adm.Admit(&req); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, Call{Model: model, Req: req})
	fn := f.generate
	f.mu.Unlock()
	return fn(ctx, model, req, emit)
}

// SetRefuse makes Generate refuse requests before a replica takes them (as a model
// that is unavailable or whose queue is full): a non-nil error of fn is returned
// before admission. nil admits every request again.
func (f *Fake) SetRefuse(fn func(model string) error) {
	f.mu.Lock()
	f.refuse = fn
	f.mu.Unlock()
}

// Embed runs the current behaviour.
func (f *Fake) Embed(ctx context.Context, model string, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	f.mu.Lock()
	fn := f.embed
	f.mu.Unlock()
	return fn(ctx, model, req)
}

// Models returns the model list.
func (f *Fake) Models() []workers.ModelStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]workers.ModelStatus(nil), f.models...)
}

// Model finds a model by name or alias.
func (f *Fake) Model(name string) (workers.ModelStatus, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range f.models {
		if m.Name == name {
			return m, true
		}
		for _, a := range m.Aliases {
			if a == name {
				return m, true
			}
		}
	}
	return workers.ModelStatus{}, false
}

// Script returns a behaviour that emits texts as delta events, then a
// final event with finish and usage.
func Script(texts []string, finish sdk.FinishReason, usage sdk.Usage) GenerateFunc {
	return func(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
		for _, t := range texts {
			if err := emit(sdk.Event{Text: t, Tokens: 1}); err != nil {
				return err
			}
		}
		u := usage
		return emit(sdk.Event{FinishReason: finish, Usage: &u})
	}
}

// Fail returns a behaviour that emits texts and then returns err.
func Fail(err error, texts ...string) GenerateFunc {
	return func(ctx context.Context, _ string, _ sdk.GenerateRequest, emit func(sdk.Event) error) error {
		for _, t := range texts {
			if e := emit(sdk.Event{Text: t, Tokens: 1}); e != nil {
				return e
			}
		}
		return err
	}
}

// Echo emits the words of the last message (or of the prompt), one event
// per word, then stops; usage counts words.
func Echo(ctx context.Context, _ string, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
	text := req.Prompt
	prompt := len(strings.Fields(req.Prompt))
	for _, m := range req.Messages {
		text = m.Content
		prompt += len(strings.Fields(m.Content))
	}
	words := strings.SplitAfter(text, " ")
	n := 0
	for _, w := range words {
		if w == "" {
			continue
		}
		if req.Sampling.MaxTokens > 0 && n == req.Sampling.MaxTokens {
			return emit(sdk.Event{FinishReason: sdk.FinishLength, Usage: &sdk.Usage{PromptTokens: prompt, CompletionTokens: n}})
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := emit(sdk.Event{Text: w, Tokens: 1}); err != nil {
			return err
		}
		n++
	}
	return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: prompt, CompletionTokens: n}})
}

// HashEmbed returns a deterministic 4-dimensional embedding per input.
func HashEmbed(_ context.Context, _ string, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	out := sdk.EmbedResponse{Embeddings: make([][]float32, len(req.Input))}
	for i, in := range req.Input {
		v := make([]float32, 4)
		for k, c := range []byte(in) {
			v[k%4] += float32(c) / 256
		}
		out.Embeddings[i] = v
		out.PromptTokens += len(strings.Fields(in))
	}
	return out, nil
}

// Gate admits every request, with or without a key, as Principal.
type Gate struct {
	// Principal is who every request is; zero: a request without a key.
	Principal auth.Principal
}

// Check implements api.Gate and ws.Gate.
func (g Gate) Check(context.Context, string, string) (auth.Principal, error) { return g.Principal, nil }

// Verify implements ws.Gate.
func (g Gate) Verify(context.Context, string, string) (auth.Principal, error) {
	return g.Principal, nil
}
