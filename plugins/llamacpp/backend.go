package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/hybridgroup/yzma/pkg/llama"
	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugin-sdk/gbnf"
)

// version of this plugin, reported in Info.
const version = "0.1.0"

// defaultContextLength caps the per-sequence context when the options set
// none (models often train on far longer contexts than a small box holds).
const defaultContextLength = 4096

// backend implements sdk.Backend, sdk.Embedder, sdk.Tokenizer and
// sdk.Reranker over llama.cpp.
type backend struct {
	log *slog.Logger

	mu        sync.Mutex // guards the fields below and serialises Load
	opts      options
	model     llama.Model
	lctx      llama.Context
	engine    *engine // generation models
	template  chatTemplate
	embedding bool
	rerank    bool
	nEmbd     int
	tok       *tokenizer
	maxInput  int // embedding and rerank models: the most tokens one input (query-document pair) may have
	rerankFmt *rerankFormat
	nClsOut   int // rerank models: the classification head's outputs per sequence

	embedMu sync.Mutex // one embedding or rerank batch at a time
}

func newBackend(log *slog.Logger) *backend { return &backend{log: log} }

func (b *backend) Info(context.Context) (sdk.Info, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return sdk.Info{
		Name:    "llamacpp",
		Version: version,
		Capabilities: []sdk.Capability{sdk.CapabilityChat, sdk.CapabilityCompletion, sdk.CapabilityEmbedding, sdk.CapabilityTokenize, sdk.CapabilityRerank,
			sdk.CapabilityStructuredOutput, sdk.CapabilityTools},
		MaxParallel: b.opts.Parallel,
	}, nil
}

var (
	libOnce sync.Once
	libErr  error
	libDir  string
)

// loadLibrary loads llama.cpp's shared libraries once per process.
func loadLibrary(dir string) error {
	libOnce.Do(func() {
		libDir = findLibDir(dir)
		if libDir == "" {
			libErr = errors.New("llama.cpp libraries not found: run `task setup` (it installs them into .data/lib), or set the lib_path option or RAGWAY_LLAMA_LIB to the directory holding libllama.so")
			return
		}
		if err := llama.Load(libDir); err != nil {
			libErr = fmt.Errorf("loading llama.cpp libraries from %s: %w (run `task setup` to reinstall them)", libDir, err)
			return
		}
		llama.Init()
	})
	if libErr == nil && dir != "" && findLibDir(dir) != libDir {
		return sdk.InvalidRequestf("option lib_path: this process already loaded llama.cpp from %s", libDir)
	}
	return libErr
}

// findLibDir returns the first candidate directory holding libllama.so:
// the given one (option or RAGWAY_LLAMA_LIB), YZMA_LIB, then .data/lib next
// to the plugin binary's directory (a repository checkout's bin/).
func findLibDir(dir string) string {
	candidates := []string{dir, os.Getenv("YZMA_LIB")}
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		candidates = append(candidates, filepath.Join(d, "..", ".data", "lib"), filepath.Join(d, "lib"))
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(c, "libllama.so")); err == nil {
			abs, _ := filepath.Abs(c)
			return abs
		}
		if c == dir {
			return "" // an explicit directory without the libraries is an error, not a fallback
		}
	}
	return ""
}

