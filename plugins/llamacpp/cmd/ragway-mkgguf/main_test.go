package main

import (
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ragway/ragway/plugins/llamacpp/gguf"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    map[string]any // metadata the file must hold
		wantErr string
	}{
		{"demo preset", []string{"-preset", "demo"}, map[string]any{
			"general.name": "ragway-demo", "llama.embedding_length": uint32(64), "llama.block_count": uint32(2),
			"llama.attention.head_count": uint32(4), "llama.attention.head_count_kv": uint32(4),
			"llama.feed_forward_length": uint32(128), "llama.context_length": uint32(2048), "general.file_type": uint32(1),
		}, ""},
		{"overrides", []string{"-preset", "demo", "-n-embd", "128", "-n-layer", "3", "-n-head", "8", "-n-ff", "256",
			"-n-ctx", "512", "-type", "q8_0", "-seed", "9", "-name", "custom"}, map[string]any{
			"general.name": "custom", "llama.embedding_length": uint32(128), "llama.block_count": uint32(3),
			"llama.attention.head_count": uint32(8), "llama.attention.head_count_kv": uint32(8),
			"llama.feed_forward_length": uint32(256), "llama.context_length": uint32(512), "general.file_type": uint32(7),
		}, ""},
		{"grouped-query attention", []string{"-n-head", "8", "-n-head-kv", "2", "-type", "f32"}, map[string]any{
			"llama.attention.head_count": uint32(8), "llama.attention.head_count_kv": uint32(2), "general.file_type": uint32(0),
		}, ""},
		{"rerank preset", []string{"-preset", "rerank"}, map[string]any{
			"general.name": "ragway-rerank", "general.architecture": "qwen3", "qwen3.embedding_length": uint32(64),
			"qwen3.pooling_type": uint32(4), "general.file_type": uint32(1),
		}, ""},
		{"unknown preset", []string{"-preset", "huge"}, nil, `-preset "huge"`},
		{"unknown type", []string{"-type", "q4_k"}, nil, "-type: unknown tensor type"},
		{"invalid dimensions", []string{"-n-head", "5"}, nil, "not a multiple of head count 5"},
		{"q8_0 with odd ff", []string{"-type", "q8_0", "-n-ff", "100"}, nil, "multiple of 32"},
		{"stray argument", []string{"extra"}, nil, "unexpected arguments"},
		{"no -out", nil, nil, "-out is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "m.gguf")
			args := tt.args
			if tt.name != "no -out" {
				args = append([]string{"-out", out}, args...)
			}
			err := run(args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("run(%q) = %v, want an error containing %q", args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run(%q) = %v", args, err)
			}
			h, err := gguf.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			for k, want := range tt.want {
				if got, _ := h.Get(k); got != want {
					t.Errorf("%s = %#v, want %#v", k, got, want)
				}
			}
		})
	}
}
