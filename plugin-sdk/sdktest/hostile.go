package sdktest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// hugeInput is an input of 1 MiB of words: far beyond any model's context.
var hugeInput = func() string {
	const sentence = "the lighthouse keeper found a bottle on the shore. "
	s := strings.Repeat(sentence, (1<<20)/len(sentence)+1)
	return s[:1<<20]
}()

// hostileTexts are inputs no plugin may die on, by name: NUL bytes,
// invalid UTF-8 (which the host refuses before it reaches the plugin),
// empty and whitespace-only text, and 1 MiB.
var hostileTexts = []struct{ name, text string }{
	{"a trailing NUL", "x\x00"},
	{"only NUL", "\x00"},
	{"NULs between words", "a\x00b\x00\x00c"},
	{"an invalid byte", "ok \xff\xfe"},
	{"a truncated UTF-8 sequence", "caf\xc3"},
	{"an encoded surrogate", "\xed\xa0\x80"},
	{"empty text", ""},
	{"whitespace only", " \t\n  "},
	{"1 MiB of text", hugeInput},
}

// hostileCall is one request of checkHostileInputs.
type hostileCall struct {
	name string
	call func(context.Context) error
}

// hostileCalls returns the requests checkHostileInputs sends: for a
// generation model every hostile text as a raw prompt, as the user message
// and as the system message before a normal one; for an embedding model each
// as an input alone and after a normal one, plus an empty and a 100-input
// batch; Tokenize gets the embedding batches too when the plugin declares
// the capability.
func (h *harness) hostileCalls(p *sdk.Plugin, info sdk.Info) []hostileCall {
	var calls []hostileCall
	s := greedy()
	s.MaxTokens = 4
	gen := func(req sdk.GenerateRequest) func(context.Context) error {
		req.Sampling, req.RequestID = s, "sdktest-hostile"
		return func(ctx context.Context) error {
			return p.Generate(ctx, req, func(sdk.Event) error { return nil })
		}
	}
	type batch struct {
		name  string
		input []string
	}
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprintf("input number %d of a large batch", i)
	}
	batches := []batch{{"no inputs", []string{}}, {"100 inputs", many}}
	for _, t := range hostileTexts {
		if !h.cfg.Embedding {
			calls = append(calls,
				hostileCall{"Generate with a prompt of " + t.name, gen(sdk.GenerateRequest{Prompt: t.text})},
				hostileCall{"Generate with a user message of " + t.name, gen(sdk.GenerateRequest{Messages: []sdk.Message{{Role: "user", Content: t.text}}})},
				hostileCall{"Generate with a system message of " + t.name, gen(sdk.GenerateRequest{Messages: []sdk.Message{
					{Role: "system", Content: t.text}, {Role: "user", Content: "hello"}}})},
			)
		}
		batches = append(batches,
			batch{"an input of " + t.name, []string{t.text}},
			batch{"a normal input, then one of " + t.name, []string{"hello there", t.text}})
	}
	for _, b := range batches {
		if h.cfg.Embedding {
			calls = append(calls, hostileCall{"Embed of " + b.name, func(ctx context.Context) error {
				_, err := p.Embed(ctx, sdk.EmbedRequest{Input: b.input})
				return err
			}})
		}
		if info.Has(sdk.CapabilityTokenize) {
			calls = append(calls, hostileCall{"Tokenize of " + b.name, func(ctx context.Context) error {
				_, err := p.Tokenize(ctx, sdk.TokenizeRequest{Input: b.input})
				return err
			}})
		}
	}
	return calls
}

// checkHostileInputs: NUL bytes, invalid UTF-8, empty and whitespace-only
// text and 1 MiB of text (far beyond any context), in the raw prompt and in
// messages (in Embed's inputs for an embedding model, and in Tokenize's
// when the plugin declares the capability), each either succeed or fail
// with sdk.ErrInvalidRequest, promptly; the plugin process survives all of
// them, and a normal request then succeeds on the same process.
func checkHostileInputs(ctx context.Context, h *harness) error {
	p, _, err := h.loaded(ctx)
	if err != nil {
		return err
	}
	info, err := p.Info(ctx)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	pid := p.Pid()
	for _, c := range h.hostileCalls(p, info) {
		err := c.call(ctx)
		switch {
		case p.Exited():
			return fmt.Errorf("the plugin process died on %s: %v", c.name, p.ExitError())
		case ctx.Err() != nil:
			return fmt.Errorf("%s did not return: %w", c.name, context.Cause(ctx))
		case err != nil && !sdk.IsInvalidRequest(err):
			return fmt.Errorf("%s = %v, want success or sdk.ErrInvalidRequest", c.name, err)
		}
	}
	if h.cfg.Embedding {
		if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"hello"}}); err != nil {
			return fmt.Errorf("a normal embedding after the hostile inputs: %w", err)
		}
	} else if _, err := generate(ctx, p, h.request(greedy())); err != nil {
		return fmt.Errorf("a normal generation after the hostile inputs: %w", err)
	}
	if p.Exited() || p.Pid() != pid {
		return fmt.Errorf("the plugin process %d did not survive the hostile inputs: %v", pid, p.ExitError())
	}
	return nil
}

