package sdktest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// The checks. Each returns nil when the plugin passes, skipf(...) when the
// check does not apply, and an error saying what is wrong otherwise.

// checkHandshake: the plugin starts, completes the go-plugin handshake and
// exits when the host closes it.
func checkHandshake(ctx context.Context, h *harness) error {
	p, err := h.launch(ctx)
	if err != nil {
		return err
	}
	if p.Pid() <= 0 || p.Exited() {
		return fmt.Errorf("after the handshake: pid %d, exited %v", p.Pid(), p.Exited())
	}
	cctx, cancel := context.WithTimeout(ctx, h.prompt)
	defer cancel()
	p.Close(cctx)
	if !p.Exited() {
		return errors.New("the process still runs after Close")
	}
	if err := p.ExitError(); err != nil && strings.Contains(err.Error(), "signal: killed") {
		return fmt.Errorf("the plugin did not exit when the host closed it and was killed: %v", err)
	}
	return nil
}

// checkInfo: Info works before and after Load and describes the plugin.
func checkInfo(ctx context.Context, h *harness) error {
	p, err := h.launch(ctx)
	if err != nil {
		return err
	}
	info, err := p.Info(ctx)
	if err != nil {
		return fmt.Errorf("info before Load: %w", err)
	}
	if err := validInfo(info, h.cfg.Embedding); err != nil {
		return fmt.Errorf("info before Load: %w", err)
	}
	if _, err := h.load(ctx, p, h.cfg.Options); err != nil {
		return fmt.Errorf("load with Config.Options: %w", err)
	}
	after, err := p.Info(ctx)
	if err != nil {
		return fmt.Errorf("info after Load: %w", err)
	}
	if err := validInfo(after, h.cfg.Embedding); err != nil {
		return fmt.Errorf("info after Load: %w", err)
	}
	if after.Name != info.Name || after.Version != info.Version || after.APIVersion != info.APIVersion {
		return fmt.Errorf("info changed with Load: %+v, then %+v", info, after)
	}
	return nil
}

func validInfo(info sdk.Info, embedding bool) error {
	switch {
	case info.Name == "":
		return errors.New("empty Name")
	case info.Version == "":
		return errors.New("empty Version")
	case info.MaxParallel < 0:
		return fmt.Errorf("negative MaxParallel %d", info.MaxParallel)
	case len(info.Capabilities) == 0:
		return errors.New("no capabilities")
	case embedding && !info.Has(sdk.CapabilityEmbedding):
		return fmt.Errorf("Config.Embedding is set but capabilities %v lack %q", info.Capabilities, sdk.CapabilityEmbedding)
	case !embedding && !info.Has(sdk.CapabilityChat) && !info.Has(sdk.CapabilityCompletion):
		return fmt.Errorf("capabilities %v have neither %q nor %q", info.Capabilities, sdk.CapabilityChat, sdk.CapabilityCompletion)
	}
	if err := sdk.CheckAPIVersion(info.APIVersion); err != nil {
		return err
	}
	return nil
}

// checkGenerateBeforeLoad: Health works before Load; Generate (Embed for an
// embedding model) answers ErrModelNotLoaded.
func checkGenerateBeforeLoad(ctx context.Context, h *harness) error {
	p, err := h.launch(ctx)
	if err != nil {
		return err
	}
	if _, err := p.Health(ctx); err != nil {
		return fmt.Errorf("health before Load: %w", err)
	}
	if h.cfg.Embedding {
		if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"hello"}}); !sdk.IsModelNotLoaded(err) {
			return fmt.Errorf("embed before Load = %v, want sdk.ErrModelNotLoaded", err)
		}
		return nil
	}
	events := 0
	err = p.Generate(ctx, h.request(greedy()), func(sdk.Event) error { events++; return nil })
	if !sdk.IsModelNotLoaded(err) {
		return fmt.Errorf("generate before Load = %v, want sdk.ErrModelNotLoaded", err)
	}
	if events > 0 {
		return fmt.Errorf("generate before Load emitted %d events", events)
	}
	return nil
}

