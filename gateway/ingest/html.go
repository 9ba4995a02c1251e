package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// extractHTML renders an HTML document's visible text as Markdown:
//
//   - script, style, noscript, template, svg, math, iframe, object and canvas are
//     dropped with their content, and so is <head> except its <title>, which is the
//     title (else the first <h1>); nav, header, footer and aside are kept, as ordinary
//     blocks: they can carry content, and a page's menu costs a chunk, not a wrong
//     answer;
//   - block elements (p, div, section, table, blockquote, …) become paragraph breaks,
//     list items "- " lines, table rows lines with cells separated by " | ", <br> a
//     line break, h1…h6 Markdown headings ("## text", on one line), <pre> a fenced
//     code block with its line breaks kept;
//   - elsewhere runs of HTML white space collapse to one space; entities are decoded
//     by the tokenizer; a line that would start with "#" or a code fence is escaped
//     with "\" so that it is not read as Markdown structure.
//
// The bytes must be UTF-8 (checkText), and a <meta> charset other than UTF-8 is
// ErrUnsupportedFormat.
func extractHTML(ctx context.Context, name string, data []byte, maxText int64) (Extracted, error) {
	if _, err := checkText(name, data); err != nil {
		return Extracted{}, err
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	w := htmlWriter{h1Start: -1}
	w.b.Grow(len(data) / 2)
	z := html.NewTokenizer(bytes.NewReader(data))
	for n := 0; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return Extracted{}, err
			}
			if int64(w.b.Len()) > maxText {
				return Extracted{}, fmt.Errorf("%w: %q: extracted text is over %d bytes", ErrTooLarge, name, maxText)
			}
		}
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			if err := z.Err(); !errors.Is(err, io.EOF) {
				return Extracted{}, fmt.Errorf("%w: %q: reading HTML: %v", ErrInvalidText, name, err)
			}
			w.closePre()
			return Extracted{Title: w.title(), Text: w.b.String(), Markdown: true}, nil
		case html.TextToken:
			w.text(z.Text())
		case html.StartTagToken, html.SelfClosingTagToken:
			tag, hasAttr := z.TagName()
			a := atom.Lookup(tag)
			if a == atom.Meta && hasAttr && w.skip == 0 {
				if cs := metaCharset(z); cs != "" && !isUTF8Charset(cs) {
					return Extracted{}, fmt.Errorf("%w: %q declares charset %q; only UTF-8 is accepted", ErrUnsupportedFormat, name, cs)
				}
			}
			w.start(a, tt == html.SelfClosingTagToken)
		case html.EndTagToken:
			tag, _ := z.TagName()
			w.end(atom.Lookup(tag))
		}
	}
}

// metaCharset returns the charset a <meta> tag declares (charset="…" or
// http-equiv="Content-Type" content="…; charset=…"), or "".
func metaCharset(z *html.Tokenizer) string {
	var charset, content string
	httpEquiv := false
	for more := true; more; {
		var k, v []byte
		k, v, more = z.TagAttr()
		switch string(k) {
		case "charset":
			charset = string(v)
		case "http-equiv":
			httpEquiv = strings.EqualFold(strings.TrimSpace(string(v)), "content-type")
		case "content":
			content = string(v)
		}
	}
	if charset != "" {
		return charset
	}
	if httpEquiv {
		if _, params, err := mime.ParseMediaType(content); err == nil {
			return params["charset"]
		}
	}
	return ""
}

// Elements dropped with their content.
var skipped = map[atom.Atom]bool{
	atom.Script: true, atom.Style: true, atom.Noscript: true, atom.Template: true,
	atom.Svg: true, atom.Math: true, atom.Iframe: true, atom.Object: true, atom.Canvas: true,
}

// Elements allowed in <head>: any other start tag ends it (the end tag is optional).
var inHead = map[atom.Atom]bool{
	atom.Title: true, atom.Meta: true, atom.Link: true, atom.Base: true, atom.Style: true,
	atom.Script: true, atom.Noscript: true, atom.Template: true,
}

