package ingest

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestExtractText(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		format    Format
		data      string
		wantTitle string
		wantText  string
		wantErr   error
		errHas    string
	}{
		{name: "plain", file: "notes.txt", format: Text, data: "hello\nworld\n", wantTitle: "notes", wantText: "hello\nworld\n"},
		{name: "chinese", file: "dir/检索.txt", format: Text, data: "检索增强生成（RAG）把文档切成块。", wantTitle: "检索", wantText: "检索增强生成（RAG）把文档切成块。"},
		{name: "bom dropped", file: "a.txt", format: Text, data: "\xEF\xBB\xBFbonjour", wantTitle: "a", wantText: "bonjour"},
		{name: "plain text heading is not a title", file: "a.txt", format: Text, data: "# Not a title\n", wantTitle: "a", wantText: "# Not a title\n"},
		{name: "markdown title", file: "guide.md", format: Markdown, data: "intro\n\n# 使用指南 ##\n\n## Part\n", wantTitle: "使用指南", wantText: "intro\n\n# 使用指南 ##\n\n## Part\n"},
		{name: "markdown title skips fences and h2", file: "guide.md", format: Markdown, data: "## Sub\n```sh\n# comment\n```\n  # Real\n", wantTitle: "Real"},
		{name: "markdown hashtag is not heading", file: "tags.md", format: Markdown, data: "#tag\n", wantTitle: "tags"},
		{name: "markdown no heading", file: "x.y.md", format: Markdown, data: "text", wantTitle: "x.y"},
		{name: "invalid utf8 offset", file: "bad.txt", format: Text, data: "ok 中\xff\xfe", wantErr: ErrInvalidText, errHas: "offset 6"},
		{name: "invalid utf8 offset counts bom", file: "bad.md", format: Markdown, data: "\xEF\xBB\xBFab\xc3(", wantErr: ErrInvalidText, errHas: "offset 5"},
		{name: "truncated rune", file: "bad.txt", format: Text, data: "abc\xe4\xb8", wantErr: ErrInvalidText, errHas: "offset 3"},
		{name: "nul is binary", file: "x.txt", format: Text, data: "abc\x00def", wantErr: ErrInvalidText, errHas: "binary (NUL byte at offset 3)"},
		{name: "utf16 refused", file: "x.txt", format: Text, data: "\xFF\xFEh\x00i\x00", wantErr: ErrInvalidText, errHas: "UTF-16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Extract(context.Background(), tt.file, tt.format, []byte(tt.data))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Extract error = %v; want %v containing %q", err, tt.wantErr, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Title != tt.wantTitle {
				t.Errorf("Title = %q, want %q", got.Title, tt.wantTitle)
			}
			if tt.wantText != "" && got.Text != tt.wantText {
				t.Errorf("Text = %q, want %q", got.Text, tt.wantText)
			}
			if got.Markdown != (tt.format == Markdown) {
				t.Errorf("Markdown = %v", got.Markdown)
			}
		})
	}
}

func TestSizeLimits(t *testing.T) {
	ctx := context.Background()
	data := bytes.Repeat([]byte("a"), 1001)
	_, err := Options{MaxBytes: 1000}.Extract(ctx, "big.txt", Text, data)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1001 bytes, the limit is 1000") {
		t.Fatalf("over MaxBytes: %v", err)
	}
	if _, err := (Options{MaxBytes: 1001}).Extract(ctx, "big.txt", Text, data); err != nil {
		t.Fatalf("at MaxBytes: %v", err)
	}
	_, err = Options{MaxTextBytes: 100}.Extract(ctx, "big.txt", Text, data)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxTextBytes: %v", err)
	}
	page := []byte("<p>" + strings.Repeat("word ", 10000) + "</p>")
	_, err = Options{MaxTextBytes: 1000}.Extract(ctx, "big.html", HTML, page)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("HTML over MaxTextBytes: %v", err)
	}

	if _, err := ReadAll(bytes.NewReader(data), 1000); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("ReadAll over the limit: %v", err)
	}
	got, err := ReadAll(bytes.NewReader(data), 1001)
	if err != nil || len(got) != 1001 {
		t.Fatalf("ReadAll at the limit = %d bytes, %v", len(got), err)
	}
}

func TestExtractUnknownFormat(t *testing.T) {
	_, err := Extract(context.Background(), "x.doc", Format("doc"), []byte("x"))
	if !errors.Is(err, ErrUnsupportedFormat) {
		t.Fatalf("err = %v", err)
	}
}

func TestExtractCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Extract(ctx, "a.html", HTML, []byte("<p>x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestSHA256(t *testing.T) {
	got := hex.EncodeToString(SHA256([]byte("abc")))
	if want := "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("SHA256(abc) = %s", got)
	}
}
