package rag

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/tokens"
)

// A unit is the smallest piece the packer places whole: a paragraph, or a piece of
// one (sentence, line, clause, hard cut) when the paragraph is over the target. It
// is a byte range of the document text starting and ending at non-space.
type unit struct {
	start, end int
	tokens     int
}

// A cutter returns where pieces of text[a:b] start: offsets in (a, b), increasing,
// each at a non-space character. The first piece starts at a.
type cutter func(text string, a, b int) []int

var (
	proseCutters = []cutter{sentenceCuts, lineCuts, clauseCuts}
	codeCutters  = []cutter{lineCuts}
)

// refine appends to out the units of text[a:b]: the range itself when its estimate is
// within target, else its pieces by the first cutter that cuts it, each refined by
// the cutters after; past the last cutter, hard cuts.
func refine(out []unit, text string, a, b, target int, cutters []cutter) []unit {
	a, b = trimRange(text, a, b)
	if a >= b {
		return out
	}
	if n := tokens.Estimate(text[a:b]); n <= target {
		return append(out, unit{a, b, n})
	}
	for i, cut := range cutters {
		cuts := cut(text, a, b)
		if len(cuts) == 0 {
			continue
		}
		prev := a
		for _, c := range cuts {
			out = refine(out, text, prev, c, target, cutters[i+1:])
			prev = c
		}
		return refine(out, text, prev, b, target, cutters[i+1:])
	}
	for _, c := range hardCuts(text, a, b, target) {
		out = refine(out, text, a, c, target, nil)
		a = c
	}
	return refine(out, text, a, b, target, nil)
}