// checkLoadErrors: Load rejects each invalid option set with
// ErrInvalidRequest naming an offending option, and the same process then
// loads Config.Options and works.
func checkLoadErrors(ctx context.Context, h *harness) error {
	p, err := h.launch(ctx)
	if err != nil {
		return err
	}
	for i, opts := range h.cfg.InvalidOptions {
		_, err := h.load(ctx, p, opts)
		switch {
		case err == nil:
			return fmt.Errorf("load accepted invalid option set %d: %v", i, opts)
		case !sdk.IsInvalidRequest(err):
			return fmt.Errorf("load of invalid option set %d (%v) = %v, want sdk.ErrInvalidRequest", i, opts, err)
		}
		if names := changedKeys(opts, h.cfg.Options); len(names) > 0 && !slices.ContainsFunc(names, func(n string) bool {
			return strings.Contains(err.Error(), n)
		}) {
			return fmt.Errorf("load error %q names none of the invalid options %v", err, names)
		}
		if p.Exited() {
			return fmt.Errorf("the plugin exited after rejecting option set %d: %v", i, p.ExitError())
		}
	}
	if _, err := h.load(ctx, p, h.cfg.Options); err != nil {
		return fmt.Errorf("load with Config.Options after rejected loads: %w", err)
	}
	if h.cfg.Embedding {
		if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"hello"}}); err != nil {
			return fmt.Errorf("after rejected loads: embed: %w", err)
		}
		return nil
	}
	s := greedy()
	s.MaxTokens = 4
	if _, err := generate(ctx, p, h.request(s)); err != nil {
		return fmt.Errorf("after rejected loads: %w", err)
	}
	return nil
}

