// Command brokenplugin is a ragway backend plugin for testing sdktest: it
// echoes the last user message word by word like examples/echo, serves
// embeddings (at most 64 words an input, words as tokens) and tokenizes, and
// breaks one rule of the contract on request, so the tests can check that
// sdktest notices. Its one option is delay_ms, a pause before each token.
//
// The defect is named by the binary: run as brokenplugin-<defect> (a
// symlink) it breaks that rule; as brokenplugin it conforms. Defects: usage (CompletionTokens off by one), no_prompt_tokens,
// ignore_stop, ignore_max_tokens, random (greedy output varies),
// accept_any_option, generate_unloaded (works before Load), hold_slot
// (a cancelled generation keeps its slot), bad_api_version,
// no_capabilities, shared_state (concurrent generations corrupt each
// other), embed_zero, embed_dims, embed_random, embed_constant,
// nul_crash (the process dies on a NUL byte in any input),
// tokenize_miscount (every count is 0), ignore_truncate (Embed refuses a
// too-long input even with Truncate), no_input_limit (Embed takes a
// too-long input without Truncate).
package main

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func main() {
	name := filepath.Base(os.Args[0])
	sdk.Serve(&broken{defect: strings.TrimPrefix(name, "brokenplugin-")})
}

const slots = 4

type broken struct {
	defect string

	mu      sync.Mutex
	loaded  bool
	delay   time.Duration
	running int
	calls   int
}

func (b *broken) get() (loaded bool, delay time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.loaded, b.delay
}

func (b *broken) Info(context.Context) (sdk.Info, error) {
	info := sdk.Info{
		Name: "brokenplugin", Version: "0.0.1", MaxParallel: slots,
		Capabilities: []sdk.Capability{sdk.CapabilityChat, sdk.CapabilityCompletion, sdk.CapabilityEmbedding, sdk.CapabilityTokenize},
	}
	switch b.defect {
	case "bad_api_version":
		info.APIVersion = "0.1.0"
	case "no_capabilities":
		info.Capabilities = nil
	}
	return info, nil
}

