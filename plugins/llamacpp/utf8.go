package main

// Text that stays UTF-8 under a grammar. llama.cpp's grammar reads a token's bytes as
// UTF-8 with a pending partial character; bytes that do not continue that character
// end the decoding with no character read, and the token passes as though it had
// written nothing. The model could then write bytes that are not UTF-8 into a
// constrained answer, which come out as U+FFFD: more characters than a schema's
// maxLength, text that is not what the grammar allowed. So while a grammar is in
// play the engine draws only tokens that keep the answer UTF-8 (sampleUTF8).

import (
	"math"
	"unicode/utf8"
	"unsafe"

	"github.com/hybridgroup/yzma/pkg/llama"
)

// validPrefix reports whether b is UTF-8 but perhaps for an incomplete last
// character that can still become one.
func validPrefix(b []byte) bool {
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			return canComplete(b)
		}
		b = b[size:]
	}
	return true
}

// canComplete reports whether b, not a whole character, is the beginning of one.
func canComplete(b []byte) bool {
	var n int // the length of the character b begins
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		n = 2
	case c >= 0xE0 && c <= 0xEF:
		n = 3
	case c >= 0xF0 && c <= 0xF4:
		n = 4
	default:
		return false
	}
	if len(b) >= n {
		return false
	}
	for i := 1; i < len(b); i++ {
		lo, hi := byte(0x80), byte(0xBF)
		if i == 1 {
			switch b[0] {
			case 0xE0:
				lo = 0xA0 // (shorter forms are overlong)
			case 0xED:
				hi = 0x9F // (surrogates)
			case 0xF0:
				lo = 0x90
			case 0xF4:
				hi = 0x8F // (beyond U+10FFFF)
			}
		}
		if b[i] < lo || b[i] > hi {
			return false
		}
	}
	return true
}

// utf8Tokens is what the engine knows of its tokens' text (with control tokens' text:
// a grammar is in play), made the first time a grammar is.
type utf8Tokens struct {
	pieces [][]byte
	// clean: the token's text is a valid prefix on its own (what may follow a whole
	// character).
	clean   []bool
	cands   []llama.TokenData // the draw's candidates (the loop's only)
	scratch []byte
}

func (e *engine) utf8Tokens() *utf8Tokens {
	if e.utf8 == nil {
		u := &utf8Tokens{pieces: make([][]byte, e.nVocab), clean: make([]bool, e.nVocab), cands: make([]llama.TokenData, e.nVocab)}
		for i := range e.nVocab {
			p := e.pieceOf(llama.Token(i), true)
			u.pieces[i], u.clean[i] = p, validPrefix(p)
		}
		e.utf8 = u
	}
	return e.utf8
}

// allowed reports whether token i may follow pending (the bytes of an incomplete
// character already written).
func (u *utf8Tokens) allowed(i int, pending []byte) bool {
	if len(pending) == 0 {
		return u.clean[i]
	}
	if len(u.pieces[i]) == 0 {
		return false // (nothing, or the end, with a character half written)
	}
	u.scratch = append(append(u.scratch[:0], pending...), u.pieces[i]...)
	return validPrefix(u.scratch)
}

// sampleUTF8 draws a slot's next token with smpl as llama_sampler_sample does, but
// among the tokens that keep its text UTF-8 (see the file's comment). ok is false
// when no token does.
func (e *engine) sampleUTF8(s *slot, smpl llama.Sampler) (tok llama.Token, ok bool) {
	u := e.utf8Tokens()
	logits, err := llama.GetLogitsIth(e.lctx, s.outIdx, e.nVocab)
	if err != nil || len(logits) < e.nVocab {
		return 0, false
	}
	c := u.cands[:e.nVocab]
	ninf := float32(math.Inf(-1))
	for i := range c {
		l := logits[i]
		if !u.allowed(i, s.bytes) {
			l = ninf
		}
		c[i] = llama.TokenData{Id: llama.Token(i), Logit: l}
	}
	arr := llama.TokenDataArray{Data: &c[0], Size: uint64(len(c)), Selected: -1}
	llama.SamplerApply(smpl, &arr)
	if arr.Selected < 0 || uint64(arr.Selected) >= arr.Size {
		return 0, false
	}
	tok = unsafe.Slice(arr.Data, arr.Size)[arr.Selected].Id
	if tok < 0 || int(tok) >= e.nVocab || !u.allowed(int(tok), s.bytes) {
		return 0, false
	}
	llama.SamplerAccept(smpl, tok)
	return tok, true
}
