package e2e

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

const echoModels = `
  - {name: chat, aliases: [default], backend: echo, replicas: 1, max_concurrency: 8}
`

func sdkClient(g *gateway) openai.Client {
	return openai.NewClient(option.WithBaseURL(g.URL+"/v1/"), option.WithAPIKey(g.Key), option.WithMaxRetries(0))
}

func TestOpenAISDK(t *testing.T) {
	g := startGateway(t, echoModels)
	client := sdkClient(g)
	ctx := ctxTimeout(t, 60*time.Second)

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		if !slices.Contains(ids, "chat") || !slices.Contains(ids, "default") {
			t.Fatalf("models = %v, want chat and its alias default", ids)
		}
	})

	t.Run("chat", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "chat",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be brief"), openai.UserMessage("hello there world")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != "hello there world" || resp.Choices[0].FinishReason != "stop" {
			t.Fatalf("choices = %+v", resp.Choices)
		}
		u := resp.Usage
		if u.CompletionTokens != 3 || u.PromptTokens <= 0 || u.TotalTokens != u.PromptTokens+u.CompletionTokens {
			t.Fatalf("usage = %+v", u)
		}
		if resp.Model != "chat" || !strings.HasPrefix(resp.ID, "chatcmpl-") {
			t.Fatalf("model %q id %q", resp.Model, resp.ID)
		}
	})

	t.Run("chat stream with usage", func(t *testing.T) {
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "default",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two three four")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var text strings.Builder
		var finish string
		var usage openai.CompletionUsage
		chunks := 0
		for stream.Next() {
			c := stream.Current()
			chunks++
			for _, ch := range c.Choices {
				text.WriteString(ch.Delta.Content)
				if ch.FinishReason != "" {
					finish = ch.FinishReason
				}
			}
			if c.Usage.TotalTokens > 0 {
				usage = c.Usage
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text.String() != "one two three four" || finish != "stop" || usage.CompletionTokens != 4 || chunks < 4 {
			t.Fatalf("text %q finish %q usage %+v chunks %d", text.String(), finish, usage, chunks)
		}
	})

	t.Run("completions", func(t *testing.T) {
		resp, err := client.Completions.New(ctx, openai.CompletionNewParams{
			Model:  "chat",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("a b c")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Text != "a b c" || resp.Usage.CompletionTokens != 3 {
			t.Fatalf("resp = %+v", resp)
		}
		stream := client.Completions.NewStreaming(ctx, openai.CompletionNewParams{
			Model:  "chat",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x y z")},
		})
		var text strings.Builder
		for stream.Next() {
			for _, c := range stream.Current().Choices {
				text.WriteString(c.Text)
			}
		}
		if err := stream.Err(); err != nil || text.String() != "x y z" {
			t.Fatalf("streamed %q, %v", text.String(), err)
		}
	})

	t.Run("n, stop and max_tokens", func(t *testing.T) {
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "chat",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two STOP three")},
			N:        openai.Int(2),
			Seed:     openai.Int(7),
			Stop:     openai.ChatCompletionNewParamsStopUnion{OfString: openai.String("STOP")},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 2 {
			t.Fatalf("n=2 gave %d choices", len(resp.Choices))
		}
		for i, c := range resp.Choices {
			if c.Index != int64(i) || c.Message.Content != "one two " || c.FinishReason != "stop" {
				t.Fatalf("choice %d = %+v, want text cut before the stop sequence", i, c)
			}
		}
		resp, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:     "chat",
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("one two three four")},
			MaxTokens: openai.Int(2),
		})
		if err != nil {
			t.Fatal(err)
		}
		if c := resp.Choices[0]; c.Message.Content != "one two" || c.FinishReason != "length" {
			t.Fatalf("max_tokens 2: %+v", c)
		}
	})

	t.Run("unknown model", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:    "nope",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusNotFound || apiErr.Code != "model_not_found" {
			t.Fatalf("err = %v, want a 404 model_not_found API error", err)
		}
	})
}
