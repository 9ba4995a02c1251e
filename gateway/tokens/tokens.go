// Package tokens holds the gateway's token arithmetic that needs no model: a
// conservative estimate of a text's tokens (chunk sizes and prompt budgets use the
// same rule) and the tokens a generation event carries. It is a leaf: it imports no
// other package of the gateway, so pure text code (rag's chunker) does not depend on
// storage through it.
package tokens

import (
	"unicode/utf8"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Estimate is a conservative estimate of the tokens of text, without the model's
// tokenizer: one per three bytes of ASCII, one per rune beyond (CJK characters are
// about one token each, often more than one per rune in small vocabularies: the
// estimate errs high).
func Estimate(text string) int {
	n, ascii := 0, 0
	for i := 0; i < len(text); {
		if text[i] < utf8.RuneSelf {
			ascii++
			i++
			continue
		}
		_, size := utf8.DecodeRuneInString(text[i:])
		i += size
		n++
	}
	return n + (ascii+2)/3
}

// Of is the number of tokens a generation event carries: its count, else one for a
// text delta from a backend that does not count.
func Of(e sdk.Event) int {
	switch {
	case e.Tokens > 0:
		return e.Tokens
	case e.Text != "":
		return 1
	}
	return 0
}