// changedKeys lists the keys of opts that are absent from or different in
// valid, sorted.
func changedKeys(opts, valid map[string]any) []string {
	var out []string
	for k, v := range opts {
		if w, ok := valid[k]; !ok || !reflect.DeepEqual(v, w) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// generator skips a generation check for embedding plugins, else returns
// a plugin with the configured model loaded.
func (h *harness) generator(ctx context.Context) (*sdk.Plugin, error) {
	if h.cfg.Embedding {
		return nil, skipf("generation check; Config.Embedding is set")
	}
	p, _, err := h.loaded(ctx)
	return p, err
}

// checkEventOrder: a generation with default sampling keeps the event
// contract (see checkEvents).
func checkEventOrder(ctx context.Context, h *harness) error {
	p, err := h.generator(ctx)
	if err != nil {
		return err
	}
	_, err = generate(ctx, p, h.request(sdk.Sampling{}))
	return err
}

// checkGreedy: greedy decoding (temperature 0, seed 1) gives the same text
// twice.
func checkGreedy(ctx context.Context, h *harness) error {
	p, err := h.generator(ctx)
	if err != nil {
		return err
	}
	a, err := generate(ctx, p, h.request(greedy()))
	if err != nil {
		return err
	}
	if a.text == "" {
		return errors.New("greedy generation produced no text")
	}
	b, err := generate(ctx, p, h.request(greedy()))
	if err != nil {
		return err
	}
	if a.text != b.text {
		return fmt.Errorf("two greedy generations differ:\n%q\n%q", a.text, b.text)
	}
	return nil
}

// checkMaxTokens: max_tokens 3 ends a longer generation with FinishLength
// after at most 3 tokens, and the text is a prefix of the full one.
func checkMaxTokens(ctx context.Context, h *harness) error {
	p, err := h.generator(ctx)
	if err != nil {
		return err
	}
	full, err := generate(ctx, p, h.request(greedy()))
	if err != nil {
		return err
	}
	if n := full.final.Usage.CompletionTokens; n <= 3 {
		return skipf("the greedy output has only %d tokens", n)
	}
	s := greedy()
	s.MaxTokens = 3
	g, err := generate(ctx, p, h.request(s))
	if err != nil {
		return fmt.Errorf("with max_tokens 3: %w", err)
	}
	switch {
	case g.final.FinishReason != sdk.FinishLength:
		return fmt.Errorf("with max_tokens 3 (full output %d tokens): FinishReason %q, want %q", full.final.Usage.CompletionTokens, g.final.FinishReason, sdk.FinishLength)
	case g.final.Usage.CompletionTokens > 3:
		return fmt.Errorf("with max_tokens 3: Usage.CompletionTokens = %d", g.final.Usage.CompletionTokens)
	case !strings.HasPrefix(full.text, g.text):
		return fmt.Errorf("with max_tokens 3: text %q is not a prefix of the full greedy text %q", g.text, full.text)
	}
	return nil
}

// checkStopSequence: a stop sequence spanning a token boundary in the middle
// of the greedy text ends the generation right before it, with FinishStop
// and without emitting any of it; a partial match that turns out not to be
// a stop is emitted unchanged.
func checkStopSequence(ctx context.Context, h *harness) error {
	p, err := h.generator(ctx)
	if err != nil {
		return err
	}
	full, err := generate(ctx, p, h.request(greedy()))
	if err != nil {
		return err
	}
	text := full.text
	var bounds []int
	pos := 0
	for _, e := range full.events {
		pos += len(e.Text)
		if e.Text != "" && pos > 0 && pos < len(text) && utf8.RuneStart(text[pos]) {
			bounds = append(bounds, pos)
		}
	}
	if len(bounds) == 0 {
		return skipf("the greedy output %q has no token boundary inside it", text)
	}
	b := bounds[len(bounds)/2]
	from, to := b, b
	for range 3 {
		if _, n := utf8.DecodeLastRuneInString(text[:from]); n > 0 {
			from -= n
		}
		if _, n := utf8.DecodeRuneInString(text[to:]); n > 0 {
			to += n
		}
	}
	stop := text[from:to]
	want := text[:strings.Index(text, stop)]

	s := greedy()
	s.Stop = []string{stop}
	g, err := generate(ctx, p, h.request(s))
	if err != nil {
		return fmt.Errorf("with stop %q: %w", stop, err)
	}
	switch {
	case g.text != want:
		return fmt.Errorf("with stop %q: text %q, want %q (the greedy text before the stop)", stop, g.text, want)
	case g.final.FinishReason != sdk.FinishStop:
		return fmt.Errorf("with stop %q: FinishReason %q, want %q", stop, g.final.FinishReason, sdk.FinishStop)
	}

	// The start of a stop sequence that does not follow must be released.
	partial := text[from:b] + "\u2603"
	s.Stop = []string{partial}
	g, err = generate(ctx, p, h.request(s))
	if err != nil {
		return fmt.Errorf("with stop %q: %w", partial, err)
	}
	if g.text != text {
		return fmt.Errorf("with stop %q, which never matches: text %q, want the greedy text %q", partial, g.text, text)
	}
	return nil
}

// checkCancellation: cancelling as many generations as the plugin has slots
// (at most 8) returns every call promptly, frees every slot (Health.Running
// back to 0), and a new request starts promptly after.
func checkCancellation(ctx context.Context, h *harness) error {
	p, err := h.generator(ctx)
	if err != nil {
		return err
	}
	health, err := p.Health(ctx)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	n := health.Slots
	if n <= 0 {
		info, err := p.Info(ctx)
		if err != nil {
			return fmt.Errorf("info: %w", err)
		}
		n = info.MaxParallel
	}
	n = max(1, min(n, 8))

	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rs := make([]*running, n)
	for i := range rs {
		rs[i] = start(gctx, p, h.request(interruptible()))
	}
	for i, r := range rs {
		if err := r.waitFirst(ctx); err != nil {
			return fmt.Errorf("generation %d of %d: %w", i+1, n, err)
		}
	}
	cancel()
	cancelled := 0
	for i, r := range rs {
		returned, err := r.wait(h.prompt)
		switch {
		case !returned:
			return fmt.Errorf("generation %d of %d did not return within %v of its cancellation", i+1, n, h.prompt)
		case err == nil: // finished before the cancel arrived
		case errors.Is(err, context.Canceled) && !sdk.IsPluginShutdown(err):
			cancelled++
		default:
			return fmt.Errorf("cancelled generation %d of %d returned %v, want context.Canceled", i+1, n, err)
		}
	}
	if cancelled == 0 {
		return errFinishedEarly
	}
	if p.Exited() {
		return fmt.Errorf("the plugin exited after the cancellations: %v", p.ExitError())
	}
	var last sdk.Health
	err = poll(ctx, h.prompt, func() (bool, error) {
		hl, err := p.Health(ctx)
		if err != nil {
			return false, fmt.Errorf("health: %w", err)
		}
		last = hl
		return hl.Running == 0 && hl.Waiting == 0, nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%v after cancelling %d generations Health still reports Running %d, Waiting %d: cancelled generations must free their slots",
			h.prompt, cancelled, last.Running, last.Waiting)
	}
	if err != nil {
		return err
	}

	nctx, ncancel := context.WithTimeout(ctx, h.prompt)
	defer ncancel()
	r := start(nctx, p, h.request(sdk.Sampling{}))
	if err := r.waitFirst(nctx); err != nil && !errors.Is(err, errFinishedEarly) {
		return fmt.Errorf("a request after the cancellations: %w", err)
	}
	ncancel()
	if returned, _ := r.wait(h.prompt); !returned {
		return fmt.Errorf("a request after the cancellations did not return within %v of its cancellation", h.prompt)
	}
	return nil
}

// checkConcurrency: four concurrent greedy generations (fewer if
// Health.Slots says the plugin has fewer slots) each give the solo output.
func checkConcurrency(ctx context.Context, h *harness) error {
	p, err := h.generator(ctx)
	if err != nil {
		return err
	}
	solo, err := generate(ctx, p, h.request(greedy()))
	if err != nil {
		return err
	}
	health, err := p.Health(ctx)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	n := 4
	if health.Slots > 0 {
		n = min(n, health.Slots)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			g, err := generate(ctx, p, h.request(greedy()))
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("concurrent generation %d of %d: %w", i+1, n, err)
			case g.text != solo.text:
				errs[i] = fmt.Errorf("concurrent generation %d of %d differs from the solo one:\n%q\n%q", i+1, n, g.text, solo.text)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// checkEmbeddings: with Config.Embedding, Embed returns one finite,
// non-zero vector per input, all of the model's size, deterministic and
// independent of the batch. Without it, a plugin that lacks the embedding
// capability answers ErrUnsupported.
func checkEmbeddings(ctx context.Context, h *harness) error {
	p, mi, err := h.loaded(ctx)
	if err != nil {
		return err
	}
	if !h.cfg.Embedding {
		info, err := p.Info(ctx)
		if err != nil {
			return fmt.Errorf("info: %w", err)
		}
		if info.Has(sdk.CapabilityEmbedding) {
			return skipf("Config.Embedding is not set")
		}
		if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"hello"}}); !sdk.IsUnsupported(err) {
			return fmt.Errorf("embed on a plugin without the embedding capability = %v, want sdk.ErrUnsupported", err)
		}
		return nil
	}
	inputs := []string{
		"The quick brown fox jumps over the lazy dog.",
		"Relational databases keep rows in tables.",
		"A lighthouse keeper found a bottle on the shore.",
	}
	a, err := p.Embed(ctx, sdk.EmbedRequest{Input: inputs})
	if err != nil {
		return fmt.Errorf("embed: %w", err)
	}
	if len(a.Embeddings) != len(inputs) {
		return fmt.Errorf("embed of %d inputs returned %d embeddings", len(inputs), len(a.Embeddings))
	}
	dims := len(a.Embeddings[0])
	if mi.EmbeddingSize > 0 && dims != mi.EmbeddingSize {
		return fmt.Errorf("embeddings have %d dimensions, Load reported EmbeddingSize %d", dims, mi.EmbeddingSize)
	}
	for i, v := range a.Embeddings {
		switch {
		case len(v) == 0:
			return fmt.Errorf("embedding %d is empty", i)
		case len(v) != dims:
			return fmt.Errorf("embedding %d has %d dimensions, embedding 0 has %d", i, len(v), dims)
		case !finite(v):
			return fmt.Errorf("embedding %d has NaN or infinite values", i)
		case norm(v) == 0:
			return fmt.Errorf("embedding %d is all zeros", i)
		}
	}
	if slices.Equal(a.Embeddings[0], a.Embeddings[1]) {
		return errors.New("different inputs got identical embeddings")
	}
	b, err := p.Embed(ctx, sdk.EmbedRequest{Input: inputs})
	if err != nil {
		return fmt.Errorf("second embed: %w", err)
	}
	for i := range inputs {
		if i >= len(b.Embeddings) || len(b.Embeddings[i]) != dims || cosine(a.Embeddings[i], b.Embeddings[i]) < 0.9999 {
			return fmt.Errorf("embedding %d differs between two identical requests", i)
		}
	}
	one, err := p.Embed(ctx, sdk.EmbedRequest{Input: inputs[1:2]})
	if err != nil {
		return fmt.Errorf("embed of one input: %w", err)
	}
	if len(one.Embeddings) != 1 || len(one.Embeddings[0]) != dims || cosine(one.Embeddings[0], a.Embeddings[1]) < 0.999 {
		return errors.New("the embedding of an input differs alone and in a batch")
	}
	return nil
}

func finite(v []float32) bool {
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return false
		}
	}
	return true
}

