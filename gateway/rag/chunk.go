package rag

import (
	"strings"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/tokens"
)

// Document is the text to split.
type Document struct {
	// Title is the first element of every chunk's heading path when not empty.
	Title string
	// Text should have been through Normalize.
	Text string
	// Markdown enables setext headings (=== and --- underlines) and code fences. ATX
	// headings ("# Title") are recognised in plain text too.
	Markdown bool
}

// Options size the chunks. The zero value is the defaults.
type Options struct {
	// ChunkTokens is the target size of a chunk, without its overlap, in estimated
	// tokens (tokens.Estimate). <= 0 means DefaultChunkTokens.
	ChunkTokens int
	// Overlap is how much of the end of the previous chunk of the same section a
	// chunk starts with, at most, in estimated tokens. 0 means the default, 15% of
	// ChunkTokens (120 for 800); < 0 means none. It is capped at ChunkTokens/2.
	Overlap int
}

// Defaults.
const (
	DefaultChunkTokens = 800
	defaultOverlapPct  = 15
)

func (o Options) withDefaults() Options {
	if o.ChunkTokens <= 0 {
		o.ChunkTokens = DefaultChunkTokens
	}
	switch {
	case o.Overlap == 0:
		o.Overlap = o.ChunkTokens * defaultOverlapPct / 100
	case o.Overlap < 0:
		o.Overlap = 0
	case o.Overlap > o.ChunkTokens/2:
		o.Overlap = o.ChunkTokens / 2
	}
	return o
}

// Chunk is one retrieval unit.
type Chunk struct {
	// Ordinal is the chunk's position in the document, from 0.
	Ordinal int
	// Heading is the heading path of the chunk's section, "Title > A > B", or "".
	Heading string
	// Text is the chunk: its overlap, then its own text. It never spans two
	// sections, and a heading line is in Heading, not in Text.
	Text string
	// Tokens is tokens.Estimate(Text): at most ChunkTokens + Overlap.
	Tokens int
	// OverlapBytes is the length of the prefix of Text that repeats the end of the
	// previous chunk; Text[OverlapBytes:] is the chunk's own text.
	OverlapBytes int
}

// Split cuts doc into chunks. Consecutive sections (the text under a heading) that
// fit in opts.ChunkTokens together are one chunk, which is the document's text from
// the first section's to the last one's, the later sections' heading lines included;
// its heading path is what the sections' paths have in common (the first section's
// heading line starts the text when its path is longer, after its parents' headings
// below the common path, written as Markdown heading lines when the document has no
// text of theirs). A section too long for one
// chunk is cut alone: by paragraphs packed up to opts.ChunkTokens, with a paragraph
// over the target cut at sentence ends, then line ends, then commas, then anywhere (at
// a rune, preferably between words). A Markdown code fence is one paragraph, cut only
// at line ends when over the target. Each chunk after the first of a long section
// starts with the end of the previous one (opts.Overlap), taken from a sentence start
// when one is near enough, else from a word or rune.
//
// Small sections are joined because a chunk of a few words under its own heading is
// a poor retrieval unit: scored alone it either wins on one shared word or never
// holds enough of an answer to be worth citing.
func Split(doc Document, opts Options) []Chunk {
	opts = opts.withDefaults()
	text := doc.Text
	var (
		chunks []Chunk
		units  []unit
		group  sectionGroup // whole sections waiting to be one chunk
	)
	flush := func() {
		if c, ok := group.chunk(text, len(chunks)); ok {
			chunks = append(chunks, c)
		}
		group = sectionGroup{}
	}
	for _, sec := range sections(doc) {
		if tokens.Estimate(text[sec.start():sec.end()]) <= opts.ChunkTokens {
			if !group.add(text, sec, opts.ChunkTokens) {
				flush()
				group.add(text, sec, opts.ChunkTokens)
			}
			continue
		}
		flush()
		units = units[:0]
		for _, bl := range sec.blocks {
			cutters := proseCutters
			if bl.code {
				cutters = codeCutters
			}
			units = refine(units, text, bl.start, bl.end, opts.ChunkTokens, cutters)
		}
		prevStart := -1
		for i := 0; i < len(units); {
			start, sum := units[i].start, units[i].tokens
			j := i + 1
			for ; j < len(units); j++ {
				n := sum + tokens.Estimate(text[units[j-1].end:units[j].start]) + units[j].tokens
				if n > opts.ChunkTokens {
					break
				}
				sum = n
			}
			end := units[j-1].end
			from := start
			if prevStart >= 0 && opts.Overlap > 0 {
				from = overlapStart(text, prevStart, start, opts.Overlap)
			}
			t := text[from:end]
			chunks = append(chunks, Chunk{
				Ordinal:      len(chunks),
				Heading:      sec.heading,
				Text:         t,
				Tokens:       tokens.Estimate(t),
				OverlapBytes: start - from,
			})
			prevStart, i = start, j
		}
	}
	flush()
	return chunks
}

