package main

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ragway/ragway/plugin-sdk/gbnf"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// TestGrammarTextIsUTF8: under a grammar, what the model writes is UTF-8 that the
// grammar has read as such, never bytes the gateway must replace: llama.cpp's
// grammar lets a token of bytes that do not continue a pending character through
// without reading them, so a string of at most 12 characters could come out longer
// once its invalid bytes became U+FFFD; and a \u escape of a lone surrogate is no
// character either (the demo model, temperature 1.5, 200 seeds).
func TestGrammarTextIsUTF8(t *testing.T) {
	b := loadInProcess(t)
	grammar, err := gbnf.FromSchema([]byte(`{"type": "string", "maxLength": 12}`))
	if err != nil {
		t.Fatal(err)
	}
	for seed := range int64(200) {
		r := &genRequest{sampling: sdk.Sampling{Temperature: f64(1.5), Seed: i64(seed), MaxTokens: 60}, grammar: grammar}
		text, finish := generateInProcess(t, b, "Write a name in Chinese:", r)
		if finish != sdk.FinishStop {
			continue
		}
		var value string
		err := json.Unmarshal([]byte(text), &value)
		if err != nil || strings.ContainsRune(text, utf8.RuneError) || strings.ContainsRune(value, utf8.RuneError) || utf8.RuneCountInString(value) > 12 {
			t.Fatalf("seed %d: %q (%d characters, %v)", seed, text, utf8.RuneCountInString(value), err)
		}
	}
}