func (b *broken) Load(_ context.Context, req sdk.LoadRequest) (sdk.ModelInfo, error) {
	var delay time.Duration
	for k, v := range req.Options {
		switch k {
		case "delay_ms":
			f, ok := v.(float64)
			if !ok || f < 0 {
				return sdk.ModelInfo{}, sdk.InvalidRequestf("option delay_ms: want a non-negative number, got %v", v)
			}
			delay = time.Duration(f) * time.Millisecond
		default:
			if b.defect != "accept_any_option" {
				return sdk.ModelInfo{}, sdk.InvalidRequestf("unknown option %q", k)
			}
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.loaded, b.delay = true, delay
	mi := sdk.ModelInfo{ContextLength: 4096, EmbeddingSize: 8, HasChatTemplate: true}
	if req.Embedding {
		mi.MaxInputTokens = maxInputWords
	}
	return mi, nil
}

// maxInputWords is the most words one input of Embed may have.
const maxInputWords = 64

// crashOnNUL is the nul_crash defect: the process dies the way a native
// crash would kill it.
func (b *broken) crashOnNUL(texts ...string) {
	if b.defect != "nul_crash" {
		return
	}
	for _, t := range texts {
		if strings.Contains(t, "\x00") {
			fmt.Fprintln(os.Stderr, "brokenplugin: SIGSEGV on NUL")
			os.Exit(139)
		}
	}
}

// words splits s into tokens that keep the whitespace before them.
func words(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' && s[i-1] != ' ' {
			out = append(out, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func (b *broken) Generate(ctx context.Context, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
	defect := b.defect
	loaded, delay := b.get()
	if !loaded && defect != "generate_unloaded" {
		return sdk.ErrModelNotLoaded
	}
	b.mu.Lock()
	if b.running >= slots {
		b.mu.Unlock()
		return sdk.ErrOverloaded
	}
	b.running++
	concurrent := b.running > 1
	b.calls++
	call := b.calls
	b.mu.Unlock()
	release := func() {
		b.mu.Lock()
		b.running--
		b.mu.Unlock()
	}

	b.crashOnNUL(req.Prompt)
	for _, m := range req.Messages {
		b.crashOnNUL(m.Content)
	}
	text := strings.TrimSpace(lastUser(req))
	if req.Prompt != "" {
		text = req.Prompt
	}
	switch {
	case defect == "random":
		text += fmt.Sprintf(" (call %d)", call)
	case defect == "shared_state" && concurrent:
		text += " (not alone)"
	}
	stops := req.Sampling.Stop
	if defect == "ignore_stop" {
		stops = nil
	}
	max := req.Sampling.MaxTokens
	if defect == "ignore_max_tokens" {
		max = 0
	}
	usage := &sdk.Usage{PromptTokens: len(words(text)) + 1}
	if defect == "no_prompt_tokens" {
		usage.PromptTokens = 0
	}
	final := func(text string, tokens int, reason sdk.FinishReason) error {
		if defect == "usage" {
			usage.CompletionTokens++
		}
		return emit(sdk.Event{Text: text, Tokens: tokens, FinishReason: reason, Usage: usage})
	}
	stop := sdk.NewStopBuffer(stops)
	held := 0
	for _, tok := range words(text) {
		if max > 0 && usage.CompletionTokens >= max {
			release()
			return final(stop.Flush(), held, sdk.FinishLength)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			if defect == "hold_slot" {
				time.AfterFunc(30*time.Second, release)
			} else {
				release()
			}
			return ctx.Err()
		}
		usage.CompletionTokens++
		held++
		out, stopped := stop.Push(tok)
		if stopped {
			release()
			return final(out, held, sdk.FinishStop)
		}
		if out != "" {
			if err := emit(sdk.Event{Text: out, Tokens: held}); err != nil {
				release()
				return err
			}
			held = 0
		}
	}
	release()
	return final(stop.Flush(), held, sdk.FinishStop)
}

func lastUser(req sdk.GenerateRequest) string {
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			return req.Messages[i].Content
		}
	}
	return ""
}

func (b *broken) Embed(_ context.Context, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
	defect := b.defect
	if loaded, _ := b.get(); !loaded {
		return sdk.EmbedResponse{}, sdk.ErrModelNotLoaded
	}
	if len(req.Input) == 0 {
		return sdk.EmbedResponse{}, sdk.InvalidRequestf("no input")
	}
	b.crashOnNUL(req.Input...)
	out := sdk.EmbedResponse{}
	for i, in := range req.Input {
		words := strings.Fields(in)
		if len(words) > maxInputWords && defect != "no_input_limit" {
			if !req.Truncate || defect == "ignore_truncate" {
				return sdk.EmbedResponse{}, sdk.InvalidRequestf("input[%d] is %d tokens; at most %d fit", i, len(words), maxInputWords)
			}
			words = words[:maxInputWords]
		}
		v := make([]float32, 8)
		for _, w := range words {
			h := fnv.New32a()
			h.Write([]byte(w))
			s := h.Sum32()
			v[s%8] += float32(s%1000) / 1000
		}
		switch defect {
		case "embed_zero":
			clear(v)
		case "embed_dims":
			v = v[:8-i%2]
		case "embed_random":
			v[0] += rand.Float32()
		case "embed_constant":
			v = []float32{1, 0, 0, 0, 0, 0, 0, 0}
		}
		out.Embeddings = append(out.Embeddings, v)
		out.PromptTokens += len(words)
	}
	return out, nil
}

func (b *broken) Tokenize(_ context.Context, req sdk.TokenizeRequest) (sdk.TokenizeResponse, error) {
	if loaded, _ := b.get(); !loaded {
		return sdk.TokenizeResponse{}, sdk.ErrModelNotLoaded
	}
	b.crashOnNUL(req.Input...)
	out := sdk.TokenizeResponse{Counts: make([]int, len(req.Input))}
	for i, in := range req.Input {
		if b.defect != "tokenize_miscount" {
			out.Counts[i] = len(strings.Fields(in))
		}
	}
	return out, nil
}

func (b *broken) Health(context.Context) (sdk.Health, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return sdk.Health{OK: true, Running: b.running, Slots: slots}, nil
}