// tokenizeSentence is the text checkTokenize repeats to build long inputs.
const tokenizeSentence = "The quick brown fox jumps over the lazy dog. "

// checkTokenize: a plugin declaring sdk.CapabilityTokenize gives one count
// per input, in order, positive for non-empty text, the same twice, and
// more for a longer text. For an embedding model that reports
// ModelInfo.MaxInputTokens, the limit is exact: an input that counts at
// most the limit embeds, one that counts more is refused by Embed with
// sdk.ErrInvalidRequest and embedded with EmbedRequest.Truncate. A plugin
// without the capability answers sdk.ErrUnsupported.
func checkTokenize(ctx context.Context, h *harness) error {
	p, mi, err := h.loaded(ctx)
	if err != nil {
		return err
	}
	info, err := p.Info(ctx)
	if err != nil {
		return fmt.Errorf("info: %w", err)
	}
	if !info.Has(sdk.CapabilityTokenize) {
		if _, err := p.Tokenize(ctx, sdk.TokenizeRequest{Input: []string{"hello"}}); !sdk.IsUnsupported(err) {
			return fmt.Errorf("tokenize on a plugin without the tokenize capability = %v, want sdk.ErrUnsupported", err)
		}
		return nil
	}
	count := func(in ...string) ([]int, error) {
		r, err := p.Tokenize(ctx, sdk.TokenizeRequest{Input: in})
		if err != nil {
			return nil, fmt.Errorf("tokenize: %w", err)
		}
		if len(r.Counts) != len(in) {
			return nil, fmt.Errorf("tokenize of %d inputs returned %d counts", len(in), len(r.Counts))
		}
		return r.Counts, nil
	}
	inputs := []string{"hello", strings.TrimSpace(tokenizeSentence), strings.Repeat(tokenizeSentence, 4)}
	a, err := count(inputs...)
	if err != nil {
		return err
	}
	for i, n := range a {
		if n <= 0 {
			return fmt.Errorf("tokenize counts %d tokens in %q, want > 0", n, inputs[i])
		}
	}
	if a[2] <= a[1] {
		return fmt.Errorf("tokenize counts %d tokens in a sentence and %d in four of them", a[1], a[2])
	}
	b, err := count(inputs...)
	if err != nil {
		return err
	}
	if !slices.Equal(a, b) {
		return fmt.Errorf("two identical tokenize requests counted %v and %v", a, b)
	}
	if one, err := count(inputs[1]); err != nil || one[0] != a[1] {
		return fmt.Errorf("the count of an input differs alone (%v, %v) and in a batch (%d)", one, err, a[1])
	}
	if none, err := count(); err != nil || len(none) != 0 {
		return fmt.Errorf("tokenize of no inputs = %v, %v; want no counts", none, err)
	}
	if !h.cfg.Embedding {
		return nil
	}
	limit := mi.MaxInputTokens
	if limit <= 0 {
		return skipf("the tokenizer works; the embedding limit is not checked: Load reported no MaxInputTokens")
	}
	return checkInputLimit(ctx, p, limit, func(reps int) (int, error) {
		n, err := count(strings.Repeat(tokenizeSentence, reps))
		if err != nil {
			return 0, err
		}
		return n[0], nil
	})
}

// checkInputLimit finds the most repetitions of tokenizeSentence that
// count at most limit tokens and checks Embed at that boundary.
func checkInputLimit(ctx context.Context, p *sdk.Plugin, limit int, count func(reps int) (int, error)) error {
	// Grow until over the limit, then bisect: lo fits, hi does not.
	lo, hi := 0, 1
	for {
		n, err := count(hi)
		if err != nil {
			return err
		}
		if n > limit {
			break
		}
		if hi > 1<<20 {
			return fmt.Errorf("%d repetitions of a sentence still count %d tokens, not more than MaxInputTokens %d", hi, n, limit)
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		n, err := count(mid)
		if err != nil {
			return err
		}
		if n > limit {
			hi = mid
		} else {
			lo = mid
		}
	}
	long := strings.Repeat(tokenizeSentence, hi)
	if lo > 0 {
		fits := strings.Repeat(tokenizeSentence, lo)
		if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{fits}}); err != nil {
			n, _ := count(lo)
			return fmt.Errorf("embed of an input of %d tokens (MaxInputTokens %d) = %w", n, limit, err)
		}
	}
	n, _ := count(hi)
	if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{long}}); !sdk.IsInvalidRequest(err) {
		return fmt.Errorf("embed of an input of %d tokens (MaxInputTokens %d) without Truncate = %v, want sdk.ErrInvalidRequest", n, limit, err)
	}
	r, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"hello", long}, Truncate: true})
	switch {
	case err != nil:
		return fmt.Errorf("embed of an input of %d tokens (MaxInputTokens %d) with Truncate = %w", n, limit, err)
	case len(r.Embeddings) != 2 || len(r.Embeddings[1]) == 0 || len(r.Embeddings[1]) != len(r.Embeddings[0]):
		return errors.New("embed with Truncate did not return one vector of the model's size per input")
	}
	return nil
}
