package ingest

import (
	"context"
	"errors"
	"strings"
	"testing"
)

const htmlFixture = `<!DOCTYPE html>
<html lang="zh">
<head>
  <meta charset="utf-8">
  <title>  Ragway &amp; 检索
    指南 </title>
  <style>body { color: red }</style>
  <script>var secret = "<p>not text</p>";</script>
  <link rel="stylesheet" href="x.css">
</head>
<body>
  <nav><a href="/">Home</a> <a href="/docs">Docs</a></nav>
  <h1>Getting   <em>started</em></h1>
  <p>Ragway is an   <b>OpenAI-compatible</b>
     gateway&nbsp;with retrieval &lt;RAG&gt; &copy; 2026.</p>
  <noscript><p>Enable JavaScript</p></noscript>
  <template><p>template text</p></template>
  <svg viewBox="0 0 10 10"><title>svg title</title><text>svg text</text><path d="M0 0"/></svg>
  <div>First line<br>second line</div>
  <h2>安装<br>步骤</h2>
  <ul><li>one</li><li>two <i>items</i></li></ul>
  <table><tr><th>Key</th><th>Value</th></tr><tr><td>a</td><td>1</td></tr></table>
  <p># not a heading</p>
  <pre>
func main() {
	fmt.Println("a &lt; b")
}
</pre>
  <pre><code>` + "```" + `inner fence` + "```" + `</code></pre>
  <footer>© footer kept</footer>
  <script>alert(1)</script>
</body>
</html>`

const htmlWant = "Home Docs\n\n" +
	"# Getting started\n\n" +
	"Ragway is an OpenAI-compatible gateway\u00a0with retrieval <RAG> © 2026.\n\n" +
	"First line\nsecond line\n\n" +
	"## 安装 步骤\n\n" +
	"- one\n- two items\n\n" +
	"Key | Value\na | 1\n\n" +
	"\\# not a heading\n\n" +
	"```\nfunc main() {\n\tfmt.Println(\"a < b\")\n}\n```\n\n" +
	"````\n```inner fence```\n````\n\n" +
	"© footer kept"

func TestExtractHTML(t *testing.T) {
	got, err := Extract(context.Background(), "guide.html", HTML, []byte(htmlFixture))
	if err != nil {
		t.Fatal(err)
	}
	if got.Title != "Ragway & 检索 指南" {
		t.Errorf("Title = %q", got.Title)
	}
	if !got.Markdown {
		t.Error("Markdown = false")
	}
	if got.Text != htmlWant {
		t.Errorf("Text =\n%s\n--- want\n%s", got.Text, htmlWant)
	}
	for _, dropped := range []string{"secret", "not text", "color", "Enable JavaScript", "template text", "svg", "alert"} {
		if strings.Contains(got.Text, dropped) {
			t.Errorf("text contains %q", dropped)
		}
	}
}

func TestExtractHTMLCases(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		wantTitle string
		wantText  string
		wantErr   error
		errHas    string
	}{
		{name: "title from h1", data: "<body><h1>The <b>Heading</b></h1><p>x</p>", wantTitle: "The Heading", wantText: "# The Heading\n\nx"},
		{name: "title from file name", data: "<p>only text</p>", wantTitle: "page", wantText: "only text"},
		{name: "head without end tag", data: "<html><head><title>T</title><body><p>body text", wantTitle: "T", wantText: "body text"},
		{name: "implied head ends at content", data: "<title>T</title><p>kept</p>", wantTitle: "T", wantText: "kept"},
		{name: "empty heading writes nothing", data: "<h2> </h2><p>x</p>", wantTitle: "page", wantText: "x"},
		{name: "nested skipped elements", data: "<div>a<script>if (a<b) {}</script><svg><svg><g>x</g></svg>y</svg>b</div>", wantTitle: "page", wantText: "ab"},
		{name: "unclosed pre", data: "<pre>  indented\n  code", wantTitle: "page", wantText: "```\n  indented\n  code\n```"},
		{name: "chinese", data: "<p>检索增强生成</p><p>第二段</p>", wantTitle: "page", wantText: "检索增强生成\n\n第二段"},
		{name: "meta charset latin1", data: `<meta charset="iso-8859-1"><p>x`, wantErr: ErrUnsupportedFormat, errHas: `"iso-8859-1"`},
		{name: "meta http-equiv gbk", data: `<meta http-equiv="Content-Type" content="text/html; charset=GBK"><p>x`, wantErr: ErrUnsupportedFormat, errHas: `"GBK"`},
		{name: "meta http-equiv utf8", data: `<meta http-equiv="content-type" content="text/html; charset=UTF-8"><p>x`, wantTitle: "page", wantText: "x"},
		{name: "invalid utf8", data: "<p>caf\xe9</p>", wantErr: ErrInvalidText, errHas: "offset 6"},
		{name: "nul", data: "<p>\x00</p>", wantErr: ErrInvalidText, errHas: "binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Extract(context.Background(), "page.html", HTML, []byte(tt.data))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("Extract error = %v; want %v containing %q", err, tt.wantErr, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Title != tt.wantTitle || got.Text != tt.wantText {
				t.Errorf("Extract = %q, %q; want %q, %q", got.Title, got.Text, tt.wantTitle, tt.wantText)
			}
		})
	}
}
