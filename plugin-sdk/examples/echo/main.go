// Command ragway-echo is a complete, deterministic ragway backend plugin: it
// streams the last user message (or the raw prompt) back word by word.
//
// It is the template to copy when writing a backend, and the backend the
// gateway's own tests and benchmarks use. Options (the model's `options:`):
//
//	delay_ms       pause before each token (default 0)
//	fail_after     exit the process after emitting N tokens (crash testing)
//	load_delay_ms  pause inside Load (slow model loads)
//	fail_load      true: Load returns an error; "exit": the process exits in Load
//	parallel       sequence slots; more requests wait inside the plugin (default 64)
//
// A chat request without a user message is ErrInvalidRequest. echo's tokens
// are its words (each with the whitespace before it): Tokenize counts them
// as a raw prompt's PromptTokens does. Any text is echoed as it is, NUL
// bytes included. echo has no embedding mode.
//
// Loaded as a rerank model (rerank: true), echo scores each document by how many
// distinct words of the query (lower-cased, punctuation at their ends trimmed)
// it contains as words: a deterministic stand-in for a cross-encoder, and the
// example of sdk.Reranker. A rerank model does not generate, and a chat model
// does not rerank.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
	"unicode"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func main() {
	sdk.Serve(&echo{log: sdk.Logger()})
}

type options struct {
	delay     time.Duration
	failAfter int // <0: never
	loadDelay time.Duration
	failLoad  string // "", "error", "exit"
	parallel  int
}

// echo implements sdk.Backend, sdk.Tokenizer and sdk.Reranker. Its state is set
// once by Load.
type echo struct {
	log *slog.Logger

	mu      sync.Mutex
	opts    *options
	rerank  bool // loaded as a rerank model
	slots   chan struct{}
	waiting int
	emitted int // tokens emitted by this process, for fail_after
}

func (e *echo) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Name:         "echo",
		Version:      "1.0.0",
		Capabilities: []sdk.Capability{sdk.CapabilityChat, sdk.CapabilityCompletion, sdk.CapabilityTokenize, sdk.CapabilityRerank},
		MaxParallel:  e.parallel(),
	}, nil
}

func (e *echo) parallel() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.opts == nil {
		return 0
	}
	return e.opts.parallel
}

func parseOptions(m map[string]any) (*options, error) {
	o := &options{failAfter: -1, parallel: 64}
	num := func(k string, v any) (int, error) {
		f, ok := v.(float64)
		if !ok || f < 0 || f != float64(int(f)) {
			return 0, sdk.InvalidRequestf("option %s: want a non-negative integer, got %v", k, v)
		}
		return int(f), nil
	}
	for k, v := range m {
		var n int
		var err error
		switch k {
		case "delay_ms":
			n, err = num(k, v)
			o.delay = time.Duration(n) * time.Millisecond
		case "fail_after":
			o.failAfter, err = num(k, v)
		case "load_delay_ms":
			n, err = num(k, v)
			o.loadDelay = time.Duration(n) * time.Millisecond
		case "parallel":
			o.parallel, err = num(k, v)
			if err == nil && o.parallel < 1 {
				err = sdk.InvalidRequestf("option parallel: must be >= 1")
			}
		case "fail_load":
			switch v {
			case true:
				o.failLoad = "error"
			case false:
			case "exit", "error":
				o.failLoad = v.(string)
			default:
				err = sdk.InvalidRequestf(`option fail_load: want true, false or "exit", got %v`, v)
			}
		default:
			err = sdk.InvalidRequestf("unknown option %q", k)
		}
		if err != nil {
			return nil, err
		}
	}
	return o, nil
}

