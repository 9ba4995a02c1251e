package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hybridgroup/yzma/pkg/llama"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// genRequest is one generation handed to the engine. The engine sends its
// events on events and closes it when the generation ends; err is set
// before the close when it failed.
type genRequest struct {
	ctx      context.Context
	tokens   []llama.Token
	sampling sdk.Sampling
	// grammar, when not "", constrains the output (GBNF, root rule "root").
	grammar string
	// special: control tokens are written as their text (a grammar, or a tool
	// call's syntax, may consist of them: Qwen's <tool_call>, Mistral's
	// [TOOL_CALLS]), not left out.
	special bool
	// lazy, when set, may put the rest of the answer under a grammar once it is known
	// to be calls of tools (see lazyCalls); engaged is set, before the text that
	// decided it is sent, when it did.
	lazy    *lazyCalls
	engaged atomic.Bool
	events  chan sdk.Event
	err     error

	// loop-owned: events not yet taken by a slow reader (consecutive deltas
	// merged into one), and whether the final event is among them.
	backlog []sdk.Event
	ended   bool
}

// engine owns a llama context with `parallel` sequence slots and runs the
// continuous batching loop: every step decodes one token for each
// generating sequence plus as much pending prompt as the batch has room
// for, so new requests join between steps. Only the loop goroutine touches
// llama state.
type engine struct {
	model   llama.Model
	lctx    llama.Context
	vocab   llama.Vocab
	mem     llama.Memory
	batch   llama.Batch
	nVocab  int
	nBatch  int
	nCtxSeq int
	eog     []llama.Token // the vocabulary's end-of-generation tokens
	utf8    *utf8Tokens   // made when a grammar is first in play (loop-owned)

	submit chan *genRequest

	// loop-owned
	slots    []*slot
	queue    []*genRequest
	draining []*genRequest // ended, their final event still waiting for the reader

	// load for Health, published by the loop after every change so that
	// Health never waits for a long decode step
	running, waiting atomic.Int32
}

type engineStats struct{ running, waiting, slots int }

// slot is one sequence of the context.
type slot struct {
	seq     llama.SeqId
	req     *genRequest
	cache   []llama.Token // tokens whose KV is in this sequence's cells, at positions 0..len-1
	prompt  []llama.Token // prompt tokens still to evaluate
	sampler llama.Sampler
	noEOG   llama.Sampler // the same chain forbidding end-of-generation tokens (ignore_eos, min_tokens); 0 if unused
	next    llama.Token   // sampled, to be fed at the next step
	hasNext bool
	outIdx  int32 // batch index whose logits this slot samples; -1 none
	stop    *sdk.StopBuffer
	bytes   []byte // detokenized bytes not yet emitted (incomplete UTF-8)
	usage   sdk.Usage
	told    bool               // the prompt's usage went out with the first text
	pending int                // tokens sampled since the last emitted text
	lps     []sdk.TokenLogprob // logprobs of those tokens
	// answer is the text so far while the request's lazy grammar is undecided
	// (thought: how much of it is a <think> block known to be still open).
	answer  strings.Builder
	thought int
	decided bool
}

// maxLazyAnswer bounds the text held to decide a lazy grammar: a longer <think>
// block decodes the answer freely.
const maxLazyAnswer = 1 << 20

func newEngine(model llama.Model, lctx llama.Context, parallel, nBatch int) *engine {
	e := &engine{
		model:   model,
		lctx:    lctx,
		vocab:   llama.ModelGetVocab(model),
		nBatch:  nBatch,
		nCtxSeq: int(llama.NCtxSeq(lctx)),
		submit:  make(chan *genRequest),
	}
	e.nVocab = int(llama.VocabNTokens(e.vocab))
	for t := range llama.Token(e.nVocab) {
		if llama.VocabIsEOG(e.vocab, t) {
			e.eog = append(e.eog, t)
		}
	}
	e.mem, _ = llama.GetMemory(lctx)
	e.batch = llama.BatchInit(int32(nBatch), 0, 1)
	for i := range parallel {
		e.slots = append(e.slots, &slot{seq: llama.SeqId(i), outIdx: -1})
	}
	go e.run()
	return e
}

