package main

// Structured output's cost: decode speed of the bench model through the gateway with
// and without a response_format grammar (same prompts, greedy), and the size of the
// grammars.

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"slices"
)

var grammarReps = flag.Int("grammar-reps", 4, "timed requests per response format (distinct prompts, formats taking turns)")

// grammarFormats are the response formats compared: none, a long string (the
// grammar allows most tokens: its cost per token shows), an object of many
// constrained fields, and a long enum (its values share beginnings).
var grammarFormats = []struct {
	name   string
	format any
}{
	{"none (free text)", nil},
	{"json_schema: string, 300-400 characters", map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "text",
		"schema": map[string]any{"type": "string", "minLength": 300, "maxLength": 400}}}},
	{"json_schema: object, 24 fields", map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "record", "schema": recordSchema()}}},
	{"json_schema: array of an enum of 2,000 words", map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "words", "schema": map[string]any{
		"type": "array", "items": map[string]any{"enum": enumWords(2000)}, "minItems": 40, "maxItems": 60}}}},
}

// enumWords are n distinct words sharing beginnings, as a vocabulary's do.
func enumWords(n int) []any {
	out := make([]any, n)
	for i := range n {
		out[i] = fmt.Sprintf("term-%c%c-%d", 'a'+i%26, 'a'+i/26%26, i)
	}
	return out
}

func recordSchema() map[string]any {
	props := map[string]any{}
	var required []any
	for i := range 24 {
		name := fmt.Sprintf("field%02d", i)
		switch i % 4 {
		case 0:
			props[name] = map[string]any{"type": "string", "maxLength": 24}
		case 1:
			props[name] = map[string]any{"type": "integer", "minimum": -1000, "maximum": 1000}
		case 2:
			props[name] = map[string]any{"enum": []any{"red", "green", "blue", "black"}}
		case 3:
			props[name] = map[string]any{"type": "array", "items": map[string]any{"type": "boolean"}, "maxItems": 4}
		}
		required = append(required, name)
	}
	return map[string]any{"type": "object", "properties": props, "required": required, "additionalProperties": false}
}

func runGrammar(binDir string) error {
	model, err := filepath.Abs(*llamaModel)
	if err != nil {
		return err
	}
	gw, err := startLlamaGateway(binDir, model)
	if err != nil {
		return err
	}
	defer gw.stop()
	n := *llamaTokens
	rates := make([][]float64, len(grammarFormats))
	tokens := make([][]int, len(grammarFormats))
	if _, err := gw.chatFormat(context.Background(), benchPrompt(0, 32), n, nil); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	for rep := range max(*grammarReps, 1) {
		for i, f := range grammarFormats {
			s, err := gw.chatFormat(context.Background(), benchPrompt(1+rep*len(grammarFormats)+i, 32), n, f.format)
			if err != nil {
				return fmt.Errorf("%s: %w", f.name, err)
			}
			if s.usage.CompletionTokens < 16 || len(s.chunks) < 2 {
				continue // too short to time
			}
			rates[i] = append(rates[i], s.run().decode())
			tokens[i] = append(tokens[i], s.usage.CompletionTokens)
		}
	}
	fmt.Printf("structured output: decode speed of %s through the gateway (chat completions, greedy, 1 stream, up to %d tokens, median of %d), %d thread(s)\n",
		filepath.Base(model), n, *grammarReps, *llamaThreads)
	fmt.Printf("%-44s %12s %10s %8s\n", "response_format", "decode tok/s", "tokens", "ratio")
	var base float64
	for i, f := range grammarFormats {
		if len(rates[i]) == 0 {
			fmt.Printf("%-44s %12s\n", f.name, "(too short)")
			continue
		}
		slices.Sort(rates[i])
		med := rates[i][len(rates[i])/2]
		if i == 0 {
			base = med
		}
		fmt.Printf("%-44s %12.1f %10v %8.2f\n", f.name, med, tokens[i], med/base)
	}
	fmt.Printf("ratio: vs free text; a grammar is applied to the whole vocabulary at every token\n\n")
	return nil
}

// chatFormat streams one greedy chat completion with response_format (nil: none).
func (g *gatewayClient) chatFormat(ctx context.Context, prompt string, n int, format any) (*stream, error) {
	req := map[string]any{
		"model": "bench", "messages": []any{map[string]any{"role": "user", "content": prompt}}, "max_tokens": n, "temperature": 0,
		"stream": true, "stream_options": map[string]any{"include_usage": true},
	}
	if format != nil {
		req["response_format"] = format
	}
	return g.streamed(ctx, "/v1/chat/completions", req)
}
