package rag

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/ragway/ragway/gateway/tokens"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Chunks are sized in estimated tokens (EstimateTokens), but an embedding model takes
// at most so many of its own tokens per input, and its tokenizer may count several
// times the estimate. Before embedding, the Indexer asks the model to count each
// chunk (with its heading, as embedded) and splits a chunk over the limit with
// Resplit, by the same rules as Split, until every piece fits.

// fitMargin is the share of the limit a piece is sized for: a tokenizer's tokens per
// estimated token vary within a text.
const fitMargin = 0.9

// fitRounds bounds how often a piece that still does not fit is split again.
const fitRounds = 4

// embedText is what is embedded (and made findable) for a chunk: its heading, then
// its text.
func embedText(c Chunk) string { return c.Heading + "\n" + c.Text }

// Resplit cuts chunk c into pieces of at most target estimated tokens each, overlap
// included, by Split's rules: at sentence ends, then line ends, then clauses, then
// anywhere (preferably between words). Each piece keeps c's heading; the first
// starts with (the end of) c's own overlap, each later one with the end of the piece
// before, within overlap tokens (capped at target/2; <= 0: none). The pieces are
// about the same size (no short remainder) when that takes no more of them. Their
// own texts, in order, are c's own text up to white space. Ordinals are left for the
// caller to number.
func Resplit(c Chunk, target, overlap int) []Chunk {
	target = max(target, 1)
	overlap = min(max(overlap, 0), target/2)
	pieces := pack(c, target, overlap)
	if len(pieces) < 2 {
		return pieces
	}
	// As many pieces, evened out: the own text shared equally, plus the overlap.
	own := tokens.Estimate(c.Text[c.OverlapBytes:])
	even := min(target, (own+len(pieces)-1)/len(pieces)+overlap+overlap/2+1)
	if p := pack(c, even, overlap); len(p) == len(pieces) {
		return p
	}
	return pieces
}

// pack is Resplit with pieces packed greedily up to target.
func pack(c Chunk, target, overlap int) []Chunk {
	text := c.Text
	units := refine(nil, text, c.OverlapBytes, len(text), max(target-overlap, 1), proseCutters)
	var out []Chunk
	prevStart := -1
	for i := 0; i < len(units); {
		start := units[i].start
		from := start
		switch {
		case overlap == 0:
		case prevStart >= 0:
			from = overlapStart(text, prevStart, start, overlap)
		case c.OverlapBytes > 0:
			from = overlapStart(text, 0, start, overlap)
		}
		j := i + 1
		for ; j < len(units) && tokens.Estimate(text[from:units[j].end]) <= target; j++ {
		}
		t := text[from:units[j-1].end]
		out = append(out, Chunk{Heading: c.Heading, Text: t, Tokens: tokens.Estimate(t), OverlapBytes: start - from})
		prevStart, i = start, j
	}
	return out
}

// fitTarget is the size, in estimated tokens, of the pieces of chunk c (whose
// embedded text counted n tokens of the model) that fit limit tokens of the model
// with their heading: the limit converted at c's own ratio of model tokens to
// estimated ones, with a margin.
func fitTarget(c Chunk, n, limit int) int {
	ratio := float64(n) / float64(max(tokens.Estimate(embedText(c)), 1))
	return int(float64(limit)/ratio*fitMargin) - tokens.Estimate(c.Heading+"\n")
}