// generate submits a request; the caller reads r.events until closed.
func (e *engine) generate(r *genRequest) error {
	select {
	case e.submit <- r:
		return nil
	case <-r.ctx.Done():
		return r.ctx.Err()
	}
}

func (e *engine) health() engineStats {
	return engineStats{running: int(e.running.Load()), waiting: int(e.waiting.Load()), slots: len(e.slots)}
}

// run is the batching loop; it lives as long as the plugin process.
func (e *engine) run() {
	for {
		// Block only when there is nothing to do.
		if e.idle() {
			if len(e.draining) == 0 {
				e.queue = append(e.queue, <-e.submit)
			} else {
				// A slow reader still has events to take: wait briefly.
				select {
				case r := <-e.submit:
					e.queue = append(e.queue, r)
				case <-time.After(time.Millisecond):
				}
			}
		}
		for more := true; more; {
			select {
			case r := <-e.submit:
				e.queue = append(e.queue, r)
			default:
				more = false
			}
		}
		e.flushAll()
		e.dropCancelled()
		e.assign()
		e.publish()
		if !e.idle() {
			e.step()
		}
		e.publish()
	}
}

func (e *engine) idle() bool {
	if len(e.queue) > 0 {
		return false
	}
	for _, s := range e.slots {
		if s.req != nil {
			return false
		}
	}
	return true
}

// publish makes the current load visible to health.
func (e *engine) publish() {
	running := 0
	for _, s := range e.slots {
		if s.req != nil {
			running++
		}
	}
	e.running.Store(int32(running))
	e.waiting.Store(int32(len(e.queue)))
}

// dropCancelled ends queued and running requests whose caller is gone.
func (e *engine) dropCancelled() {
	q := e.queue[:0]
	for _, r := range e.queue {
		if r.ctx.Err() != nil {
			r.err = r.ctx.Err()
			close(r.events)
			continue
		}
		q = append(q, r)
	}
	e.queue = q
	for _, s := range e.slots {
		if s.req != nil && s.req.ctx.Err() != nil {
			e.fail(s, s.req.ctx.Err())
		}
	}
}

// assign moves queued requests into free slots, choosing the slot whose
// cached tokens share the longest prefix with the prompt.
func (e *engine) assign() {
	for len(e.queue) > 0 {
		r := e.queue[0]
		var best *slot
		bestLen := -1
		for _, s := range e.slots {
			if s.req != nil {
				continue
			}
			if n := commonPrefix(s.cache, r.tokens); n > bestLen {
				best, bestLen = s, n
			}
		}
		if best == nil {
			return
		}
		e.queue = e.queue[1:]
		e.start(best, r, bestLen)
	}
}

func commonPrefix(a, b []llama.Token) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

func (e *engine) start(s *slot, r *genRequest, reuse int) {
	// At least one prompt token must be evaluated to get logits.
	reuse = min(reuse, len(r.tokens)-1)
	// With a sliding-window cache the oldest cells may be gone although the
	// positions are still listed: reuse only a cache that starts at 0.
	if pmin, err := llama.MemorySeqPosMin(e.mem, s.seq); err != nil || pmin > 0 {
		reuse = 0
	}
	if ok, _ := llama.MemorySeqRm(e.mem, s.seq, llama.Pos(reuse), -1); !ok {
		_, _ = llama.MemorySeqRm(e.mem, s.seq, -1, -1)
		reuse = 0
	}
	*s = slot{
		seq:     s.seq,
		req:     r,
		cache:   s.cache[:reuse],
		prompt:  r.tokens[reuse:],
		sampler: newSampler(e.model, r.sampling, nil, r.grammar),
		outIdx:  -1,
		stop:    sdk.NewStopBuffer(r.sampling.Stop),
		usage:   sdk.Usage{PromptTokens: len(r.tokens), CachedTokens: reuse},
	}
	if r.sampling.IgnoreEOS || r.sampling.MinTokens > 0 {
		s.noEOG = newSampler(e.model, r.sampling, e.eog, "")
	}
}

