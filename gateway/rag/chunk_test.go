package rag

import (
	"cmp"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/tokens"
)

// pieces returns the pieces of s by cutter.
func pieces(s string, cut cutter) []string {
	var out []string
	prev := 0
	for _, c := range cut(s, 0, len(s)) {
		out = append(out, strings.TrimSpace(s[prev:c]))
		prev = c
	}
	return append(out, strings.TrimSpace(s[prev:]))
}

func TestSentenceCuts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"chinese", "今天下雨了。我们不出门！你呢？好；再见", []string{"今天下雨了。", "我们不出门！", "你呢？", "好；", "再见"}},
		{"closing quotes kept", "他说：“好的。”然后走了。「真的吗？」她问。", []string{"他说：“好的。”", "然后走了。", "「真的吗？」", "她问。"}},
		{"brackets kept", "（这是括号里的话。）接着说。", []string{"（这是括号里的话。）", "接着说。"}},
		{"ellipsis", "我想想……好吧。等等…走吧", []string{"我想想……", "好吧。", "等等…", "走吧"}},
		{"repeated ends", "真的吗？！是的。。", []string{"真的吗？！", "是的。。"}},
		{"full width period", "第一句．第二句", []string{"第一句．", "第二句"}},
		{"english", "Use a cache, e.g. Redis. Pi is 3.14 here. The U.S. Army agreed! Really? Yes.",
			[]string{"Use a cache, e.g. Redis.", "Pi is 3.14 here.", "The U.S. Army agreed!", "Really?", "Yes."}},
		{"lower case after period", "It costs approx. five dollars. Then stop.", []string{"It costs approx. five dollars.", "Then stop."}},
		{"abbreviation", "Ask Dr. Smith. He knows.", []string{"Ask Dr. Smith.", "He knows."}},
		{"quote after period", `He said "stop." Then left.`, []string{`He said "stop."`, "Then left."}},
		{"period then cjk", "Version 2 is out.接下来看中文。", []string{"Version 2 is out.", "接下来看中文。"}},
		{"no cut in url or number", "See example.com/a.b and 1.000.000 here", []string{"See example.com/a.b and 1.000.000 here"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pieces(tt.in, sentenceCuts); !slices.Equal(got, tt.want) {
				t.Errorf("sentences(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestClauseCuts(t *testing.T) {
	got := pieces("首先，配置网关、数据库：然后 run it, then stop;done,ok", clauseCuts)
	want := []string{"首先，", "配置网关、", "数据库：", "然后 run it,", "then stop;done,ok"}
	if !slices.Equal(got, want) {
		t.Errorf("clauses = %q, want %q", got, want)
	}
}

func headings(cs []Chunk) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Heading)
	}
	return out
}

// TestSections checks what a heading is and the paths and texts of the sections.
func TestSections(t *testing.T) {
	tests := []struct {
		name     string
		doc      Document
		headings []string
		texts    []string
	}{
		{
			name:     "markdown path",
			doc:      Document{Title: "Guide", Markdown: true, Text: "Intro.\n\n# Guide\n\nTop.\n\n## Install\n\nRun it.\n\n### Linux\n\napt.\n\n## Use\n\nCall it.\n\nSetext B\n--------\n\nUnder B.\n\nOther\n=====\n\nNew top.\n\n#### Deep ####\n\ndeep text"},
			headings: []string{"Guide", "Guide", "Guide > Install", "Guide > Install > Linux", "Guide > Use", "Guide > Setext B", "Guide > Other", "Guide > Other > Deep"},
			texts:    []string{"Intro.", "Top.", "Run it.", "apt.", "Call it.", "Under B.", "New top.", "deep text"},
		},
		{
			name:     "chinese headings, empty sections dropped",
			doc:      Document{Markdown: true, Text: "# 第一章 概述\n## 1.1 背景\n\n网关是什么？\n\n## 1.2 目标\n### 1.2.1 性能\n\n每秒五兆字节。"},
			headings: []string{"第一章 概述 > 1.1 背景", "第一章 概述 > 1.2 目标 > 1.2.1 性能"},
			texts:    []string{"网关是什么？", "每秒五兆字节。"},
		},
		{
			name:     "heading inside code fence is code",
			doc:      Document{Markdown: true, Text: "# A\n\n```sh\n# comment\n\necho hi\n```\n\nafter"},
			headings: []string{"A"},
			texts:    []string{"```sh\n# comment\n\necho hi\n```\n\nafter"},
		},
		{
			name:     "plain text: atx only, no setext, no fences",
			doc:      Document{Text: "# Title\n\nline one\n---\n\n```\n# Sub\n\nx"},
			headings: []string{"Title", "Sub"},
			texts:    []string{"line one\n---\n\n```", "x"},
		},
		{
			name:     "not headings",
			doc:      Document{Markdown: true, Text: "#hashtag\n\n####### seven\n\n- item\n---\n\n    # indented"},
			headings: []string{""},
			texts:    []string{"#hashtag\n\n####### seven\n\n- item\n---\n\n    # indented"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var heads, texts []string
			for _, s := range sections(tt.doc) {
				heads = append(heads, s.heading)
				texts = append(texts, tt.doc.Text[s.start():s.end()])
			}
			if !slices.Equal(heads, tt.headings) {
				t.Errorf("headings = %q, want %q", heads, tt.headings)
			}
			if !slices.Equal(texts, tt.texts) {
				t.Errorf("texts = %q, want %q", texts, tt.texts)
			}
		})
	}
}

