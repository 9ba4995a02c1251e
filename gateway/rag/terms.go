package rag

import (
	"unicode"
	"unicode/utf8"
)

// Terms returns the lexical terms of text, in order, with repeats: what a sparse
// vector counts. The rules:
//
//   - Full-width ASCII forms (Ｒｅｄｉｓ，５０３) are read as ASCII.
//   - CJK characters (Han, Hiragana, Katakana, Hangul, and the marks ー 々 〆) are
//     read in runs; a run gives its overlapping character bigrams ("数据库连接" →
//     数据 据库 库连 连接), a run of one character gives that character. CJK text has
//     no spaces, and bigrams match words without a dictionary.
//   - Anything else that is a letter, digit or combining mark (Latin, Cyrillic,
//     Greek, Arabic, digits, …) forms words, lower-cased. Everything else separates.
//     So digits and Latin words inside CJK text are words of their own and break the
//     CJK run: "网关返回503错误" → 网关 关返 返回 503 错误; "第3章" → 第 3 章.
//   - A one-letter word is dropped (digits are kept: "5"), and so is a word of more
//     than maxTermRunes runes (hashes, base64), and a few English function words
//     (stopwords: the, and, of, …) that IDF would weigh near zero anyway.
//   - A word of ASCII letters only is reduced to its English stem by the Snowball
//     (Porter2) stemmer, so that "goroutines", "goroutine" and "evaluated",
//     "evaluation" meet: "running" → run. Words with digits or other letters are
//     kept as they are.
func Terms(text string) []string {
	var out []string
	forEachTerm(text, nil, func(t []byte) { out = append(out, string(t)) })
	return out
}

// maxTermRunes is the longest word kept as a term.
const maxTermRunes = 64

// stopwords are English function words left out of the terms.
var stopwords = map[string]bool{
	"an": true, "and": true, "are": true, "as": true, "at": true, "be": true, "by": true,
	"for": true, "from": true, "in": true, "is": true, "of": true, "on": true, "or": true,
	"that": true, "the": true, "this": true, "to": true, "was": true, "were": true, "with": true,
}

// isCJK reports characters of scripts written without spaces between words.
func isCJK(r rune) bool {
	if r < 0x1100 {
		return false
	}
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul) ||
		r == 'ー' || r == '々' || r == '〆' || r == 'ｰ'
}

// foldWidth maps full-width ASCII forms (U+FF01 to U+FF5E) to ASCII.
func foldWidth(r rune) rune {
	if r >= 0xFF01 && r <= 0xFF5E {
		return r - 0xFEE0
	}
	return r
}

// forEachTerm calls fn with each term of text, in a buffer (buf, grown) that fn must
// not keep. It returns the buffer for reuse.
func forEachTerm(text string, buf []byte, fn func([]byte)) []byte {
	var (
		word        = buf[:0] // the Latin word being read
		wordRunes   int
		wordDigit   bool   // the word is all digits
		wordLetters = true // the word is all ASCII letters
		prev        rune   // the previous rune of the CJK run, or -1
		runLen      int    // runes in the CJK run
	)
	endWord := func() {
		if wordRunes > 0 && wordRunes <= maxTermRunes && (wordRunes > 1 || wordDigit) &&
			!(len(word) <= 5 && stopwords[string(word)]) {
			if wordLetters && len(word) > 2 {
				fn(stem(word))
			} else {
				fn(word)
			}
		}
		word, wordRunes, wordLetters = word[:0], 0, true
	}
	var pair [8]byte
	endRun := func() {
		if runLen == 1 {
			n := utf8.EncodeRune(pair[:], prev)
			fn(pair[:n])
		}
		runLen = 0
	}
	for i := 0; i < len(text); {
		r, size := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(text[i:])
			r = foldWidth(r)
		}
		i += size
		switch {
		case r < utf8.RuneSelf:
			switch {
			case 'a' <= r && r <= 'z':
			case 'A' <= r && r <= 'Z':
				r += 'a' - 'A'
			case '0' <= r && r <= '9':
				if wordRunes == 0 {
					wordDigit = true
				}
				endRun()
				wordLetters = false
				word = append(word, byte(r))
				wordRunes++
				continue
			default:
				endRun()
				endWord()
				continue
			}
			endRun()
			wordDigit = false
			word = append(word, byte(r))
			wordRunes++
		case isCJK(r):
			endWord()
			if runLen > 0 {
				n := utf8.EncodeRune(pair[:], prev)
				n += utf8.EncodeRune(pair[n:], r)
				fn(pair[:n])
			}
			prev = r
			runLen++
		case unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			endRun()
			if wordRunes == 0 {
				wordDigit = true
			}
			if !unicode.IsDigit(r) {
				wordDigit = false
			}
			wordLetters = false
			word = utf8.AppendRune(word, unicode.ToLower(r))
			wordRunes++
		default:
			endRun()
			endWord()
		}
	}
	endRun()
	endWord()
	return word
}

// TermID is the id of a term in a sparse vector: its 32-bit FNV-1a hash. Different
// terms can share an id; with tens of thousands of distinct terms per collection a
// few collisions are expected and accepted (they add a little noise to scores).
func TermID(term string) uint32 {
	h := uint32(fnvOffset)
	for i := 0; i < len(term); i++ {
		h ^= uint32(term[i])
		h *= fnvPrime
	}
	return h
}

func termIDBytes(term []byte) uint32 {
	h := uint32(fnvOffset)
	for _, c := range term {
		h ^= uint32(c)
		h *= fnvPrime
	}
	return h
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)
