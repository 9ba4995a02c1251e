package api

import (
	"context"
	"encoding/json"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/oai"
)

// defaultCompletionMaxTokens is OpenAI's (and vLLM's) max_tokens default
// for /v1/completions.
const defaultCompletionMaxTokens = 16

// completionRequest is the body of POST /v1/completions.
type completionRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	N             *int            `json:"n"`
	Stream        *bool           `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	Logprobs      *int            `json:"logprobs"`
	Echo          *bool           `json:"echo"`
	Suffix        *string         `json:"suffix"`
	BestOf        *int            `json:"best_of"`
	LogitBias     json.RawMessage `json:"logit_bias"`
	oai.SamplingParams
}

type completionChoiceJSON struct {
	Index        int             `json:"index"`
	Text         string          `json:"text"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type completionJSON struct {
	ID      string                 `json:"id"`
	Object  string                 `json:"object"`
	Created int64                  `json:"created"`
	Model   string                 `json:"model"`
	Choices []completionChoiceJSON `json:"choices"`
	Usage   usageJSON              `json:"usage"`
}

// completions serves POST /v1/completions. A prompt array gives n choices
// per prompt, indexed prompt*n+k. max_tokens defaults to 16, as OpenAI's.
func (s *server) completions(c *fiber.Ctx, cl *call) error {
	var req completionRequest
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	m, aerr := s.resolveModel(cl, req.Model, kindChat)
	if aerr != nil {
		return aerr
	}
	prompts, aerr := oai.Strings(req.Prompt, "prompt", true)
	if aerr != nil {
		return aerr
	}
	if prompts == nil {
		return oai.Missing("prompt")
	}
	if len(prompts) == 0 {
		return oai.Invalid("prompt", oai.CodeInvalidValue, "'prompt' must contain at least one prompt")
	}
	if req.Echo != nil && *req.Echo {
		return oai.Unsupported("echo", "'echo' is not supported")
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return oai.Unsupported("suffix", "'suffix' is not supported")
	}
	if req.BestOf != nil && *req.BestOf != 1 {
		return oai.Unsupported("best_of", "'best_of' is not supported")
	}
	u := oai.Unhonoured{LogitBias: req.LogitBias}
	if err := u.Check(""); err != nil {
		return err
	}
	sampling, aerr := req.Sampling("")
	if aerr != nil {
		return aerr
	}
	if req.MaxTokens == nil && req.MaxCompletionTokens == nil {
		sampling.MaxTokens = defaultCompletionMaxTokens
	}
	if v := req.Logprobs; v != nil {
		if *v < 0 || *v > 5 {
			return oai.Invalid("logprobs", oai.CodeInvalidValue, "invalid value for 'logprobs': %d; it must be between 0 and 5", *v)
		}
		sampling.Logprobs = true
		sampling.TopLogprobs = *v
	}
	n, aerr := choicesN(req.N)
	if aerr != nil {
		return aerr
	}
	total := n * len(prompts)
	if total > maxChoices {
		return oai.Invalid("prompt", oai.CodeInvalidValue, "too many choices: %d prompts × n=%d is more than %d", len(prompts), n, maxChoices)
	}

	t := s.core.Turn(chat.Request{
		Principal: principalOf(c), Route: cl.route, Arrived: cl.start, Model: m, RequestID: reqID(c),
		Prompts: prompts, N: n, Sampling: sampling,
	})
	respID := "cmpl-" + oai.NewID()
	created := time.Now().Unix()
	if req.Stream != nil && *req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		return s.serveStream(c, cl, t, total, false, newCompletionSSE(respID, created, req.Model, includeUsage, total), includeUsage)
	}

	ctx, _, stop := whileClientWaits(c)
	defer stop()
	res := collect(ctx, t, total)
	stop()
	switch {
	case res.failure != nil:
		return res.failure
	case res.cancelled:
		return chat.APIError(context.Canceled)
	}
	out := completionJSON{ID: respID, Object: "text_completion", Created: created, Model: req.Model, Choices: make([]completionChoiceJSON, total), Usage: usageOf(res.usage)}
	for i := range res.choices {
		r := &res.choices[i]
		lp := jsonNull
		if sampling.Logprobs {
			lp = appendCompletionLogprobs(nil, r.logprobs, 0)
		}
		out.Choices[i] = completionChoiceJSON{Index: i, Text: r.text.String(), Logprobs: lp, FinishReason: finishReason(r.finish)}
	}
	return c.JSON(out)
}