// TestSplitJoinsSmallSections: consecutive sections that fit in a chunk together are
// one chunk, the document's text from the first to the last, under the heading path
// they share; a long section is cut alone.
func TestSplitJoinsSmallSections(t *testing.T) {
	guide := Document{Title: "Guide", Markdown: true, Text: "Intro.\n\n# Guide\n\nTop.\n\n## Install\n\nRun it.\n\n### Linux\n\napt.\n\n## Use\n\nCall it."}
	long := strings.Repeat("A long sentence about one thing. ", 40)
	tests := []struct {
		name     string
		doc      Document
		opts     Options
		headings []string
		texts    []string
	}{
		{
			name:     "all in one",
			doc:      guide,
			headings: []string{"Guide"},
			texts:    []string{"Intro.\n\n# Guide\n\nTop.\n\n## Install\n\nRun it.\n\n### Linux\n\napt.\n\n## Use\n\nCall it."},
		},
		{
			// "Intro.\n\n# Guide\n\nTop." is 7 tokens; adding Install's 9 more is over 12.
			name:     "groups as the size allows",
			doc:      guide,
			opts:     Options{ChunkTokens: 12},
			headings: []string{"Guide", "Guide > Install", "Guide > Use"},
			texts:    []string{"Intro.\n\n# Guide\n\nTop.", "Run it.\n\n### Linux\n\napt.", "Call it."},
		},
		{
			name:     "the first heading line starts the text when the path it adds is not shared",
			doc:      Document{Title: "T", Markdown: true, Text: "## A\n\nx.\n\n## B\n\ny."},
			headings: []string{"T"},
			texts:    []string{"## A\n\nx.\n\n## B\n\ny."},
		},
		{
			name:     "an empty parent's heading stays in the text",
			doc:      Document{Markdown: true, Text: "# Kubernetes\n## Install\nrun the installer\n# Debian\nuse apt\n"},
			headings: []string{""},
			texts:    []string{"# Kubernetes\n## Install\nrun the installer\n# Debian\nuse apt"},
		},
		{
			name:     "a long section is cut alone",
			doc:      Document{Markdown: true, Text: "# S\n\nshort.\n\n# L\n\n" + long + "\n\n# E\n\nend."},
			opts:     Options{ChunkTokens: 250, Overlap: -1}, // 440 tokens in 11-token sentences
			headings: []string{"S", "L", "L", "E"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := Split(tt.doc, tt.opts)
			if got := headings(cs); !slices.Equal(got, tt.headings) {
				t.Errorf("headings = %q, want %q", got, tt.headings)
			}
			var texts []string
			for i, c := range cs {
				texts = append(texts, c.Text)
				if c.Ordinal != i || c.Tokens != tokens.Estimate(c.Text) {
					t.Errorf("chunk %d: ordinal %d, %d tokens", i, c.Ordinal, c.Tokens)
				}
				if max := cmp.Or(tt.opts.ChunkTokens, DefaultChunkTokens); c.Tokens > max {
					t.Errorf("chunk %d: %d tokens, over %d", i, c.Tokens, max)
				}
			}
			if tt.texts != nil && !slices.Equal(texts, tt.texts) {
				t.Errorf("texts = %q, want %q", texts, tt.texts)
			}
		})
	}
}

// endsSentence reports whether s ends with a sentence end, possibly followed by
// closing quotes or brackets.
func endsSentence(s string) bool {
	s = strings.TrimRightFunc(s, isCloser)
	r, _ := utf8.DecodeLastRuneInString(s)
	return isStrongEnd(r) || isWeakEnd(r)
}

func TestSplitChineseAtSentences(t *testing.T) {
	text := strings.Repeat("他说：“今天的部署很顺利。”然后大家都回家了！你确定吗？「是的，我确定。」数据库连接池的大小默认为十；", 20)
	cs := Split(Document{Text: text}, Options{ChunkTokens: 40, Overlap: -1})
	if len(cs) < 10 {
		t.Fatalf("%d chunks, want many", len(cs))
	}
	for _, c := range cs {
		if !endsSentence(c.Text) {
			t.Errorf("chunk does not end at a sentence end: %q", c.Text)
		}
		if strings.HasPrefix(c.Text, "”") || strings.HasPrefix(c.Text, "」") {
			t.Errorf("closing quote separated from its sentence: %q", c.Text)
		}
		if c.Tokens > 40 || c.OverlapBytes != 0 {
			t.Errorf("chunk %d: %d tokens, overlap %d", c.Ordinal, c.Tokens, c.OverlapBytes)
		}
	}
}