func (e *echo) Load(ctx context.Context, req sdk.LoadRequest) (sdk.ModelInfo, error) {
	o, err := parseOptions(req.Options)
	if err != nil {
		return sdk.ModelInfo{}, err
	}
	if req.Embedding {
		return sdk.ModelInfo{}, sdk.InvalidRequestf("echo cannot serve embedding models")
	}
	select {
	case <-time.After(o.loadDelay):
	case <-ctx.Done():
		return sdk.ModelInfo{}, ctx.Err()
	}
	switch o.failLoad {
	case "error":
		return sdk.ModelInfo{}, fmt.Errorf("echo: fail_load is set")
	case "exit":
		e.log.Error("fail_load is exit, exiting during Load")
		os.Exit(2)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.opts = o
	e.rerank = req.Rerank
	e.slots = make(chan struct{}, o.parallel)
	e.log.Info("model loaded", "model", req.Model, "parallel", o.parallel)
	return sdk.ModelInfo{ContextLength: 1 << 16, HasChatTemplate: true}, nil
}

// words splits s into tokens that concatenate back to s: each word keeps the
// whitespace before it.
func words(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if (s[i] == ' ' || s[i] == '\n') && s[i-1] != ' ' && s[i-1] != '\n' {
			out = append(out, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func (e *echo) Generate(ctx context.Context, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
	e.mu.Lock()
	o, slots, rerank := e.opts, e.slots, e.rerank
	e.mu.Unlock()
	if o == nil {
		return sdk.ErrModelNotLoaded
	}
	if rerank {
		return sdk.InvalidRequestf("this model is loaded to rerank: it does not generate")
	}
	if len(req.Sampling.StopTokenIDs) > 0 || req.Sampling.MinTokens > 0 {
		// echo has no token ids and cannot make its answer longer.
		return fmt.Errorf("%w: stop_token_ids and min_tokens", sdk.ErrUnsupported)
	}
	text, promptTokens, err := source(req)
	if err != nil {
		return err
	}

	// Take a sequence slot, or wait for one.
	e.setWaiting(+1)
	select {
	case slots <- struct{}{}:
		e.setWaiting(-1)
	case <-ctx.Done():
		e.setWaiting(-1)
		return ctx.Err()
	}
	defer func() { <-slots }()

	usage := &sdk.Usage{PromptTokens: promptTokens}
	stop := sdk.NewStopBuffer(req.Sampling.Stop)
	var timer *time.Timer
	if o.delay > 0 {
		timer = time.NewTimer(o.delay)
		defer timer.Stop()
	}
	held := 0 // tokens whose text the stop buffer still holds back
	for _, tok := range words(text) {
		if limit := req.Sampling.MaxTokens; limit > 0 && usage.CompletionTokens >= limit {
			return emit(sdk.Event{Text: stop.Flush(), Tokens: held, FinishReason: sdk.FinishLength, Usage: usage})
		}
		if timer != nil {
			timer.Reset(o.delay)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return ctx.Err()
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		e.crashIfDue(o)
		usage.CompletionTokens++
		held++
		out, stopped := stop.Push(tok)
		if stopped {
			return emit(sdk.Event{Text: out, Tokens: held, FinishReason: sdk.FinishStop, Usage: usage})
		}
		if out != "" {
			ev := sdk.Event{Text: out, Tokens: held}
			if usage.CompletionTokens == held {
				// The first text: the prompt's usage with it (API 1.3).
				ev.Usage = &sdk.Usage{PromptTokens: promptTokens}
			}
			if err := emit(ev); err != nil {
				return err
			}
			held = 0
		}
	}
	return emit(sdk.Event{Text: stop.Flush(), Tokens: held, FinishReason: sdk.FinishStop, Usage: usage})
}

// Tokenize counts the words of each input, echo's tokens. It needs no
// loaded model.
func (e *echo) Tokenize(_ context.Context, req sdk.TokenizeRequest) (sdk.TokenizeResponse, error) {
	out := sdk.TokenizeResponse{Counts: make([]int, len(req.Input))}
	for i, in := range req.Input {
		out.Counts[i] = len(words(in))
	}
	return out, nil
}

// Rerank scores each document by the distinct words of the query it contains.
func (e *echo) Rerank(_ context.Context, req sdk.RerankRequest) (sdk.RerankResponse, error) {
	e.mu.Lock()
	o, rerank := e.opts, e.rerank
	e.mu.Unlock()
	switch {
	case o == nil:
		return sdk.RerankResponse{}, sdk.ErrModelNotLoaded
	case !rerank:
		return sdk.RerankResponse{}, sdk.InvalidRequestf("this model is not loaded to rerank (set rerank: true)")
	}
	query := wordSet(req.Query)
	out := sdk.RerankResponse{Scores: make([]float32, len(req.Documents))}
	for i, d := range req.Documents {
		doc := wordSet(d)
		for w := range query {
			if doc[w] {
				out.Scores[i]++
			}
		}
		out.PromptTokens += len(words(req.Query)) + len(words(d))
	}
	return out, nil
}

// wordSet is the distinct words of s, lower-cased, punctuation at their ends
// trimmed.
func wordSet(s string) map[string]bool {
	set := map[string]bool{}
	for _, w := range strings.Fields(strings.ToLower(s)) {
		if w = strings.TrimFunc(w, unicode.IsPunct); w != "" {
			set[w] = true
		}
	}
	return set
}

// crashIfDue exits the process when fail_after tokens have been emitted.
func (e *echo) crashIfDue(o *options) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if o.failAfter >= 0 && e.emitted >= o.failAfter {
		e.log.Error("fail_after reached, exiting", "fail_after", o.failAfter)
		os.Exit(2)
	}
	e.emitted++
}

// source returns the text to echo and the prompt's token count.
func source(req sdk.GenerateRequest) (string, int, error) {
	if len(req.Messages) == 0 {
		return req.Prompt, len(words(req.Prompt)), nil
	}
	prompt := 0
	last := -1
	for i, m := range req.Messages {
		prompt += len(words(m.Content)) + 1 // +1: the role marker
		if m.Role == "user" {
			last = i
		}
	}
	if last < 0 {
		return "", 0, sdk.InvalidRequestf("echo needs a user message")
	}
	return strings.TrimSpace(req.Messages[last].Content), prompt, nil
}

func (e *echo) setWaiting(d int) {
	e.mu.Lock()
	e.waiting += d
	e.mu.Unlock()
}

func (e *echo) Health(context.Context) (sdk.Health, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.opts == nil {
		return sdk.Health{OK: true, Message: "no model loaded"}, nil
	}
	return sdk.Health{OK: true, Running: len(e.slots), Waiting: e.waiting, Slots: cap(e.slots)}, nil
}
