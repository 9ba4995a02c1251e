package api_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// TestOpenAIGoSDK checks that the official OpenAI Go SDK parses every
// response shape, streaming with usage included.
func TestOpenAIGoSDK(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	client := openai.NewClient(option.WithBaseURL(s.url+"/v1/"), option.WithAPIKey(apitest.Key), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("models", func(t *testing.T) {
		page, err := client.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range page.Data {
			ids = append(ids, m.ID)
		}
		if strings.Join(ids, ",") != "chat,default,embed" {
			t.Errorf("models %v", ids)
		}
		m, err := client.Models.Get(ctx, "default")
		if err != nil || m.ID != "default" || m.OwnedBy != "ragway" {
			t.Errorf("model %+v, %v", m, err)
		}
	})

	t.Run("chat", func(t *testing.T) {
		s.fake.SetGenerate(apitest.Script([]string{"Hi", " there"}, sdk.FinishStop, sdk.Usage{PromptTokens: 4, CompletionTokens: 2}))
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model:       "chat",
			Messages:    []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("be nice"), openai.UserMessage("hello")},
			Temperature: openai.Float(0.2),
			Stop:        openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"\n"}},
			Seed:        openai.Int(7),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != "Hi there" || resp.Choices[0].FinishReason != "stop" || string(resp.Choices[0].Message.Role) != "assistant" {
			t.Errorf("choices %+v", resp.Choices)
		}
		if resp.Usage.PromptTokens != 4 || resp.Usage.CompletionTokens != 2 || resp.Usage.TotalTokens != 6 || resp.Model != "chat" {
			t.Errorf("usage %+v model %q", resp.Usage, resp.Model)
		}
	})

	t.Run("chat stream with usage", func(t *testing.T) {
		s.fake.SetGenerate(apitest.Script([]string{"Stre", "am", "ed \"ok\"\n"}, sdk.FinishLength, sdk.Usage{PromptTokens: 5, CompletionTokens: 3}))
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model:         "chat",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var acc openai.ChatCompletionAccumulator
		chunks := 0
		for stream.Next() {
			chunks++
			if !acc.AddChunk(stream.Current()) {
				t.Fatalf("accumulator rejected chunk %d: %s", chunks, stream.Current().RawJSON())
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != "Streamed \"ok\"\n" || acc.Choices[0].FinishReason != "length" {
			t.Errorf("accumulated %+v", acc.Choices)
		}
		if acc.Usage.PromptTokens != 5 || acc.Usage.CompletionTokens != 3 || acc.Usage.TotalTokens != 8 {
			t.Errorf("usage %+v", acc.Usage)
		}
	})

	t.Run("chat stream error after tokens", func(t *testing.T) {
		s.fake.SetGenerate(apitest.Fail(sdk.ErrPluginShutdown, "par", "tial"))
		stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model: "chat", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")},
		})
		var text string
		for stream.Next() {
			for _, c := range stream.Current().Choices {
				text += c.Delta.Content
			}
		}
		if text != "partial" || stream.Err() == nil || !strings.Contains(stream.Err().Error(), "backend_error") {
			t.Errorf("text %q, err %v", text, stream.Err())
		}
	})

	t.Run("completions stream", func(t *testing.T) {
		s.fake.SetGenerate(apitest.Script([]string{"a", "b"}, sdk.FinishStop, sdk.Usage{PromptTokens: 1, CompletionTokens: 2}))
		stream := client.Completions.NewStreaming(ctx, openai.CompletionNewParams{
			Model:         "chat",
			Prompt:        openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")},
			MaxTokens:     openai.Int(5),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var text, finish string
		var total int64
		for stream.Next() {
			c := stream.Current()
			for _, ch := range c.Choices {
				text += ch.Text
				if ch.FinishReason != "" {
					finish = string(ch.FinishReason)
				}
			}
			total += c.Usage.TotalTokens
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if text != "ab" || finish != "stop" || total != 3 {
			t.Errorf("text %q finish %q total %d", text, finish, total)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		for _, format := range []openai.EmbeddingNewParamsEncodingFormat{openai.EmbeddingNewParamsEncodingFormatFloat, openai.EmbeddingNewParamsEncodingFormatBase64} {
			resp, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
				Model:          "embed",
				Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a b", "c"}},
				EncodingFormat: format,
			})
			if err != nil {
				t.Fatal(err)
			}
			want, _ := apitest.HashEmbed(ctx, "", sdk.EmbedRequest{Input: []string{"a b", "c"}})
			if len(resp.Data) != 2 || resp.Usage.PromptTokens != 3 {
				t.Fatalf("%s: %+v", format, resp)
			}
			for i, d := range resp.Data {
				for k, v := range d.Embedding {
					if float32(v) != want.Embeddings[i][k] {
						t.Errorf("%s: embedding[%d][%d] = %v, want %v", format, i, k, v, want.Embeddings[i][k])
					}
				}
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "missing", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
		})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Param != "model" || apiErr.Type != "invalid_request_error" {
			t.Errorf("unknown model: %v", err)
		}
		s.fake.SetGenerate(apitest.Fail(&workers.QueueFullError{Model: "chat", RetryAfter: time.Second}))
		_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "chat", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")},
		})
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "queue_full" || apiErr.Type != "rate_limit_error" {
			t.Errorf("queue full: %v", err)
		}
	})

	// What the gateway does not implement is refused naming the field, never ignored.
	t.Run("unimplemented fields", func(t *testing.T) {
		msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}
		for _, c := range []struct {
			param string
			req   openai.ChatCompletionNewParams
		}{
			{"tool_choice", openai.ChatCompletionNewParams{Model: "chat", Messages: msgs,
				Tools:      []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "lookup"})},
				ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfFunctionToolChoice: &openai.ChatCompletionNamedToolChoiceParam{Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "other"}}}}},
			{"response_format.json_schema.schema", openai.ChatCompletionNewParams{Model: "chat", Messages: msgs,
				ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
					JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "word", Schema: map[string]any{"type": "string", "pattern": "^a+$"}}}}}},
			{"logit_bias", openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, LogitBias: map[string]int64{"50256": -100}}},
			{"reasoning_effort", openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, ReasoningEffort: "high"}},
		} {
			_, err := client.Chat.Completions.New(ctx, c.req)
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Param != c.param || apiErr.Type != "invalid_request_error" {
				t.Errorf("%s: %v, want a 400 naming it", c.param, err)
			}
		}
	})
}