func TestSplitEnglishAtSentences(t *testing.T) {
	sentence := "Use a cache, e.g. Redis, for sessions. Pi is 3.14 and the U.S. Army agreed with Dr. Smith! Is it fast? "
	cs := Split(Document{Text: strings.Repeat(sentence, 30)}, Options{ChunkTokens: 60, Overlap: -1})
	for _, c := range cs {
		if !endsSentence(c.Text) {
			t.Errorf("chunk does not end at a sentence end: %q", c.Text)
		}
		for _, bad := range []string{"e.g.", "3.", "U.S.", "Dr."} {
			if strings.HasSuffix(c.Text, bad) {
				t.Errorf("chunk split after %q: %q", bad, c.Text)
			}
		}
	}
}

func TestSplitOverlap(t *testing.T) {
	text := strings.Repeat("网关返回503错误时，客户端应当重试。The gateway retries with backoff. 向量检索的召回率取决于分块！", 40)
	const limit = 20 // the longest sentence is 17 tokens
	cs := Split(Document{Text: text}, Options{ChunkTokens: 80, Overlap: limit})
	if len(cs) < 5 {
		t.Fatalf("%d chunks", len(cs))
	}
	for i, c := range cs {
		if i == 0 {
			if c.OverlapBytes != 0 {
				t.Errorf("first chunk has overlap %d", c.OverlapBytes)
			}
			continue
		}
		if c.OverlapBytes == 0 {
			t.Errorf("chunk %d has no overlap", i)
			continue
		}
		ov := c.Text[:c.OverlapBytes]
		if n := tokens.Estimate(ov); n > limit {
			t.Errorf("chunk %d overlap %q is %d tokens", i, ov, n)
		}
		if !strings.HasSuffix(cs[i-1].Text, strings.TrimSpace(ov)) {
			t.Errorf("chunk %d overlap %q is not the end of the previous chunk", i, ov)
		}
		// Starts at a sentence: the previous chunk's text before the overlap ends one.
		before := strings.TrimSuffix(cs[i-1].Text, strings.TrimSpace(ov))
		if !endsSentence(strings.TrimSpace(before)) {
			t.Errorf("chunk %d overlap %q does not start a sentence (after %q)", i, ov, before[max(0, len(before)-20):])
		}
	}
}

func TestSplitOverlapFallsBackToClauses(t *testing.T) {
	text := strings.Repeat("网关返回503错误时，客户端应当按照指数退避的方式重试。", 20)
	cs := Split(Document{Text: text}, Options{ChunkTokens: 60, Overlap: 20})
	for i, c := range cs[1:] {
		if ov := c.Text[:c.OverlapBytes]; ov != "客户端应当按照指数退避的方式重试。" {
			t.Errorf("chunk %d: overlap %q, want the last clause", i+1, ov)
		}
	}
}

func TestSplitOverlapFallsBackToWords(t *testing.T) {
	text := strings.Repeat("words without any sentence end go on and on ", 100)
	cs := Split(Document{Text: text}, Options{ChunkTokens: 50, Overlap: 10})
	for i, c := range cs[1:] {
		ov := c.Text[:c.OverlapBytes]
		if ov == "" || tokens.Estimate(ov) > 10 {
			t.Errorf("chunk %d: overlap %q", i+1, ov)
		}
		if r, _ := utf8.DecodeRuneInString(ov); !unicode.IsLetter(r) || inWord(cs[i].Text, len(cs[i].Text)-len(strings.TrimSpace(ov))) {
			t.Errorf("chunk %d: overlap %q starts inside a word", i+1, ov)
		}
	}
}