// fit makes every chunk fit the embedding model's limit per input: it counts the
// chunks' tokens with the model and splits those over the limit (Resplit), counting
// the pieces again, for up to fitRounds rounds. It returns the chunks, numbered
// again, and whether the embedding must truncate: when the model cannot count
// (sdk.ErrUnsupported) or does not say its limit, or when a piece still does not
// fit (a heading alone over the limit), the embedding cuts what is over the limit
// instead (logged, without the text).
func (x *Indexer) fit(ctx context.Context, chunks []Chunk, opts Options) ([]Chunk, bool, error) {
	o := opts.withDefaults()
	pending := make([]bool, len(chunks)) // to be counted
	for i := range pending {
		pending[i] = true
	}
	truncate := false
	for round := 0; ; round++ {
		var idx []int
		var texts []string
		for i, c := range chunks {
			if pending[i] {
				idx = append(idx, i)
				texts = append(texts, embedText(c))
			}
		}
		if len(idx) == 0 {
			return renumber(chunks), truncate, nil
		}
		counts, limit, err := x.Embedding.Tokenize(ctx, texts)
		if errors.Is(err, sdk.ErrUnsupported) || err == nil && limit <= 0 {
			if x.warnedTruncate.CompareAndSwap(false, true) {
				x.logger().Warn("the embedding model cannot count tokens or does not say its limit: chunks over its limit are truncated for embedding", "error", err)
			}
			return renumber(chunks), true, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("count the chunks' tokens: %w", err)
		}
		over := map[int]int{} // chunk index: its count, over the limit
		for k, i := range idx {
			pending[i] = false
			if counts[k] > limit {
				over[i] = counts[k]
			}
		}
		if len(over) == 0 {
			return renumber(chunks), truncate, nil
		}
		if round == fitRounds {
			x.logger().Warn("chunks still over the embedding model's limit after splitting them: truncated for embedding", "chunks", len(over), "limit", limit)
			return renumber(chunks), true, nil
		}
		next, nextPending := make([]Chunk, 0, len(chunks)+len(over)), make([]bool, 0, len(chunks)+len(over))
		for i, c := range chunks {
			n, ok := over[i]
			if !ok {
				next, nextPending = append(next, c), append(nextPending, pending[i])
				continue
			}
			target := fitTarget(c, n, limit)
			var pieces []Chunk
			if target >= 1 {
				pieces = Resplit(c, target, o.Overlap*target/(o.ChunkTokens+o.Overlap))
			}
			if len(pieces) == 0 || len(pieces) == 1 && pieces[0].Text == c.Text {
				// Nothing smaller to make (a heading that leaves no room):
				// the embedding cuts it.
				x.logger().Warn("a chunk cannot be split to fit the embedding model's limit: truncated for embedding", "tokens", n, "limit", limit)
				truncate = true
				next, nextPending = append(next, c), append(nextPending, false)
				continue
			}
			for _, p := range pieces {
				next, nextPending = append(next, p), append(nextPending, true)
			}
		}
		// A piece's overlap may reach back past the piece before it (when the
		// chunk before was split too): it is shortened to the piece before.
		for i := 1; i < len(next); i++ {
			if t, ok := trimOverlap(next[i], next[i-1]); ok {
				next[i], nextPending[i] = t, true
			}
		}
		chunks, pending = next, nextPending
	}
}

// trimOverlap shortens c's overlap when it reaches back past the own text of prev,
// the chunk before it in the same section, to start within that text (at a sentence,
// line or clause start when one is there), as Split's overlaps do. It reports
// whether it changed c.
func trimOverlap(c, prev Chunk) (Chunk, bool) {
	if c.OverlapBytes == 0 || c.Heading != prev.Heading {
		return c, false
	}
	prevOwn := strings.TrimSpace(prev.Text[prev.OverlapBytes:])
	end := len(strings.TrimRight(c.Text[:c.OverlapBytes], " \n\t"))
	lo := end - len(prevOwn)
	if lo <= 0 || c.Text[lo:end] != prevOwn {
		return c, false // within prev already (or not prev's end: left as it is)
	}
	from := overlapStart(c.Text, lo, c.OverlapBytes, tokens.Estimate(c.Text[:c.OverlapBytes]))
	c.Text, c.OverlapBytes = c.Text[from:], c.OverlapBytes-from
	c.Tokens = tokens.Estimate(c.Text)
	return c, true
}

func renumber(chunks []Chunk) []Chunk {
	for i := range chunks {
		chunks[i].Ordinal = i
	}
	return chunks
}

func (x *Indexer) logger() *slog.Logger {
	if x.Logger != nil {
		return x.Logger
	}
	return slog.Default()
}
