package api

import (
	"context"
	"strings"
	"sync"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// MaxChoices bounds n (and, for /v1/completions, prompts × n).
const (
	maxN       = 8
	maxChoices = 64
)

// job is the fan-out of one API request into its n choices (and, for
// /v1/completions, its prompts), all generations of one chat turn t.
type job struct {
	s  *server
	cl *call
	// model is the canonical model name.
	model string
	reqs  []sdk.GenerateRequest
	// group[i] is the prompt of choice i: prompt tokens are counted once
	// per prompt, not once per choice.
	group []int
	// t is the turn: its grounding, its stored part (a request continuing a
	// conversation, one choice), the generations' guard and token count.
	t *chat.Turn
}

// newJob returns the job of n choices of turn t.
func (s *server) newJob(cl *call, t *chat.Turn, model string, n int) *job {
	return &job{s: s, cl: cl, model: model, t: t, reqs: make([]sdk.GenerateRequest, n), group: make([]int, n)}
}

// stored is the request's stored turn (nil: stateless).
func (j *job) stored() *conversation.Turn { return j.t.Stored }

// account records the request's tokens: u, or when the backends reported no
// completion tokens (a failed generation), those they were seen to produce.
func (j *job) account(u usageJSON) {
	if u.CompletionTokens == 0 {
		u.CompletionTokens = j.t.Generated()
	}
	j.cl.tokens(u.PromptTokens, u.CompletionTokens)
}

// choiceResult is a collected (non-streamed) choice.
type choiceResult struct {
	text     strings.Builder
	finish   sdk.FinishReason
	usage    sdk.Usage
	logprobs []sdk.TokenLogprob
}

// collect runs every choice concurrently to completion. The first error
// cancels the other choices and is returned; a final event with
// FinishReason error is an error.
func (j *job) collect(ctx context.Context) ([]choiceResult, error) {
	ctx, cancel := context.WithTimeout(ctx, j.s.opts.RequestTimeout)
	defer cancel()
	res := make([]choiceResult, len(j.reqs))
	var (
		first    sync.Once
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	run := func(i int) {
		r := &res[i]
		err := j.generate(ctx, i, func(e sdk.Event) error {
			j.t.Observe(e)
			if e.Text != "" {
				first.Do(j.cl.firstToken)
				r.text.WriteString(e.Text)
			}
			if len(e.Logprobs) > 0 {
				r.logprobs = append(r.logprobs, e.Logprobs...)
			}
			if e.Final() {
				if e.FinishReason == sdk.FinishError {
					return oai.BackendFailed(e.Error)
				}
				r.finish = e.FinishReason
				if e.Usage != nil {
					r.usage = *e.Usage
				}
			}
			return nil
		})
		if err != nil {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
				cancel()
			}
			mu.Unlock()
		}
	}
	if len(j.reqs) == 1 {
		run(0)
	} else {
		for i := range j.reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				run(i)
			}()
		}
		wg.Wait()
	}
	usages := make([]sdk.Usage, len(res))
	for i := range res {
		usages[i] = res[i].usage
	}
	j.account(j.usageOf(usages))
	if firstErr != nil {
		return nil, firstErr
	}
	return res, nil
}

// usageOf sums the usage of the choices: prompt tokens once per prompt,
// completion tokens of every choice.
func (j *job) usageOf(usages []sdk.Usage) usageJSON {
	var u usageJSON
	counted := make([]bool, len(j.reqs))
	for i, x := range usages {
		if g := j.group[i]; !counted[g] {
			counted[g] = true
			u.PromptTokens += x.PromptTokens
			if x.CachedTokens > 0 {
				if u.PromptDetails == nil {
					u.PromptDetails = &promptDetailsJSON{}
				}
				u.PromptDetails.CachedTokens += x.CachedTokens
			}
		}
		u.CompletionTokens += x.CompletionTokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// usageJSON is the OpenAI usage object.
type usageJSON struct {
	PromptTokens     int                `json:"prompt_tokens"`
	CompletionTokens int                `json:"completion_tokens"`
	TotalTokens      int                `json:"total_tokens"`
	PromptDetails    *promptDetailsJSON `json:"prompt_tokens_details,omitempty"`
}

// promptDetailsJSON reports prompt tokens the backend served from its cache
// (a reused prompt prefix) instead of computing them.
type promptDetailsJSON struct {
	CachedTokens int `json:"cached_tokens"`
}

// finishReason maps a backend finish reason to OpenAI's ("stop" or
// "length").
func finishReason(r sdk.FinishReason) string {
	if r == sdk.FinishLength {
		return "length"
	}
	return "stop"
}

// choicesN validates n.
func choicesN(n *int) (int, *oai.Error) {
	if n == nil {
		return 1, nil
	}
	if *n < 1 || *n > maxN {
		return 0, oai.Invalid("n", oai.CodeInvalidValue, "invalid value for 'n': %d; it must be between 1 and %d", *n, maxN)
	}
	return *n, nil
}

// generate runs choice i (chat.Turn.Generate: cleaned text, a backend's panic an
// error).
func (j *job) generate(ctx context.Context, i int, emit func(sdk.Event) error) error {
	return j.t.Generate(ctx, j.reqs[i], emit)
}