func TestSplitCodeFence(t *testing.T) {
	fence := "```go\nfunc main() {\n\tx := 1\n\n\tfmt.Println(x)\n}\n```"
	doc := "# Code\n\nBefore the code.\n\n" + fence + "\n\nAfter the code."
	cs := Split(Document{Markdown: true, Text: doc}, Options{ChunkTokens: 20, Overlap: -1})
	found := false
	for _, c := range cs {
		if strings.Contains(c.Text, "```") {
			if c.Text != fence {
				t.Errorf("fence not whole: %q", c.Text)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no chunk holds the fence: %+v", cs)
	}

	long := "```\n" + strings.Repeat("x := compute(a, b)\n", 100) + "```"
	cs = Split(Document{Markdown: true, Text: long}, Options{ChunkTokens: 50, Overlap: -1})
	if len(cs) < 5 {
		t.Fatalf("long fence: %d chunks", len(cs))
	}
	for _, c := range cs {
		if !strings.HasSuffix(c.Text, ")") && !strings.HasSuffix(c.Text, "```") {
			t.Errorf("long fence not cut at a line end: %q", c.Text)
		}
	}
}

func TestSplitHardCuts(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"cjk without punctuation", strings.Repeat("没有标点的超长句子", 100)},
		{"latin without punctuation", strings.Repeat("unpunctuated words flow on ", 100)},
		{"one long token", strings.Repeat("z", 2000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs := Split(Document{Text: tt.text}, Options{ChunkTokens: 50, Overlap: -1})
			var b strings.Builder
			for _, c := range cs {
				if !utf8.ValidString(c.Text) || c.Tokens > 50 || c.Text == "" {
					t.Errorf("bad chunk (%d tokens): %q", c.Tokens, c.Text)
				}
				words := strings.Fields(c.Text)
				if last := words[len(words)-1]; strings.Contains(tt.text, " ") && !strings.Contains(" unpunctuated words flow on ", " "+last+" ") {
					t.Errorf("cut inside a word: %q", c.Text)
				}
				b.WriteString(c.Text)
			}
			if stripSpace(b.String()) != stripSpace(tt.text) {
				t.Error("chunks do not reproduce the text")
			}
		})
	}
}

func stripSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// headingLines are mixedCorpus's heading lines (ATX, and setext with its underline),
// and the ATX lines a chunk writes for the headings of empty parent sections.
var headingLines = regexp.MustCompile(`(?m)^(#{1,3} 第\d+节 (Section \d+|设置)|第\d+节 设置\n[=-]{8})$`)

// withoutHeadings is text without mixedCorpus's heading lines, which the joined
// sections of a chunk keep.
func withoutHeadings(text string) string { return headingLines.ReplaceAllString(text, "") }

// TestSplitProperties checks, on a long mixed corpus and several sizes: no empty
// chunks, token bounds, valid UTF-8, ordinals, overlaps that repeat the previous
// chunk, and that the chunks' own texts reproduce the document (headings left out).
func TestSplitProperties(t *testing.T) {
	doc, bodies := mixedCorpus(300 << 10)
	for _, opts := range []Options{{}, {ChunkTokens: 100, Overlap: 20}, {ChunkTokens: 37, Overlap: -1}, {ChunkTokens: 1000, Overlap: 200}, {ChunkTokens: 5, Overlap: 2}} {
		cs := Split(Document{Title: "Corpus", Text: Normalize(doc), Markdown: true}, opts)
		o := opts.withDefaults()
		var own strings.Builder
		for i, c := range cs {
			if c.Ordinal != i {
				t.Fatalf("%+v: chunk %d has ordinal %d", opts, i, c.Ordinal)
			}
			if strings.TrimSpace(c.Text[c.OverlapBytes:]) == "" {
				t.Fatalf("%+v: chunk %d is empty: %q", opts, i, c.Text)
			}
			if c.Tokens != tokens.Estimate(c.Text) || c.Tokens > o.ChunkTokens+o.Overlap {
				t.Errorf("%+v: chunk %d: %d tokens (estimate %d), bound %d", opts, i, c.Tokens, tokens.Estimate(c.Text), o.ChunkTokens+o.Overlap)
			}
			if n := tokens.Estimate(c.Text[c.OverlapBytes:]); n > o.ChunkTokens {
				t.Errorf("%+v: chunk %d: own text %d tokens", opts, i, n)
			}
			if !utf8.ValidString(c.Text) || c.Text != strings.TrimSpace(c.Text) {
				t.Errorf("%+v: chunk %d: invalid or untrimmed %q", opts, i, c.Text)
			}
			if c.Heading != "Corpus" && !strings.HasPrefix(c.Heading, "Corpus > 第") {
				t.Errorf("%+v: chunk %d: heading %q", opts, i, c.Heading)
			}
			if c.OverlapBytes > 0 && (cs[i-1].Heading != c.Heading || !strings.HasSuffix(cs[i-1].Text, strings.TrimSpace(c.Text[:c.OverlapBytes]))) {
				t.Errorf("%+v: chunk %d: overlap %q not from the previous chunk", opts, i, c.Text[:c.OverlapBytes])
			}
			own.WriteString(c.Text[c.OverlapBytes:] + "\n")
		}
		if got, want := stripSpace(withoutHeadings(own.String())), stripSpace(bodies); got != want {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Errorf("%+v: chunks do not reproduce the text: differ at byte %d: got %q, want %q", opts, i, got[i:min(len(got), i+80)], want[i:min(len(want), i+80)])
		}
	}
}
