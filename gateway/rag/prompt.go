package rag

import (
	"fmt"
	"strings"
	"unicode/utf8"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Source is one retrieved chunk as a citation: [N] in the prompt and in the answer.
type Source struct {
	N          int     `json:"n"`
	DocumentID string  `json:"document_id"`
	Title      string  `json:"title"`
	ChunkID    string  `json:"chunk_id"`
	Score      float64 `json:"score"`
	Snippet    string  `json:"snippet"`
	// Heading and Text are the chunk's heading path and text: what the prompt
	// cites, and what a page shows when a citation is opened.
	Heading string `json:"heading"`
	Text    string `json:"text"`
}

// snippetRunes bounds a source's snippet.
const snippetRunes = 240

// Snippet returns the start of text, at most snippetRunes runes, cut at a space when
// one is near, with "…" when cut.
func Snippet(text string) string {
	text = strings.Join(strings.Fields(text), " ")
	if utf8.RuneCountInString(text) <= snippetRunes {
		return text
	}
	r := []rune(text)[:snippetRunes]
	cut := len(r)
	for i := len(r) - 1; i > snippetRunes*3/4; i-- {
		if r[i] == ' ' {
			cut = i
			break
		}
	}
	return string(r[:cut]) + "…"
}

// contextHeader introduces the sources in the prompt.
const contextHeader = "Answer the question using the numbered sources below. Cite the sources you use as [1], [2] … right after the statements they support. If the sources do not contain the answer, say so.\n\nSources:\n"

// Context returns the system message that gives the model sources, numbered ([1],
// [2] …) with their titles and headings; "" without sources.
func Context(sources []Source) string {
	if len(sources) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(contextHeader)
	for _, s := range sources {
		fmt.Fprintf(&b, "\n[%d] %s", s.N, s.Title)
		if s.Heading != "" && s.Heading != s.Title {
			fmt.Fprintf(&b, " — %s", s.Heading)
		}
		b.WriteString("\n")
		b.WriteString(strings.TrimSpace(s.Text))
		b.WriteString("\n")
	}
	return b.String()
}

// Augment returns msgs with context (a [Context]) put before the last user message, as
// a system message. An empty context: msgs unchanged.
func Augment(msgs []sdk.Message, context string) []sdk.Message {
	if context == "" {
		return msgs
	}
	last := len(msgs) - 1
	for last >= 0 && msgs[last].Role != "user" {
		last--
	}
	if last < 0 {
		last = len(msgs)
	}
	out := make([]sdk.Message, 0, len(msgs)+1)
	out = append(out, msgs[:last]...)
	out = append(out, sdk.Message{Role: "system", Content: context})
	return append(out, msgs[last:]...)
}