// Block elements: a paragraph break before and after.
var blocks = map[atom.Atom]bool{
	atom.Address: true, atom.Article: true, atom.Aside: true, atom.Blockquote: true,
	atom.Body: true, atom.Caption: true, atom.Center: true, atom.Details: true,
	atom.Dialog: true, atom.Dir: true, atom.Div: true, atom.Dl: true, atom.Fieldset: true,
	atom.Figcaption: true, atom.Figure: true, atom.Footer: true, atom.Form: true,
	atom.Header: true, atom.Hgroup: true, atom.Hr: true, atom.Html: true, atom.Legend: true,
	atom.Main: true, atom.Menu: true, atom.Nav: true, atom.Ol: true, atom.P: true,
	atom.Section: true, atom.Summary: true, atom.Table: true, atom.Tbody: true,
	atom.Tfoot: true, atom.Thead: true, atom.Ul: true,
}

// Elements that start a new line.
var lines = map[atom.Atom]bool{atom.Li: true, atom.Tr: true, atom.Dt: true, atom.Dd: true, atom.Option: true}

var headingLevel = map[atom.Atom]int{
	atom.H1: 1, atom.H2: 2, atom.H3: 3, atom.H4: 4, atom.H5: 5, atom.H6: 6,
}

// htmlWriter accumulates the Markdown rendering of a token stream.
type htmlWriter struct {
	b strings.Builder

	brk    int    // pending break before the next text: 0, 1 (line), 2 (paragraph)
	sep    string // pending separator within the line: "", " " or " | "
	prefix string // pending line prefix ("## ", "- ") for the next text
	bol    bool   // nothing written on the current line yet (or nothing at all)

	skip     int       // depth inside a skipped element
	skipAtom atom.Atom // the skipped element
	head     bool      // inside <head>
	heading  int       // level of the heading being written, 0 outside
	firstRow bool      // the next cell is the row's first

	inTitle    bool
	titleText  strings.Builder
	titleDone  bool
	h1Start    int // offset in b of the first h1's text, -1 before
	firstH1    string
	pre        int // depth of <pre>
	preText    strings.Builder
	preStarted bool // no text in the current <pre> yet (its first newline is dropped)
}

func (w *htmlWriter) title() string {
	if t := collapse(w.titleText.String()); t != "" {
		return t
	}
	return w.firstH1
}

func (w *htmlWriter) start(a atom.Atom, selfClosing bool) {
	if w.skip > 0 {
		if a == w.skipAtom && !selfClosing {
			w.skip++
		}
		return
	}
	if w.head && !inHead[a] {
		w.head = false
	}
	switch {
	case a == atom.Head:
		w.head = !selfClosing
	case a == atom.Title:
		w.inTitle = !selfClosing && !w.titleDone
	case skipped[a]:
		if !selfClosing {
			w.skip, w.skipAtom = 1, a
		}
	case a == atom.Br:
		w.lineBreak()
	case a == atom.Pre:
		if w.pre == 0 {
			w.block(2)
			w.preText.Reset()
			w.preStarted = true
		}
		if !selfClosing {
			w.pre++
		}
	case w.pre > 0:
		// Markup inside <pre> (code, span, …) adds nothing but its text.
	case headingLevel[a] > 0:
		w.block(2)
		if w.heading == 0 {
			w.heading = headingLevel[a]
			w.prefix = strings.Repeat("#", w.heading) + " "
		}
	case a == atom.Li:
		w.block(1)
		w.prefix = "- "
	case a == atom.Tr:
		w.block(1)
		w.firstRow = true
	case a == atom.Td || a == atom.Th:
		if !w.firstRow {
			w.sep = " | "
		}
		w.firstRow = false
	case lines[a]:
		w.block(1)
	case blocks[a]:
		w.block(2)
	}
}

