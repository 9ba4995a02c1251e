package api

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/api/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// chatRequest is the body of POST /v1/chat/completions. Fields the gateway
// does not know are ignored.
type chatRequest struct {
	Model         string          `json:"model"`
	Messages      json.RawMessage `json:"messages"`
	N             *int            `json:"n"`
	Stream        *bool           `json:"stream"`
	StreamOptions *streamOptions  `json:"stream_options"`
	Logprobs      *bool           `json:"logprobs"`
	TopLogprobs   *int            `json:"top_logprobs"`
	oai.SamplingParams
}

type chatMessageJSON struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatChoiceJSON struct {
	Index        int             `json:"index"`
	Message      chatMessageJSON `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type chatCompletionJSON struct {
	ID      string           `json:"id"`
	Object  string           `json:"object"`
	Created int64            `json:"created"`
	Model   string           `json:"model"`
	Choices []chatChoiceJSON `json:"choices"`
	Usage   usageJSON        `json:"usage"`
}

var jsonNull = json.RawMessage("null")

// chatCompletions serves POST /v1/chat/completions.
func (s *server) chatCompletions(c *fiber.Ctx, cl *call) error {
	var req chatRequest
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	m, aerr := s.resolveModel(cl, req.Model, false)
	if aerr != nil {
		return aerr
	}
	msgs, aerr := oai.Messages(req.Messages, "messages")
	if aerr != nil {
		return aerr
	}
	sampling, aerr := req.Sampling("")
	if aerr != nil {
		return aerr
	}
	n, aerr := choicesN(req.N)
	if aerr != nil {
		return aerr
	}
	sampling.Logprobs = req.Logprobs != nil && *req.Logprobs
	if v := req.TopLogprobs; v != nil {
		if *v < 0 || *v > 20 {
			return oai.Invalid("top_logprobs", oai.CodeInvalidValue, "invalid value for 'top_logprobs': %d; it must be between 0 and 20", *v)
		}
		if *v > 0 && !sampling.Logprobs {
			return oai.Invalid("top_logprobs", oai.CodeInvalidValue, "'top_logprobs' requires 'logprobs' to be true")
		}
		sampling.TopLogprobs = *v
	}

	id := reqID(c)
	j := &job{s: s, cl: cl, model: m.Name, reqs: make([]sdk.GenerateRequest, n), group: make([]int, n)}
	for i := range n {
		r := sdk.GenerateRequest{Messages: msgs, Sampling: sampling, RequestID: choiceRequestID(id, i, n)}
		if sampling.Seed != nil && i > 0 {
			seed := *sampling.Seed + int64(i)
			r.Sampling.Seed = &seed
		}
		j.reqs[i] = r
	}
	respID := "chatcmpl-" + oai.NewID()
	created := time.Now().Unix()
	if req.Stream != nil && *req.Stream {
		includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
		return s.serveStream(c, j, newChatChunks(respID, created, req.Model, includeUsage), includeUsage)
	}

	res, err := j.collect(context.Background())
	if err != nil {
		return err
	}
	out := chatCompletionJSON{ID: respID, Object: "chat.completion", Created: created, Model: req.Model, Choices: make([]chatChoiceJSON, n)}
	usages := make([]sdk.Usage, n)
	for i := range res {
		r := &res[i]
		usages[i] = r.usage
		lp := jsonNull
		if sampling.Logprobs {
			lp = appendChatLogprobs(nil, r.logprobs)
		}
		out.Choices[i] = chatChoiceJSON{Index: i, Message: chatMessageJSON{Role: "assistant", Content: r.text.String()}, Logprobs: lp, FinishReason: finishReason(r.finish)}
	}
	out.Usage = j.usageOf(usages)
	return c.JSON(out)
}

// choiceRequestID is the RequestID passed to the backend for choice i of n.
func choiceRequestID(id string, i, n int) string {
	if n == 1 {
		return id
	}
	return fmt.Sprintf("%s-%d", id, i)
}