func norm(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func cosine(a, b []float32) float64 {
	if len(a) != len(b) || norm(a) == 0 || norm(b) == 0 {
		return 0
	}
	dot := 0.0
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
	}
	return dot / (norm(a) * norm(b))
}

// checkCrash: killing the process (SIGKILL) during a generation (an Embed
// for an embedding model) ends the call with ErrPluginShutdown and closes
// Done; later calls fail the same way.
func checkCrash(ctx context.Context, h *harness) error {
	p, _, err := h.loaded(ctx)
	if err != nil {
		return err
	}
	if h.cfg.Embedding {
		if err := kill(p); err != nil {
			return err
		}
		if _, err := p.Embed(ctx, sdk.EmbedRequest{Input: []string{"hello"}}); !sdk.IsPluginShutdown(err) {
			return fmt.Errorf("embed after the plugin was killed = %v, want sdk.ErrPluginShutdown", err)
		}
	} else {
		r := start(ctx, p, h.request(interruptible()))
		if err := r.waitFirst(ctx); err != nil {
			return err
		}
		if err := kill(p); err != nil {
			return err
		}
		returned, err := r.wait(h.prompt)
		switch {
		case !returned:
			return fmt.Errorf("generate did not return within %v of the plugin being killed", h.prompt)
		case err == nil:
			return errFinishedEarly
		case !sdk.IsPluginShutdown(err):
			return fmt.Errorf("generate when the plugin was killed = %v, want sdk.ErrPluginShutdown", err)
		}
	}
	t := time.NewTimer(h.prompt)
	defer t.Stop()
	select {
	case <-p.Done():
	case <-t.C:
		return fmt.Errorf("the Done channel was not closed within %v of the plugin being killed", h.prompt)
	}
	if err := p.ExitError(); !sdk.IsPluginShutdown(err) {
		return fmt.Errorf("ExitError after the kill = %v, want sdk.ErrPluginShutdown", err)
	}
	if _, err := p.Health(ctx); !sdk.IsPluginShutdown(err) {
		return fmt.Errorf("health after the kill = %v, want sdk.ErrPluginShutdown", err)
	}
	return nil
}

// interruptible is the sampling of a generation a check interrupts (cancels, or
// kills the plugin under): greedy, the same answer every run (not a sampled early
// end of text), and up to 16 times the usual length, so that a fast model is still
// generating when the interruption lands, not done with its tokens in the stream.
func interruptible() sdk.Sampling {
	s := greedy()
	s.MaxTokens = 16 * maxTokens
	return s
}

// kill kills the plugin process the way a crash would, behind the host's
// back.
func kill(p *sdk.Plugin) error {
	proc, err := os.FindProcess(p.Pid())
	if err != nil {
		return err
	}
	if err := proc.Kill(); err != nil {
		return fmt.Errorf("kill plugin: %w", err)
	}
	return nil
}
