package main

import (
	"strings"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestParseOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		in   map[string]any
		want string // substring of the error; "" = valid
	}{
		{"minimal", map[string]any{"model_path": "m.gguf"}, ""},
		{"all", map[string]any{"model_path": "m.gguf", "context_length": 512.0, "threads": 1.0, "threads_batch": 2.0, "parallel": 4.0,
			"batch_size": 256.0, "n_gpu_layers": 0.0, "pooling": "mean", "chat_template": "chatml", "lib_path": "/x"}, ""},
		{"missing model_path", map[string]any{}, "option model_path: required"},
		{"unknown option", map[string]any{"model_path": "m", "temperature": 1.0}, `option temperature: unknown option`},
		{"threads zero", map[string]any{"model_path": "m", "threads": 0.0}, "option threads: must be >= 1"},
		{"parallel not integer", map[string]any{"model_path": "m", "parallel": 1.5}, "option parallel: want an integer"},
		{"pooling bad", map[string]any{"model_path": "m", "pooling": "max"}, `option pooling: want "mean"`},
		{"pooling rank", map[string]any{"model_path": "m", "pooling": "rank"}, ""}, // checked against rerank by Load
		{"pooling none", map[string]any{"model_path": "m", "pooling": "none"}, `option pooling: want "mean"`},
		{"NUL in a path", map[string]any{"model_path": "m\x00.gguf"}, "option model_path: contains a NUL byte"},
		{"NUL in a template", map[string]any{"model_path": "m", "chat_template": "chatml\x00"}, "option chat_template: contains a NUL byte"},
		{"batch smaller than parallel", map[string]any{"model_path": "m", "parallel": 32.0, "batch_size": 16.0}, "option batch_size: must be >= parallel (32)"},
		{"model_path not a string", map[string]any{"model_path": 3.0}, "option model_path: want a string"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseOptions(c.in)
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !sdk.IsInvalidRequest(err)):
				t.Fatalf("err = %v, want ErrInvalidRequest containing %q", err, c.want)
			}
		})
	}
}

func TestSplitUTF8(t *testing.T) {
	for _, c := range []struct {
		name, in, text, rest string
	}{
		{"ascii", "abc", "abc", ""},
		{"complete multibyte", "海", "海", ""},
		{"incomplete tail kept", "a\xe6\xb5", "a", "\xe6\xb5"},
		{"invalid byte replaced", "a\xffb", "a\uFFFDb", ""},
		{"empty", "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			text, rest := splitUTF8([]byte(c.in))
			if text != c.text || string(rest) != c.rest {
				t.Fatalf("splitUTF8(%q) = %q, %q; want %q, %q", c.in, text, rest, c.text, c.rest)
			}
		})
	}
}

func TestResolveModel(t *testing.T) {
	for _, c := range []struct{ path, dir, want string }{
		{"demo", "/m", "/m/demo.gguf"},
		{"demo.gguf", "/m", "/m/demo.gguf"},
		{"./demo.gguf", "/m", "./demo.gguf"},
		{"/abs/x.gguf", "/m", "/abs/x.gguf"},
		{"sub/x.gguf", "/m", "sub/x.gguf"},
		{"demo", "", "demo"},
		{"..", "/m", ".."},
	} {
		if got := resolveModel(c.path, c.dir); got != c.want {
			t.Errorf("resolveModel(%q, %q) = %q, want %q", c.path, c.dir, got, c.want)
		}
	}
}