// A sectionGroup is consecutive whole sections that make one chunk.
type sectionGroup struct {
	first  section
	common []string // the heading path elements the sections share
	end    int
	n      int // sections
}

// from is where the group's text starts: the first section's heading line when its
// path says more than the common one.
func (g *sectionGroup) from() int {
	if len(g.first.path) > len(g.common) {
		return g.first.headStart
	}
	return g.first.start()
}

// add adds sec to the group if the group's text with it fits in limit tokens (a
// section that fits alone always fits an empty group).
func (g *sectionGroup) add(text string, sec section, limit int) bool {
	if g.n == 0 {
		*g = sectionGroup{first: sec, common: sec.path, end: sec.end(), n: 1}
		return true
	}
	k := 0
	for k < len(g.common) && k < len(sec.path) && g.common[k] == sec.path[k] {
		k++
	}
	next := *g
	next.common, next.end, next.n = g.common[:k], sec.end(), g.n+1
	if tokens.Estimate(next.text(text)) > limit {
		return false
	}
	*g = next
	return true
}

// text is the group's text: the document's from the group's start to its end. The
// first section's headings between the common path and its own (sections of
// headings only, which make no chunk) head it as Markdown heading lines, so that
// their words are the chunk's.
func (g *sectionGroup) text(text string) string {
	t := text[g.from():g.end]
	if k := len(g.common); k < len(g.first.path)-1 {
		var b strings.Builder
		for i := k; i < len(g.first.path)-1; i++ {
			if lv := g.first.levels[i]; lv > 0 {
				b.WriteString(strings.Repeat("#", lv) + " " + g.first.path[i] + "\n")
			}
		}
		t = b.String() + t
	}
	return t
}

// chunk is the group's chunk, numbered ordinal; false for an empty group.
func (g *sectionGroup) chunk(text string, ordinal int) (Chunk, bool) {
	if g.n == 0 {
		return Chunk{}, false
	}
	t := g.text(text)
	return Chunk{Ordinal: ordinal, Heading: strings.Join(g.common, headingSep), Text: t, Tokens: tokens.Estimate(t)}, true
}

// overlapStart returns where the overlap of a chunk starting at start begins, the
// previous chunk starting at prev: the earliest sentence or line start in
// [prev, start) that keeps the overlap within limit tokens; failing that, the
// earliest clause start (after a comma); failing that, the earliest rune, moved
// forward out of a word; start when nothing fits.
func overlapStart(text string, prev, start, limit int) int {
	// An estimated token covers at most 4 bytes (one rune, or 3 ASCII bytes): no
	// overlap within limit tokens is longer than 4*limit bytes.
	lo := max(prev, start-4*limit-4)
	for lo < start && !utf8.RuneStart(text[lo]) {
		lo++
	}
	// Sentence and line starts first, then clause starts: the earliest that fits is
	// the longest overlap (cuts increase).
	if lo == prev && tokens.Estimate(text[prev:start]) <= limit {
		return prev
	}
	for _, tier := range [][]cutter{{sentenceCuts, lineCuts}, {clauseCuts}} {
		best := start
		for _, cut := range tier {
			for _, c := range cut(text, lo, start) {
				if c < best && tokens.Estimate(text[c:start]) <= limit {
					best = c
					break
				}
			}
		}
		if best < start {
			return best
		}
	}
	// No sentence fits: the longest suffix within limit, from a rune, out of a word.
	l, h := lo, start
	for l < h {
		mid := int(uint(l+h) >> 1)
		if tokens.Estimate(text[mid:start]) <= limit {
			h = mid
		} else {
			l = mid + 1
		}
	}
	c := l
	for c < start && !utf8.RuneStart(text[c]) {
		c++
	}
	if inWord(text, c) {
		for c < start && !isSpaceByte(text[c]) {
			c++
		}
	}
	return skipSpace(text, c, start)
}