func (w *htmlWriter) end(a atom.Atom) {
	if w.skip > 0 {
		if a == w.skipAtom {
			w.skip--
		}
		return
	}
	switch {
	case a == atom.Head:
		w.head = false
	case a == atom.Title:
		if w.inTitle {
			w.inTitle, w.titleDone = false, true
		}
	case a == atom.Pre:
		if w.pre > 0 {
			w.pre--
			if w.pre == 0 {
				w.closePre()
			}
		}
	case w.pre > 0:
	case headingLevel[a] > 0:
		if w.heading == 1 && w.h1Start >= 0 && w.firstH1 == "" {
			w.firstH1 = strings.TrimSpace(w.b.String()[w.h1Start:])
		}
		w.heading = 0
		w.prefix = ""
		w.block(2)
	case lines[a] || a == atom.Li:
		w.block(1)
	case blocks[a]:
		w.block(2)
	}
}

// block asks for a break of n (1: line, 2: paragraph) before the next text. Inside a
// heading, which must stay on one line, it is a space.
func (w *htmlWriter) block(n int) {
	if w.heading > 0 {
		if w.sep == "" {
			w.sep = " "
		}
		return
	}
	w.brk = max(w.brk, n)
	w.sep = ""
	w.prefix = ""
}

func (w *htmlWriter) lineBreak() {
	if w.pre > 0 {
		w.preText.WriteByte('\n')
		w.preStarted = false
		return
	}
	w.block(1)
}

func (w *htmlWriter) text(t []byte) {
	switch {
	case w.skip > 0:
		return
	case w.inTitle:
		w.titleText.Write(t)
		return
	case w.head:
		return // stray text in <head>; a non-space one would have ended it in a browser
	case w.pre > 0:
		if w.preStarted {
			t = bytes.TrimPrefix(t, []byte("\r"))
			t = bytes.TrimPrefix(t, []byte("\n"))
		}
		w.preStarted = false
		w.preText.Write(t)
		return
	}
	for len(t) > 0 {
		i := 0
		for i < len(t) && isHTMLSpace(t[i]) {
			i++
		}
		if i > 0 {
			if w.sep == "" {
				w.sep = " "
			}
			t = t[i:]
			continue
		}
		for i < len(t) && !isHTMLSpace(t[i]) {
			i++
		}
		w.word(t[:i])
		t = t[i:]
	}
}

// word writes a run of non-space text with whatever break, separator or prefix is
// pending before it.
func (w *htmlWriter) word(s []byte) {
	if w.b.Len() == 0 {
		w.bol = true
	} else if w.brk > 0 {
		w.b.WriteString("\n\n"[:w.brk])
		w.bol = true
	}
	w.brk = 0
	if w.bol {
		if w.prefix != "" {
			w.b.WriteString(w.prefix)
			if w.heading == 1 && w.h1Start < 0 {
				w.h1Start = w.b.Len()
			}
		} else if s[0] == '#' || bytes.HasPrefix(s, []byte("```")) || bytes.HasPrefix(s, []byte("~~~")) {
			w.b.WriteByte('\\')
		}
	} else if w.sep != "" {
		w.b.WriteString(w.sep)
	}
	w.sep, w.prefix, w.bol = "", "", false
	w.b.Write(s)
}

// closePre writes the text of the <pre> just closed as a fenced code block.
func (w *htmlWriter) closePre() {
	w.pre = 0
	code := strings.TrimRight(w.preText.String(), " \t\r\n")
	w.preText.Reset()
	if strings.TrimSpace(code) == "" {
		return
	}
	fence := strings.Repeat("`", max(3, longestRun(code, '`')+1))
	if w.b.Len() > 0 {
		w.b.WriteString("\n\n")
	}
	w.b.WriteString(fence)
	w.b.WriteByte('\n')
	w.b.WriteString(code)
	w.b.WriteByte('\n')
	w.b.WriteString(fence)
	w.brk, w.sep, w.prefix, w.bol = 2, "", "", false
}

func isHTMLSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'
}

// collapse trims s and turns its runs of HTML white space into single spaces.
func collapse(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r < 0x80 && isHTMLSpace(byte(r)) }), " ")
}

// longestRun returns the length of the longest run of c in s.
func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}