// trimRange moves a past leading and b before trailing white space.
func trimRange(text string, a, b int) (int, int) {
	for a < b && isSpaceByte(text[a]) {
		a++
	}
	for b > a && isSpaceByte(text[b-1]) {
		b--
	}
	return a, b
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\n' || c == '\t' }

// skipSpace returns the first offset from i (up to b) that is not white space.
func skipSpace(text string, i, b int) int {
	for i < b && isSpaceByte(text[i]) {
		i++
	}
	return i
}

// Sentence ends. Strong ones end a sentence wherever they are (CJK text has no space
// after them); weak ones only before white space, the end, or a CJK character.
func isStrongEnd(r rune) bool {
	switch r {
	case '。', '！', '？', '；', '．', '｡':
		return true
	}
	return false
}

func isWeakEnd(r rune) bool { return r == '.' || r == '!' || r == '?' || r == '…' }

// isCloser reports closing quotes and brackets, which stay with the sentence they end.
func isCloser(r rune) bool {
	switch r {
	case '"', '\'', ')', ']', '”', '’', '」', '』', '）', '】', '〕', '》', '〉', '］', '｝':
		return true
	}
	return false
}

// abbreviations end with a period that does not end a sentence (lower case).
var abbreviations = map[string]bool{
	"mr": true, "mrs": true, "ms": true, "dr": true, "prof": true, "sr": true, "jr": true,
	"st": true, "vs": true, "fig": true, "e.g": true, "i.e": true, "cf": true, "approx": true,
}

// sentenceCuts cuts after sentence ends: CJK 。！？；．, ellipses (… ……), Latin .?!
// followed by white space. A run of ends and closing quotes or brackets stays with
// the sentence ("他说：“好。”" is one sentence). A period is not an end when the next
// word starts with a lower-case letter or a digit ("e.g. this"), nor after a single
// letter ("U.S.", "J. Smith") or a common abbreviation ("Dr.").
func sentenceCuts(text string, a, b int) []int {
	var cuts []int
	for i := a; i < b; {
		r, size := utf8.DecodeRuneInString(text[i:b])
		j := i + size
		if !isStrongEnd(r) && !isWeakEnd(r) {
			i = j
			continue
		}
		strong := isStrongEnd(r)
		for j < b {
			r2, s2 := utf8.DecodeRuneInString(text[j:b])
			if !isStrongEnd(r2) && !isWeakEnd(r2) && !isCloser(r2) {
				break
			}
			strong = strong || isStrongEnd(r2)
			j += s2
		}
		end := j
		if !strong {
			if j < b {
				next, _ := utf8.DecodeRuneInString(text[j:b])
				if !isCJK(next) && !unicode.IsSpace(next) {
					i = j
					continue
				}
			}
			if r == '.' && !periodEnds(text, a, i, j, b) {
				i = j
				continue
			}
		}
		if c := skipSpace(text, end, b); c < b {
			cuts = append(cuts, c)
		}
		i = j
	}
	return cuts
}

// periodEnds decides for a period at text[dot] (its run of ends and closers ending
// at j) whether it ends a sentence.
func periodEnds(text string, a, dot, j, b int) bool {
	if k := skipSpace(text, j, b); k < b {
		next, _ := utf8.DecodeRuneInString(text[k:b])
		if unicode.IsLower(next) || unicode.IsDigit(next) {
			return false
		}
	}
	w := dot
	for w > a {
		r, size := utf8.DecodeLastRuneInString(text[a:w])
		if !unicode.IsLetter(r) && r != '.' {
			break
		}
		w -= size
	}
	word := text[w:dot]
	if utf8.RuneCountInString(word) == 1 || strings.Contains(word, ".") {
		return false // an initial, or the last period of "U.S." / "e.g."
	}
	return !abbreviations[strings.ToLower(word)]
}

// lineCuts cuts at line ends.
func lineCuts(text string, a, b int) []int {
	var cuts []int
	for i := a; i < b; {
		n := strings.IndexByte(text[i:b], '\n')
		if n < 0 {
			break
		}
		i += n + 1
		if c := skipSpace(text, i, b); c < b {
			cuts = append(cuts, c)
			i = c
		}
	}
	return cuts
}

// clauseCuts cuts after CJK commas and colons (，、：) anywhere and after Latin
// , ; : before white space.
func clauseCuts(text string, a, b int) []int {
	var cuts []int
	for i := a; i < b; {
		r, size := utf8.DecodeRuneInString(text[i:b])
		i += size
		switch r {
		case '，', '、', '：', '﹐', '､':
		case ',', ';', ':':
			if i < b && !isSpaceByte(text[i]) {
				continue
			}
		default:
			continue
		}
		if c := skipSpace(text, i, b); c < b {
			cuts = append(cuts, c)
		}
	}
	return cuts
}

// hardCuts cuts text[a:b] into windows of at most target tokens, at rune boundaries.
// A cut that would fall inside a word of a space-separated script moves back to a
// space when one is within the last fifth of the window.
func hardCuts(text string, a, b, target int) []int {
	var cuts []int
	for p := a; p < b; {
		if tokens.Estimate(text[p:b]) <= target {
			break
		}
		// Largest e with tokens.Estimate(text[p:e]) <= target (the estimate grows with e).
		lo, hi := p+1, b
		for lo < hi {
			mid := int(uint(lo+hi+1) >> 1)
			if tokens.Estimate(text[p:mid]) <= target {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		e := lo
		for e > p && !utf8.RuneStart(text[e]) {
			e--
		}
		if e == p { // one rune over target: cannot happen for target >= 1, but progress
			_, size := utf8.DecodeRuneInString(text[p:])
			e = p + size
		}
		if inWord(text, e) {
			min := e - (e-p)/5
			for k := e - 1; k > min; k-- {
				if text[k] == ' ' || text[k] == '\n' || text[k] == '\t' {
					e = k + 1
					break
				}
			}
		}
		next := skipSpace(text, e, b)
		if next >= b {
			break
		}
		cuts = append(cuts, next)
		p = next
	}
	return cuts
}

// inWord reports whether offset i is between two letters or digits of a
// space-separated script.
func inWord(text string, i int) bool {
	if i <= 0 || i >= len(text) {
		return false
	}
	before, _ := utf8.DecodeLastRuneInString(text[:i])
	after, _ := utf8.DecodeRuneInString(text[i:])
	return isWordRune(before) && isWordRune(after)
}

func isWordRune(r rune) bool {
	return (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r)) && !isCJK(r)
}