// step builds one batch (a token for every generating slot, then pending
// prompt tokens), decodes it and samples.
func (e *engine) step() {
	_ = e.batch.Clear()
	budget := e.nBatch
	for _, s := range e.slots {
		s.outIdx = -1
		if s.req == nil || !s.hasNext || budget == 0 {
			continue
		}
		s.outIdx = e.batch.NTokens
		_ = e.batch.Add(s.next, llama.Pos(len(s.cache)), []llama.SeqId{s.seq}, true)
		s.cache = append(s.cache, s.next)
		s.hasNext = false
		budget--
	}
	for _, s := range e.slots {
		if s.req == nil || len(s.prompt) == 0 || budget == 0 {
			continue
		}
		n := min(len(s.prompt), budget)
		for i, tok := range s.prompt[:n] {
			last := i == n-1 && n == len(s.prompt)
			if last {
				s.outIdx = e.batch.NTokens
			}
			_ = e.batch.Add(tok, llama.Pos(len(s.cache)), []llama.SeqId{s.seq}, last)
			s.cache = append(s.cache, tok)
		}
		s.prompt = s.prompt[n:]
		budget -= n
	}
	if e.batch.NTokens == 0 {
		return
	}
	if ret, err := llama.Decode(e.lctx, e.batch); err != nil || ret != 0 {
		err = fmt.Errorf("llama decode failed (status %d): %v", ret, err)
		for _, s := range e.slots {
			if s.req != nil {
				_, _ = llama.MemorySeqRm(e.mem, s.seq, -1, -1)
				s.cache = s.cache[:0]
				e.fail(s, err)
			}
		}
		return
	}
	for _, s := range e.slots {
		if s.req != nil && s.outIdx >= 0 {
			e.sample(s)
		}
	}
}

// sample draws the slot's next token and emits what it completes.
func (e *engine) sample(s *slot) {
	var logits []float32
	if s.req.sampling.Logprobs {
		logits, _ = llama.GetLogitsIth(e.lctx, s.outIdx, e.nVocab)
	}
	smpl := s.sampler
	if smpl == 0 {
		e.fail(s, errors.New("the request's sampler could not be made"))
		return
	}
	if s.noEOG != 0 && (s.req.sampling.IgnoreEOS || s.usage.CompletionTokens < s.req.sampling.MinTokens) {
		smpl = s.noEOG
	}
	var tok llama.Token
	if s.req.grammar != "" || s.req.engaged.Load() {
		var ok bool
		if tok, ok = e.sampleUTF8(s, smpl); !ok {
			e.fail(s, errors.New("no token continues the answer as its grammar allows"))
			return
		}
	} else {
		tok = llama.SamplerSample(smpl, e.lctx, s.outIdx)
	}
	if llama.VocabIsEOG(e.vocab, tok) || slices.Contains(s.req.sampling.StopTokenIDs, int32(tok)) {
		e.finish(s, sdk.FinishStop, "", true)
		return
	}
	if logits != nil {
		s.lps = append(s.lps, e.logprob(logits, tok, s.req.sampling.TopLogprobs))
	}
	s.usage.CompletionTokens++
	s.pending++
	s.bytes = append(s.bytes, e.pieceOf(tok, s.req.special)...)
	text, rest := splitUTF8(s.bytes)
	s.bytes = append(s.bytes[:0], rest...)
	if s.req.lazy != nil && !s.decided {
		e.decideLazy(s, text)
	}
	out, stopped := s.stop.Push(text)
	switch {
	case stopped:
		e.finish(s, sdk.FinishStop, out, false)
	case s.req.sampling.MaxTokens > 0 && s.usage.CompletionTokens >= s.req.sampling.MaxTokens,
		len(s.cache)+1 >= e.nCtxSeq: // prompt + completion never exceed the context

		e.finish(s, sdk.FinishLength, out, true)
	default:
		e.emit(s, out)
		s.next, s.hasNext = tok, true
	}
}