func (b *backend) Load(ctx context.Context, req sdk.LoadRequest) (sdk.ModelInfo, error) {
	o, err := parseOptions(req.Options)
	if err != nil {
		return sdk.ModelInfo{}, err
	}
	switch {
	case req.Embedding && req.Rerank:
		return sdk.ModelInfo{}, sdk.InvalidRequestf("a model is loaded for embeddings or for reranking, not both")
	case req.Rerank && o.Pooling != "" && o.Pooling != "rank":
		return sdk.ModelInfo{}, sdk.InvalidRequestf(`option pooling: a rerank model pools by rank; leave it unset or set "rank", not %q`, o.Pooling)
	case !req.Rerank && o.Pooling == "rank":
		return sdk.ModelInfo{}, sdk.InvalidRequestf(`option pooling: "rank" is for rerank models (rerank: true)`)
	case !req.Embedding && !req.Rerank && o.Pooling != "":
		return sdk.ModelInfo{}, sdk.InvalidRequestf("option pooling: only for embedding models (embedding: true)")
	}
	st, err := os.Stat(o.ModelPath)
	if err != nil {
		return sdk.ModelInfo{}, sdk.InvalidRequestf("option model_path: %v", err)
	}
	if st.IsDir() {
		return sdk.ModelInfo{}, sdk.InvalidRequestf("option model_path: %s is a directory, want a GGUF file", o.ModelPath)
	}
	if req.Rerank {
		if err := checkRerankModel(o.ModelPath); err != nil {
			return sdk.ModelInfo{}, err
		}
	}
	if err := loadLibrary(o.LibPath); err != nil {
		return sdk.ModelInfo{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.model != 0 {
		return sdk.ModelInfo{}, sdk.InvalidRequestf("a model is already loaded in this process")
	}
	if o.Threads == 0 {
		o.Threads = freeCores()
	}
	if o.ThreadsBatch == 0 {
		o.ThreadsBatch = o.Threads
	}

	mp := llama.ModelDefaultParams()
	mp.NGpuLayers = int32(o.GPULayers)
	model, err := llama.ModelLoadFromFile(o.ModelPath, mp)
	if err != nil || model == 0 {
		return sdk.ModelInfo{}, fmt.Errorf("model_path %s: llama.cpp could not load it (not a GGUF file, corrupt, or an unsupported architecture): %v", o.ModelPath, err)
	}
	ctxLen := o.ContextLength
	if ctxLen == 0 {
		ctxLen = min(int(llama.ModelNCtxTrain(model)), defaultContextLength)
	}
	cp := llama.ContextDefaultParams()
	cp.NCtx = uint32(ctxLen * o.Parallel)
	cp.NBatch = uint32(o.BatchSize)
	cp.NUbatch = uint32(o.BatchSize)
	cp.NSeqMax = uint32(o.Parallel)
	cp.NThreads = int32(o.Threads)
	cp.NThreadsBatch = int32(o.ThreadsBatch)
	if req.Embedding {
		cp.Embeddings = 1
		cp.PoolingType = map[string]llama.PoolingType{"": llama.PoolingTypeUnspecified, "mean": llama.PoolingTypeMean, "cls": llama.PoolingTypeCLS, "last": llama.PoolingTypeLast}[o.Pooling]
	}
	if req.Rerank {
		cp.Embeddings = 1
		cp.PoolingType = llama.PoolingTypeRank
	}
	lctx, err := llama.InitFromModel(model, cp)
	if err == nil && lctx != 0 && req.Embedding && o.Pooling == "" && llama.GetPoolingType(lctx) == llama.PoolingTypeNone {
		// The GGUF names no pooling (usual for generative models): pool by
		// mean, so each input gets one vector.
		_ = llama.Free(lctx)
		cp.PoolingType = llama.PoolingTypeMean
		lctx, err = llama.InitFromModel(model, cp)
	}
	if err != nil || lctx == 0 {
		_ = llama.ModelFree(model)
		return sdk.ModelInfo{}, fmt.Errorf("creating a llama.cpp context (%d tokens × %d sequences): %v", ctxLen, o.Parallel, err)
	}
	var rerankFmt *rerankFormat
	nClsOut := 0
	if req.Rerank {
		nClsOut = int(llama.ModelNClsOut(model))
		switch {
		case llama.GetPoolingType(lctx) != llama.PoolingTypeRank:
			err = errors.New("llama.cpp did not take rank pooling for it")
		case nClsOut < 1:
			err = errors.New("its classification head has no outputs")
		default:
			rerankFmt, err = newRerankFormat(model)
		}
		if err != nil {
			_ = llama.Free(lctx)
			_ = llama.ModelFree(model)
			return sdk.ModelInfo{}, fmt.Errorf("%w: model_path %s cannot rerank: %v", sdk.ErrUnsupported, o.ModelPath, err)
		}
	}
	tmpl, own, fallback, err := newChatTemplate(model, o.ChatTemplate)
	if err == nil && !req.Embedding && !req.Rerank {
		err = tmpl.check()
		if err != nil && own && tmpl.jinja != nil {
			// The model's own template fails here: llama.cpp's match for it instead.
			fallback = err.Error()
			tmpl.jinja, tmpl.name = nil, llama.ModelChatTemplate(model, "")
			tmpl.tools, tmpl.genericTools = genericSyntax, true // llama.cpp's renders no tools
			err = tmpl.check()
		}
	}
	if fallback != "" && err == nil && !req.Embedding && !req.Rerank {
		b.log.Warn("the model's chat template is rendered by llama.cpp's built-in match for it, not as Jinja", "model", req.Model, "reason", fallback)
	}
	if !req.Embedding && !req.Rerank {
		if err != nil {
			_ = llama.Free(lctx)
			_ = llama.ModelFree(model)
			return sdk.ModelInfo{}, sdk.InvalidRequestf("option chat_template: %v", err)
		}
		b.engine = newEngine(model, lctx, o.Parallel, o.BatchSize)
	}
	// Loaded: only now does the backend take the model.
	b.opts, b.model, b.lctx, b.embedding, b.template = o, model, lctx, req.Embedding, tmpl
	b.rerank, b.rerankFmt, b.nClsOut = req.Rerank, rerankFmt, nClsOut
	b.nEmbd = int(llama.ModelNEmbd(model))
	b.tok = newTokenizer(llama.ModelGetVocab(model))
	if req.Embedding || req.Rerank {
		// One input (query-document pair) is one sequence of one decode call.
		b.maxInput = min(int(llama.NCtxSeq(lctx)), o.BatchSize)
	}
	b.log.Info("model loaded", "model", req.Model, "path", o.ModelPath, "context", ctxLen, "parallel", o.Parallel,
		"threads", o.Threads, "embedding", req.Embedding, "rerank", req.Rerank, "libs", libDir)
	info := sdk.ModelInfo{ContextLength: int(llama.NCtxSeq(lctx)), HasChatTemplate: own}
	switch {
	case req.Embedding:
		info.EmbeddingSize, info.MaxInputTokens = b.nEmbd, b.maxInput
	case req.Rerank:
		info.MaxInputTokens = b.maxInput // of one query-document pair, as Rerank puts it together
	}
	return info, nil
}

// loaded returns the loaded state or ErrModelNotLoaded.
func (b *backend) loaded() (*backend, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.model == 0 {
		return nil, sdk.ErrModelNotLoaded
	}
	return b, nil
}

// grammarOf returns the grammar a request's output must follow ("" for free text):
// its response format's, checked to be one llama.cpp's grammar parser takes.
func (b *backend) grammarOf(req sdk.GenerateRequest) (string, error) {
	f := req.ResponseFormat
	if f == nil || f.Type == sdk.ResponseText {
		return "", nil
	}
	var grammar string
	switch f.Type {
	case sdk.ResponseJSONObject:
		grammar = gbnf.JSONObject
	case sdk.ResponseJSONSchema:
		var err error
		if grammar, err = gbnf.FromSchema(f.Schema); err != nil {
			return "", sdk.InvalidRequestf("response_format: %v", err)
		}
	default:
		return "", sdk.InvalidRequestf("response_format: type %q is not supported", f.Type)
	}
	if req.Sampling.IgnoreEOS || req.Sampling.MinTokens > 0 {
		// They hold the end back, which a grammar may need.
		return "", sdk.InvalidRequestf("response_format: not with ignore_eos or min_tokens")
	}
	return grammar, b.checkGrammar(grammar)
}

// checkGrammar reports whether llama.cpp's grammar parser takes grammar.
func (b *backend) checkGrammar(grammar string) error {
	s := llama.SamplerInitGrammar(llama.ModelGetVocab(b.model), grammar, "root")
	if s == 0 {
		return sdk.InvalidRequestf("llama.cpp refused the grammar made of the request's schema")
	}
	llama.SamplerFree(s)
	return nil
}

// toolsOf returns the tools to describe to the model (none when it may call none)
// and whether it must call one; then *grammar becomes the grammar of the calls.
func (b *backend) toolsOf(req sdk.GenerateRequest, grammar *string) ([]sdk.Tool, bool, error) {
	choice := sdk.ToolChoice{Mode: sdk.ToolChoiceAuto}
	if req.ToolChoice != nil {
		choice = *req.ToolChoice
	}
	switch {
	case len(req.Tools) == 0 && (choice.Mode == sdk.ToolChoiceRequired || choice.Mode == sdk.ToolChoiceFunction):
		return nil, false, sdk.InvalidRequestf("tool_choice: %s needs tools", choice.Mode)
	case len(req.Tools) == 0 || choice.Mode == sdk.ToolChoiceNone:
		return nil, false, nil
	case len(req.Messages) == 0:
		return nil, false, sdk.InvalidRequestf("tools go with messages, not a prompt")
	case choice.Mode == sdk.ToolChoiceAuto:
		return req.Tools, false, nil
	case *grammar != "":
		return nil, false, sdk.InvalidRequestf("a required tool call and a response format cannot go together")
	case req.Sampling.IgnoreEOS || req.Sampling.MinTokens > 0:
		return nil, false, sdk.InvalidRequestf("tool_choice: a required tool call cannot go with ignore_eos or min_tokens")
	}
	// A named function is called once; required calls may be several unless
	// parallel_tool_calls is false.
	parallel := parallelCalls(req) && choice.Mode == sdk.ToolChoiceRequired
	g, err := toolGrammar(b.template.tools, req.Tools, &choice, parallel)
	if err != nil {
		return nil, false, sdk.InvalidRequestf("%v", err)
	}
	if err := b.checkGrammar(g); err != nil {
		return nil, false, err
	}
	*grammar = g
	return req.Tools, true, nil
}

// parallelCalls reports whether an answer to req may call several tools (OpenAI's
// parallel_tool_calls, true when not set).
func parallelCalls(req sdk.GenerateRequest) bool {
	return req.ParallelToolCalls == nil || *req.ParallelToolCalls
}

// lazyCallsOf is the lazy grammar of an answer that may call tools (nil when the
// tools' schemas make no grammar llama.cpp takes: such calls are checked after the
// answer).
func (b *backend) lazyCallsOf(tools []sdk.Tool, parallel bool) *lazyCalls {
	trigger := lazyTrigger(b.template.tools)
	if trigger == "" {
		return nil
	}
	g, err := newCallGrammar(b.template.tools, tools, &sdk.ToolChoice{Mode: sdk.ToolChoiceRequired}, parallel)
	if err != nil || b.checkGrammar(g.after("")) != nil {
		return nil
	}
	return &lazyCalls{trigger: trigger, grammar: g}
}

func (b *backend) Generate(ctx context.Context, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
	if _, err := b.loaded(); err != nil {
		return err
	}
	if b.embedding {
		return sdk.InvalidRequestf("this model is loaded for embeddings")
	}
	if b.rerank {
		return sdk.InvalidRequestf("this model is loaded for reranking")
	}
	grammar, err := b.grammarOf(req)
	if err != nil {
		return err
	}
	tools, constrained, err := b.toolsOf(req, &grammar)
	if err != nil {
		return err
	}
	text, field := req.Prompt, "the prompt"
	for i, m := range req.Messages {
		for _, f := range []struct{ name, s string }{{"role", m.Role}, {"content", m.Content}} {
			if !b.tok.takesNUL() && strings.Contains(f.s, "\x00") {
				return refuseNUL(fmt.Sprintf("messages[%d].%s", i, f.name), f.s)
			}
		}
	}
	if len(req.Messages) > 0 {
		if text, err = b.template.apply(req.Messages, tools...); err != nil {
			return sdk.InvalidRequestf("%v", err)
		}
		field = "the messages"
	}
	if text == "" {
		return sdk.InvalidRequestf("empty prompt")
	}
	tokens, err := b.tok.tokenize(field, text, true)
	if err != nil {
		return err
	}
	if len(tokens) == 0 {
		return sdk.InvalidRequestf("the prompt tokenizes to nothing")
	}
	if len(tokens) >= b.engine.nCtxSeq {
		return sdk.InvalidRequestf("the prompt is %d tokens; the context holds %d per sequence (context_length)", len(tokens), b.engine.nCtxSeq)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &genRequest{ctx: ctx, tokens: tokens, sampling: req.Sampling, grammar: grammar, special: grammar != "" || len(tools) > 0,
		events: make(chan sdk.Event, 64)}
	if len(tools) > 0 && !constrained && grammar == "" && !req.Sampling.IgnoreEOS && req.Sampling.MinTokens == 0 &&
		len(req.Sampling.Stop) == 0 && len(req.Sampling.StopTokenIDs) == 0 {
		// (A stop string within the calls' text would cut them under the grammar.)
		r.lazy = b.lazyCallsOf(tools, parallelCalls(req))
	}
	if err := b.engine.generate(r); err != nil {
		return err
	}
	if len(tools) > 0 {
		out := &toolOutput{syntax: b.template.tools, constrained: constrained, emit: emit, engaged: r.engaged.Load,
			parallel: parallelCalls(req)}
		if !constrained {
			out.valid = argumentsValidator(tools) // (a constrained answer's grammar holds its calls)
		}
		for _, t := range tools {
			out.names = append(out.names, t.Name)
		}
		emit = out.event
	}
	var emitErr error
	for ev := range r.events {
		if emitErr != nil {
			continue // draining after the caller failed
		}
		if emitErr = emit(ev); emitErr != nil {
			cancel()
		}
	}
	if emitErr != nil {
		return emitErr
	}
	return r.err
}

func (b *backend) Embed(ctx context.Context, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	if _, err := b.loaded(); err != nil {
		return sdk.EmbedResponse{}, err
	}
	if b.rerank {
		return sdk.EmbedResponse{}, sdk.InvalidRequestf("this model is loaded for reranking, not embeddings")
	}
	if !b.embedding {
		return sdk.EmbedResponse{}, sdk.InvalidRequestf("this model is not loaded for embeddings (set embedding: true)")
	}
	// Tokenizing needs no lock (llama.cpp's vocabulary is read-only), so a
	// long input does not hold up other embeddings while it is counted.
	toks := make([][]llama.Token, len(req.Input))
	resp := sdk.EmbedResponse{Embeddings: make([][]float32, len(req.Input))}
	for i, in := range req.Input {
		field := fmt.Sprintf("input[%d]", i)
		t, err := b.tok.tokenize(field, in, false)
		switch {
		case err != nil:
			return sdk.EmbedResponse{}, err
		case len(t) == 0:
			return sdk.EmbedResponse{}, sdk.InvalidRequestf("%s tokenizes to nothing", field)
		case len(t) > b.maxInput && req.Truncate:
			t = b.tok.truncate(t, b.maxInput)
		case len(t) > b.maxInput:
			return sdk.EmbedResponse{}, sdk.InvalidRequestf("%s is %d tokens; at most %d fit", field, len(t), b.maxInput)
		}
		toks[i] = t
		resp.PromptTokens += len(t)
	}
	err := b.pooled(ctx, "embeddings", toks, b.nEmbd, func(i int, v []float32) error {
		resp.Embeddings[i] = normalize(v)
		return nil
	})
	if err != nil {
		return sdk.EmbedResponse{}, err
	}
	return resp, nil
}

// pooled decodes each token list as a sequence of its own, packing as many
// into one decode call as the context has sequences and the batch has room
// for (every list fits in the batch), and calls got with each list's index
// and its pooled output, n floats (valid only during the call). what names
// the work in errors.
func (b *backend) pooled(ctx context.Context, what string, toks [][]llama.Token, n int, got func(i int, v []float32) error) error {
	b.embedMu.Lock()
	defer b.embedMu.Unlock()
	batch := llama.BatchInit(int32(b.opts.BatchSize), 0, 1)
	defer llama.BatchFree(batch)
	mem, _ := llama.GetMemory(b.lctx)
	for start := 0; start < len(toks); {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Pack inputs into one batch: one sequence each.
		_ = batch.Clear()
		end := start
		for end < len(toks) && end-start < b.opts.Parallel && int(batch.NTokens)+len(toks[end]) <= b.opts.BatchSize {
			for pos, t := range toks[end] {
				_ = batch.Add(t, llama.Pos(pos), []llama.SeqId{llama.SeqId(end - start)}, true)
			}
			end++
		}
		_ = llama.MemoryClear(mem, true)
		if ret, err := llama.Decode(b.lctx, batch); err != nil || ret != 0 {
			return fmt.Errorf("llama decode for %s failed (status %d): %v", what, ret, err)
		}
		for i := start; i < end; i++ {
			v, err := llama.GetEmbeddingsSeq(b.lctx, llama.SeqId(i-start), int32(n))
			if err != nil || v == nil {
				return fmt.Errorf("no pooled output for input %d (does the model support pooling?): %v", i, err)
			}
			if err := got(i, v); err != nil {
				return err
			}
		}
		start = end
	}
	return nil
}

// Tokenize counts the tokens of each input as the loaded model takes it:
// as one input of Embed for an embedding model (compare with
// ModelInfo.MaxInputTokens), as a raw prompt for a generation model, and as
// a text alone with the special tokens framing it for a rerank model (a
// query-document pair adds the rerank format's tokens to its two texts).
func (b *backend) Tokenize(ctx context.Context, req sdk.TokenizeRequest) (sdk.TokenizeResponse, error) {
	if _, err := b.loaded(); err != nil {
		return sdk.TokenizeResponse{}, err
	}
	out := sdk.TokenizeResponse{Counts: make([]int, len(req.Input))}
	for i, in := range req.Input {
		if err := ctx.Err(); err != nil {
			return sdk.TokenizeResponse{}, err
		}
		t, err := b.tok.tokenize(fmt.Sprintf("input[%d]", i), in, !b.embedding && !b.rerank)
		if err != nil {
			return sdk.TokenizeResponse{}, err
		}
		out.Counts[i] = len(t)
	}
	return out, nil
}

// normalize returns a unit-length copy of v.
func normalize(v []float32) []float32 {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	norm := math.Sqrt(sum)
	if norm == 0 {
		return out
	}
	for i, x := range v {
		out[i] = float32(float64(x) / norm)
	}
	return out
}

func (b *backend) Health(context.Context) (sdk.Health, error) {
	b.mu.Lock()
	e := b.engine
	slots := b.opts.Parallel
	b.mu.Unlock()
	if e == nil {
		return sdk.Health{OK: true, Slots: slots}, nil
	}
	st := e.health()
	return sdk.Health{OK: true, Running: st.running, Waiting: st.waiting, Slots: st.slots}, nil
}
