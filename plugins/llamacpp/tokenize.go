package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hybridgroup/yzma/pkg/llama"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// The plugin's rules for text llama.cpp cannot take as it is.
//
// NUL: yzma hands text to llama.cpp as C strings. A Go string holding a NUL
// byte has no C form, and yzma's Tokenize then passes llama_tokenize a NULL
// pointer with the string's length: llama.cpp builds a std::string from it
// and the process aborts ("basic_string::_M_construct null not valid",
// SIGABRT); its NewChatMessage gives the template NULL pointers the same
// way. So no text holding NUL ever reaches yzma. A NUL byte is the
// vocabulary's token for the byte 0x00 (<0x00> in SentencePiece
// vocabularies with byte fallback, the byte-level token in BPE ones), one
// token per NUL: the text between NULs is tokenized piece by piece, as the
// text on either side of a special token is (a SentencePiece model that
// adds a space prefix adds it after each NUL too). A model whose vocabulary
// has no such token refuses text holding NUL with sdk.ErrInvalidRequest.
// Chat messages keep their NULs through the template (see applyTemplate).
//
// Invalid UTF-8 cannot reach the plugin: the wire carries UTF-8 only and
// the host refuses anything else, naming the field.
//
// Empty and whitespace-only text is tokenized like any other; one that
// yields no token at all is refused. Lengths are checked against the
// context and the batch before anything is decoded (see Generate, Embed).

// tokenizer tokenizes text for one loaded model under those rules.
type tokenizer struct {
	vocab llama.Vocab
	// nul is the vocabulary's token for the byte 0x00; hasNUL is false when
	// it has none.
	nul    llama.Token
	hasNUL bool
	// pre and post are the tokens llama.cpp adds around every text when
	// asked to add special tokens (BOS; EOS, SEP); framed is false when
	// they could not be told apart from the text's own tokens.
	pre, post []llama.Token
	framed    bool
}

func newTokenizer(vocab llama.Vocab) *tokenizer {
	t := &tokenizer{vocab: vocab}
	buf := make([]byte, 8)
	for id := range llama.Token(llama.VocabNTokens(vocab)) {
		if n := llama.TokenToPiece(vocab, id, buf, 0, false); n == 1 && buf[0] == 0 {
			t.nul, t.hasNUL = id, true
			break
		}
	}
	// The special tokens do not depend on the text: find them around a
	// probe.
	with, without := llama.Tokenize(vocab, "a", true, false), llama.Tokenize(vocab, "a", false, false)
	for i := 0; i+len(without) <= len(with); i++ {
		if slices.Equal(with[i:i+len(without)], without) {
			t.pre, t.post, t.framed = with[:i], with[i+len(without):], true
			break
		}
	}
	return t
}

// tokenize returns the tokens of text with the model's special tokens
// added; parseSpecial makes special-token text (<|im_start|>) its token.
// field names the text in errors ("input[2]", "the prompt").
func (t *tokenizer) tokenize(field, text string, parseSpecial bool) ([]llama.Token, error) {
	return t.tokens(field, text, true, parseSpecial)
}

// plain returns the tokens of text alone: no special tokens added, none
// parsed (a rerank pair's parts; see rerank.go).
func (t *tokenizer) plain(field, text string) ([]llama.Token, error) {
	return t.tokens(field, text, false, false)
}

// tokens tokenizes text under the NUL rule, adding the model's special tokens
// around it when addSpecial is set.
func (t *tokenizer) tokens(field, text string, addSpecial, parseSpecial bool) ([]llama.Token, error) {
	if !strings.Contains(text, "\x00") {
		return llama.Tokenize(t.vocab, text, addSpecial, parseSpecial), nil
	}
	if !t.hasNUL || addSpecial && !t.framed {
		return nil, refuseNUL(field, text)
	}
	var out []llama.Token
	if addSpecial {
		out = slices.Clone(t.pre)
	}
	for i, part := range strings.Split(text, "\x00") {
		if i > 0 {
			out = append(out, t.nul)
		}
		if part != "" {
			out = append(out, llama.Tokenize(t.vocab, part, false, parseSpecial)...)
		}
	}
	if addSpecial {
		out = append(out, t.post...)
	}
	return out, nil
}

// pieceLen is the number of bytes token id stands for in text (0 for a
// control token).
func (t *tokenizer) pieceLen(id llama.Token) int {
	var buf [64]byte
	n := llama.TokenToPiece(t.vocab, id, buf[:], 0, false)
	if n < 0 {
		n = llama.TokenToPiece(t.vocab, id, make([]byte, -n), 0, false)
	}
	return max(int(n), 0)
}

// takesNUL reports whether text holding NUL can be tokenized.
func (t *tokenizer) takesNUL() bool { return t.hasNUL && t.framed }

// refuseNUL is the error for text holding NUL that the model cannot take.
func refuseNUL(field, text string) error {
	return sdk.InvalidRequestf("%s contains a NUL byte (at byte %d), which this model's vocabulary has no token for", field, strings.IndexByte(text, 0))
}

// truncate cuts toks (a tokenize result) to limit tokens, keeping the
// start of the text and the special tokens that end it.
func (t *tokenizer) truncate(toks []llama.Token, limit int) []llama.Token {
	if len(toks) <= limit {
		return toks
	}
	if !t.framed || len(t.pre)+len(t.post) >= limit {
		return toks[:limit]
	}
	return append(slices.Clone(toks[:limit-len(t.post)]), t.post...)
}

// nulMarker returns a string that occurs in none of texts, to stand for NUL
// where llama.cpp takes C strings.
func nulMarker(texts ...string) string {
	for n := 0; ; n++ {
		m := fmt.Sprintf("\uFDD0nul%d\uFDD1", n)
		if !slices.ContainsFunc(texts, func(s string) bool { return strings.Contains(s, m) }) {
			return m
		}
	}
}