// decideLazy adds text to the answer of a slot whose grammar waits to be engaged,
// and engages it (a new sampler chain, with the grammar of the rest) or gives up as
// the answer says.
func (e *engine) decideLazy(s *slot, text string) {
	s.answer.WriteString(text)
	answer := s.answer.String()
	if stillThinking(answer, &s.thought) {
		if len(answer) > maxLazyAnswer {
			s.decided, s.answer = true, strings.Builder{}
		}
		return
	}
	what, grammar := s.req.lazy.decide(answer)
	switch what {
	case lazyWait:
		return
	case lazyEngage:
		// (Bytes of a character still incomplete would be text the grammar did not
		// see: the answer is decoded freely then.)
		if len(s.bytes) > 0 {
			break
		}
		if smpl := newSampler(e.model, s.req.sampling, nil, grammar); smpl != 0 {
			llama.SamplerFree(s.sampler)
			s.sampler = smpl
			s.req.engaged.Store(true)
		}
	}
	s.decided = true
	s.answer = strings.Builder{}
}

// logprob returns the log probability of tok and the top n alternatives
// under the raw distribution (before sampling transforms).
func (e *engine) logprob(logits []float32, tok llama.Token, n int) sdk.TokenLogprob {
	maxL := logits[0]
	for _, l := range logits {
		maxL = max(maxL, l)
	}
	var sum float64
	for _, l := range logits {
		sum += math.Exp(float64(l - maxL))
	}
	logZ := float64(maxL) + math.Log(sum)
	out := sdk.TokenLogprob{Token: e.piece(tok), Logprob: float64(logits[tok]) - logZ}
	if n <= 0 {
		return out
	}
	top := make([]int, 0, n+1) // token ids, best first
	for id, l := range logits {
		if len(top) == n && l <= logits[top[n-1]] {
			continue
		}
		i := len(top)
		top = append(top, id)
		for i > 0 && logits[top[i-1]] < l {
			top[i] = top[i-1]
			i--
		}
		top[i] = id
		top = top[:min(len(top), n)]
	}
	for _, id := range top {
		out.Top = append(out.Top, sdk.TopLogprob{Token: e.piece(llama.Token(id)), Logprob: float64(logits[id]) - logZ})
	}
	return out
}

func (e *engine) pieceBytes(tok llama.Token) []byte { return e.pieceOf(tok, false) }

// pieceOf is tok's text; with special, a control token's too.
func (e *engine) pieceOf(tok llama.Token, special bool) []byte {
	buf := make([]byte, 64)
	n := llama.TokenToPiece(e.vocab, tok, buf, 0, special)
	if n < 0 {
		buf = make([]byte, -n)
		n = llama.TokenToPiece(e.vocab, tok, buf, 0, special)
	}
	return buf[:max(n, 0)]
}

func (e *engine) piece(tok llama.Token) string {
	return strings.ToValidUTF8(string(e.pieceBytes(tok)), "\uFFFD")
}

// splitUTF8 returns the text of b that is complete UTF-8 (invalid bytes
// replaced) and the trailing bytes that may still become a character.
func splitUTF8(b []byte) (string, []byte) {
	cut := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				cut = i
			}
			break
		}
	}
	return strings.ToValidUTF8(string(b[:cut]), "\uFFFD"), b[cut:]
}

// emit sends text with the tokens sampled since the last emitted text.
func (e *engine) emit(s *slot, text string) {
	if text == "" {
		return
	}
	ev := sdk.Event{Text: text, Tokens: s.pending, Logprobs: s.lps}
	if !s.told {
		// The first text carries the prompt's usage (API 1.3): a generation cut
		// short still reports what its prompt cost.
		s.told = true
		ev.Usage = &sdk.Usage{PromptTokens: s.usage.PromptTokens, CachedTokens: s.usage.CachedTokens}
	}
	s.pending, s.lps = 0, nil
	e.send(s.req, ev)
}

