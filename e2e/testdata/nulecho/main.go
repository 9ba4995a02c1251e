// Command nulecho is a test backend plugin whose answers hold NUL characters while
// its requests need not: it streams the last user message back word by word, each
// two-character escape `\0` in it turned into a real NUL (U+0000). With it a test asks
// a stored chat a question that can be stored and gets an answer with NUL in it, as a
// real model may emit.
package main

import (
	"context"
	"strings"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func main() { sdk.Serve(nulecho{}) }

type nulecho struct{}

func (nulecho) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Name: "nulecho", Version: "1.0.0", Capabilities: []sdk.Capability{sdk.CapabilityChat, sdk.CapabilityCompletion}, MaxParallel: 8}, nil
}

func (nulecho) Load(context.Context, sdk.LoadRequest) (sdk.ModelInfo, error) {
	return sdk.ModelInfo{ContextLength: 1 << 14, HasChatTemplate: true}, nil
}

func (nulecho) Health(context.Context) (sdk.Health, error) {
	return sdk.Health{OK: true, Slots: 8}, nil
}

func (nulecho) Generate(ctx context.Context, req sdk.GenerateRequest, emit func(sdk.Event) error) error {
	text := req.Prompt
	for _, m := range req.Messages {
		if m.Role == "user" {
			text = m.Content
		}
	}
	text = strings.ReplaceAll(text, `\0`, "\x00")
	n := 0
	for _, w := range strings.SplitAfter(text, " ") {
		if w == "" {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := emit(sdk.Event{Text: w, Tokens: 1}); err != nil {
			return err
		}
		n++
	}
	return emit(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 1, CompletionTokens: n}})
}
