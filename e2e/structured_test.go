package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// personSchema is the schema of the structured-output tests.
var personSchema = map[string]any{
	"type": "object",
	"properties": map[string]any{
		"name":   map[string]any{"type": "string", "minLength": 1, "maxLength": 10},
		"age":    map[string]any{"type": "integer", "minimum": 0, "maximum": 120},
		"tags":   map[string]any{"type": "array", "items": map[string]any{"enum": []any{"red", "green", "蓝"}}, "maxItems": 3},
		"active": map[string]any{"type": "boolean"},
		"city":   map[string]any{"anyOf": []any{map[string]any{"enum": []any{"Paris", "Lyon"}}, map[string]any{"type": "null"}}},
	},
	"required":             []any{"name", "age", "tags", "active", "city"},
	"additionalProperties": false,
}

func compileSchema(t *testing.T, schema map[string]any) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	if err := c.AddResource("s.json", schema); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("s.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validateJSON(t *testing.T, s *jsonschema.Schema, what, text string) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", what, err, text)
	}
	if err := s.Validate(v); err != nil {
		t.Fatalf("%s does not validate: %v\n%s", what, err, text)
	}
}

func personFormat() openai.ChatCompletionNewParamsResponseFormatUnion {
	return openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
		JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Schema: personSchema, Strict: openai.Bool(true)}}}
}

// TestStructuredOutput: with the official Go SDK, 50 answers of the random-weight
// llama.cpp model sampled at temperature 1 under response_format json_schema all
// parse and validate, streamed too; json_object gives an object; a schema the
// grammar cannot express and a model whose backend does not honour response_format
// are refused with a 400 naming the field.
func TestStructuredOutput(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := startGateway(t, llamaModels(lib, model)+`
  - {name: echo, backend: echo}
`)
	client := sdkClient(g)
	ctx := ctxTimeout(t, 180*time.Second)
	schema := compileSchema(t, personSchema)
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Describe a person.")}
	start := time.Now()
	for i := range 50 {
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: msgs,
			Temperature: openai.Float(1), Seed: openai.Int(int64(i)), MaxTokens: openai.Int(300), ResponseFormat: personFormat()})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Choices[0].FinishReason != "stop" {
			t.Fatalf("answer %d ended with %s: %q", i, resp.Choices[0].FinishReason, resp.Choices[0].Message.Content)
		}
		validateJSON(t, schema, fmt.Sprintf("answer %d", i), resp.Choices[0].Message.Content)
	}
	t.Logf("50 structured answers in %v", time.Since(start).Round(time.Millisecond))

	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: msgs,
		Temperature: openai.Float(1), Seed: openai.Int(99), MaxTokens: openai.Int(300), ResponseFormat: personFormat()})
	var text strings.Builder
	for stream.Next() {
		for _, c := range stream.Current().Choices {
			text.WriteString(c.Delta.Content)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	validateJSON(t, schema, "the streamed answer", text.String())

	// Over the WebSocket, in params.
	ws := dialWSKey(t, g, g.Key, "")
	r := runWSChat(t, ws, map[string]any{"type": "chat", "id": "s1", "model": "chat", "content": "Describe a person.",
		"params": map[string]any{"temperature": 1, "seed": 7, "max_tokens": 300,
			"response_format": map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "person", "schema": personSchema}}}})
	if r.End.Type != "done" || r.End.FinishReason != "stop" {
		t.Fatalf("the WebSocket answer: %s", r.End.raw)
	}
	validateJSON(t, schema, "the WebSocket answer", r.Text)

	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, Temperature: openai.Float(0),
		MaxTokens: openai.Int(200), ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}}})
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Choices[0]; c.FinishReason == "stop" && !strings.HasPrefix(c.Message.Content, "{") || c.FinishReason == "stop" && !strings.HasSuffix(c.Message.Content, "}") {
		t.Fatalf("json_object: %q", c.Message.Content)
	}

	for _, tc := range []struct {
		model, param string
		format       openai.ChatCompletionNewParamsResponseFormatUnion
	}{
		{"chat", "response_format.json_schema.schema", openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
			JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "p", Schema: map[string]any{"type": "string", "pattern": "^[a-z]+$"}}}}},
		// Alternatives that begin alike and recur: the work of following them grows
		// exponentially with the text's nesting.
		{"chat", "response_format.json_schema.schema", openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
			JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "t", Schema: map[string]any{"$ref": "#/$defs/t", "$defs": map[string]any{"t": map[string]any{
				"type": "array", "items": map[string]any{"anyOf": []any{map[string]any{"$ref": "#/$defs/t"},
					map[string]any{"type": "array", "items": map[string]any{"$ref": "#/$defs/t"}, "maxItems": 3}}}}}}}}}},
		{"chat", "response_format.json_schema.name", openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &openai.ResponseFormatJSONSchemaParam{
			JSONSchema: openai.ResponseFormatJSONSchemaJSONSchemaParam{Name: "a name with spaces", Schema: personSchema}}}},
		{"echo", "response_format", openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &openai.ResponseFormatJSONObjectParam{}}},
	} {
		_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: tc.model, Messages: msgs, ResponseFormat: tc.format})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != tc.param {
			t.Errorf("%s %s: %v, want a 400 naming it", tc.model, tc.param, err)
		}
	}
}