// send queues ev for the request's reader without ever blocking the loop:
// a reader that falls behind gets its deltas merged, and the other
// sequences keep decoding.
func (e *engine) send(r *genRequest, ev sdk.Event) {
	if n := len(r.backlog); n > 0 && !r.backlog[n-1].Final() {
		last := &r.backlog[n-1]
		last.Text += ev.Text
		last.Tokens += ev.Tokens
		last.Logprobs = append(last.Logprobs, ev.Logprobs...)
		last.FinishReason = ev.FinishReason
		if ev.Usage != nil {
			last.Usage = ev.Usage
		}
	} else {
		r.backlog = append(r.backlog, ev)
	}
	e.flush(r)
}

// flush hands the backlog to the reader as far as its channel has room and
// closes the channel after the final event. It reports whether r is done.
func (e *engine) flush(r *genRequest) bool {
	if r.ctx.Err() != nil {
		r.backlog = nil
		if r.ended {
			if r.err == nil {
				r.err = r.ctx.Err()
			}
			close(r.events)
			return true
		}
		return false
	}
	for len(r.backlog) > 0 {
		select {
		case r.events <- r.backlog[0]:
			r.backlog = r.backlog[1:]
		default:
			return false
		}
	}
	if r.ended {
		close(r.events)
		return true
	}
	return false
}

// end marks r's last event queued; its channel closes once the reader has
// taken everything.
func (e *engine) end(r *genRequest) {
	r.ended = true
	if !e.flush(r) {
		e.draining = append(e.draining, r)
	}
}

// flushAll moves backlogs forward for running and ended requests.
func (e *engine) flushAll() {
	for _, s := range e.slots {
		if s.req != nil && len(s.req.backlog) > 0 {
			e.flush(s.req)
		}
	}
	d := e.draining[:0]
	for _, r := range e.draining {
		if !e.flush(r) {
			d = append(d, r)
		}
	}
	e.draining = d
}

// finish ends a slot's generation with a final event carrying text (and,
// when flush is set, whatever text was still held back). The slot's KV
// stays as a prompt cache for the next request.
func (e *engine) finish(s *slot, reason sdk.FinishReason, text string, flush bool) {
	if flush {
		out, stopped := s.stop.Push(strings.ToValidUTF8(string(s.bytes), "\uFFFD"))
		text += out
		if stopped {
			reason = sdk.FinishStop
		} else {
			text += s.stop.Flush()
		}
	}
	usage := s.usage
	e.send(s.req, sdk.Event{Text: text, Tokens: s.pending, Logprobs: s.lps, FinishReason: reason, Usage: &usage})
	e.end(s.req)
	e.release(s)
}

// fail ends a slot's generation with an error (including cancellation):
// the cells of what it generated are freed at once, its prompt stays cached.
func (e *engine) fail(s *slot, err error) {
	if keep := min(len(s.cache), len(s.req.tokens)); keep < len(s.cache) {
		if ok, _ := llama.MemorySeqRm(e.mem, s.seq, llama.Pos(keep), -1); !ok {
			_, _ = llama.MemorySeqRm(e.mem, s.seq, -1, -1)
			keep = 0
		}
		s.cache = s.cache[:keep]
	}
	s.req.err = err
	s.req.backlog = nil // the generation failed: what was not delivered is moot
	e.end(s.req)
	e.release(s)
}

func (e *engine) release(s *slot) {
	llama.SamplerFree(s.sampler)
	s.sampler = 0
	if s.noEOG != 0 {
		llama.SamplerFree(s.noEOG)
		s.noEOG = 0
	}
	s.req = nil
	s.hasNext = false
	s.prompt = nil
	s.bytes = nil
	s.lps = nil
}
