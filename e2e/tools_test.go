package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/openai/openai-go/v3"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var weatherParams = map[string]any{
	"type": "object",
	"properties": map[string]any{
		"city": map[string]any{"type": "string", "minLength": 1, "maxLength": 20},
		"unit": map[string]any{"enum": []any{"celsius", "fahrenheit"}},
	},
	"required": []any{"city", "unit"}, "additionalProperties": false,
}

var timeParams = map[string]any{
	"type":       "object",
	"properties": map[string]any{"timezone": map[string]any{"type": "string", "maxLength": 30}},
	"required":   []any{"timezone"}, "additionalProperties": false,
}

func weatherTools() []openai.ChatCompletionToolUnionParam {
	return []openai.ChatCompletionToolUnionParam{
		openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "get_weather", Description: openai.String("The weather in a city."), Parameters: weatherParams}),
		openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "get_time", Description: openai.String("The time in a timezone."), Parameters: timeParams}),
	}
}

// TestToolCalls: with the official Go SDK against the random-weight llama.cpp model,
// a required tool call comes back as tool_calls (finish_reason "tool_calls") whose
// arguments validate against the function's schema, non-streamed and streamed (the
// SDK's accumulator assembles the call); a named tool choice calls that function; a
// tool's result fed back is a conversation the model goes on with; and what cannot
// be served is a 400 naming the field.
func TestToolCalls(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := startGateway(t, llamaModels(lib, model)+`
  - {name: echo, backend: echo}
`)
	client := sdkClient(g)
	ctx := ctxTimeout(t, 180*time.Second)
	schemas := map[string]*jsonschema.Schema{"get_weather": compileSchema(t, weatherParams), "get_time": compileSchema(t, timeParams)}
	check := func(what string, calls []openai.ChatCompletionMessageToolCallUnion) {
		t.Helper()
		if len(calls) == 0 {
			t.Fatalf("%s: no tool calls", what)
		}
		for _, c := range calls {
			s := schemas[c.Function.Name]
			if s == nil || c.ID == "" || c.Type != "function" {
				t.Fatalf("%s: call %+v", what, c)
			}
			validateJSON(t, s, what+" "+c.Function.Name, c.Function.Arguments)
		}
	}
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")}
	required := openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
	for i := range 10 {
		resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, Tools: weatherTools(),
			ToolChoice: required, ParallelToolCalls: openai.Bool(false), Temperature: openai.Float(1), Seed: openai.Int(int64(i)), MaxTokens: openai.Int(300)})
		if err != nil {
			t.Fatal(err)
		}
		c := resp.Choices[0]
		if c.FinishReason != "tool_calls" || len(c.Message.ToolCalls) != 1 || c.Message.Content != "" {
			t.Fatalf("required call %d: %s %q %+v", i, c.FinishReason, c.Message.Content, c.Message.ToolCalls)
		}
		check(fmt.Sprintf("required call %d", i), c.Message.ToolCalls)
	}

	// Streamed: the accumulator assembles the call from its deltas.
	// (One call: the random model may call until the context is full.)
	stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, Tools: weatherTools(),
		ToolChoice: required, ParallelToolCalls: openai.Bool(false), Temperature: openai.Float(1), Seed: openai.Int(42), MaxTokens: openai.Int(1500)})
	var acc openai.ChatCompletionAccumulator
	finished := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		if _, ok := acc.JustFinishedToolCall(); ok {
			finished++
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" || finished != len(acc.Choices[0].Message.ToolCalls) {
		t.Fatalf("streamed: %+v (%d finished calls)", acc.Choices, finished)
	}
	check("the streamed answer", acc.Choices[0].Message.ToolCalls)

	// Named: that function.
	resp, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, Tools: weatherTools(),
		ToolChoice:  openai.ToolChoiceOptionFunctionToolChoice(openai.ChatCompletionNamedToolChoiceFunctionParam{Name: "get_time"}),
		Temperature: openai.Float(1), Seed: openai.Int(5), MaxTokens: openai.Int(300), ParallelToolCalls: openai.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	if calls := resp.Choices[0].Message.ToolCalls; len(calls) != 1 || calls[0].Function.Name != "get_time" {
		t.Fatalf("named call: %+v", calls)
	}
	check("the named call", resp.Choices[0].Message.ToolCalls)

	// The tool's result, fed back.
	call := resp.Choices[0].Message.ToolCalls[0]
	history := append(msgs, resp.Choices[0].Message.ToParam(), openai.ToolMessage(`{"time": "14:05"}`, call.ID))
	after, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "chat", Messages: history, Tools: weatherTools(),
		Temperature: openai.Float(0), MaxTokens: openai.Int(8)})
	if err != nil {
		t.Fatal(err)
	}
	if after.Usage.PromptTokens <= resp.Usage.PromptTokens || after.Choices[0].FinishReason == "" {
		t.Fatalf("after the result: %+v (the call's prompt had %d tokens)", after, resp.Usage.PromptTokens)
	}

	for _, tc := range []struct {
		param string
		req   openai.ChatCompletionNewParams
	}{
		{"tools", openai.ChatCompletionNewParams{Model: "echo", Messages: msgs, Tools: weatherTools()}},
		{"messages", openai.ChatCompletionNewParams{Model: "echo", Messages: history}},
		{"tools[0].function.name", openai.ChatCompletionNewParams{Model: "chat", Messages: msgs,
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "get weather"})}}},
		{"tools[0].function.parameters", openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, ToolChoice: required,
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{Name: "f",
				Parameters: map[string]any{"type": "object", "properties": map[string]any{"s": map[string]any{"type": "string", "pattern": "x+"}}}})}}},
		{"tool_choice", openai.ChatCompletionNewParams{Model: "chat", Messages: msgs, ToolChoice: required}},
		{"messages[1].tool_call_id", openai.ChatCompletionNewParams{Model: "chat", Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage("x"), openai.ToolMessage("42", "")}}},
	} {
		_, err := client.Chat.Completions.New(ctx, tc.req)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || apiErr.Param != tc.param {
			t.Errorf("%s: %v, want a 400 naming it", tc.param, err)
		}
	}
	// Over the WebSocket: a stateless chat's params carry the tools; the calls come
	// as tool_call frames, then done with finish_reason tool_calls.
	ws := dialWSKey(t, g, g.Key, "")
	r := runWSChat(t, ws, map[string]any{"type": "chat", "id": "w1", "model": "chat",
		"messages": []any{map[string]any{"role": "user", "content": "What is the weather in Paris?"}},
		"params": map[string]any{"temperature": 1, "seed": 3, "max_tokens": 300, "tool_choice": "required", "parallel_tool_calls": false,
			"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "parameters": weatherParams}}}}})
	if r.End.Type != "done" || r.End.FinishReason != "tool_calls" || len(r.ToolCalls) == 0 || r.ToolCalls[0].Name != "get_weather" || r.ToolCalls[0].CallID == "" {
		t.Fatalf("over the WebSocket: %s, calls %+v", r.End.raw, r.ToolCalls)
	}
	var args strings.Builder
	for _, f := range r.ToolCalls {
		args.WriteString(f.Arguments)
	}
	validateJSON(t, schemas["get_weather"], "the WebSocket call's arguments", args.String())
	storedToolTurns(t, g, ws, schemas)
}

// storedToolTurns checks tools in stored conversations: a stored answer's calls and
// the results sent back are kept, given back to the model with the next turn, and
// listed with the conversation; over chat completions' conversation_id and a
// WebSocket chat's content and tool_results.
func storedToolTurns(t *testing.T, g *gateway, ws *websocket.Conn, schemas map[string]*jsonschema.Schema) {
	t.Helper()
	wp, _ := json.Marshal(weatherParams)
	tools := `[{"type":"function","function":{"name":"get_weather","parameters":` + string(wp) + `}}]`
	var first struct {
		ConversationID string `json:"conversation_id"`
		Usage          struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
		Choices []struct {
			FinishReason string `json:"finish_reason"`
			Message      struct {
				ToolCalls []struct {
					ID       string `json:"id"`
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	code, body := g.call("POST", "/v1/chat/completions", g.Key, `{"model":"chat","conversation_id":"new","temperature":1,"seed":7,"max_tokens":300,
		"tool_choice":"required","parallel_tool_calls":false,"tools":`+tools+`,"messages":[{"role":"user","content":"What is the weather in Paris?"}]}`)
	if err := json.Unmarshal(body, &first); code != http.StatusOK || err != nil || first.ConversationID == "" || len(first.Choices) != 1 ||
		first.Choices[0].FinishReason != "tool_calls" || len(first.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("a stored turn with a required call: %d %s", code, body)
	}
	call := first.Choices[0].Message.ToolCalls[0]
	validateJSON(t, schemas["get_weather"], "the stored call's arguments", call.Function.Arguments)
	var second struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
		Choices []struct {
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
	}
	code, body = g.call("POST", "/v1/chat/completions", g.Key, `{"model":"chat","conversation_id":"`+first.ConversationID+`","max_tokens":4,"temperature":0,
		"tools":`+tools+`,"messages":[{"role":"tool","tool_call_id":"`+call.ID+`","content":"18 degrees"}]}`)
	if err := json.Unmarshal(body, &second); code != http.StatusOK || err != nil || len(second.Choices) != 1 || second.Usage.PromptTokens <= first.Usage.PromptTokens {
		t.Fatalf("the result sent back to the stored conversation: %d %s (the call's prompt had %d tokens)", code, body, first.Usage.PromptTokens)
	}
	c := g.conversation(g.Key, first.ConversationID)
	if len(c.Messages) != 4 || len(c.Messages[1].ToolCalls) != 1 || c.Messages[1].ToolCalls[0].ID != call.ID ||
		c.Messages[1].ToolCalls[0].Type != "function" || c.Messages[1].ToolCalls[0].Function.Arguments != call.Function.Arguments ||
		c.Messages[2].Role != "tool" || c.Messages[2].ToolCallID != call.ID || c.Messages[2].Content != "18 degrees" {
		t.Fatalf("the stored conversation: %+v", c.Messages)
	}

	// Over the WebSocket: a stored chat's params carry the tools, its calls are
	// stored, and tool_results answer them in the next turn.
	r := runWSChat(t, ws, map[string]any{"type": "chat", "id": "s1", "model": "chat", "content": "What is the weather in Paris?",
		"params": map[string]any{"temperature": 1, "seed": 3, "max_tokens": 300, "tool_choice": "required", "parallel_tool_calls": false,
			"tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "get_weather", "parameters": weatherParams}}}}})
	if r.End.Type != "done" || r.End.FinishReason != "tool_calls" || len(r.ToolCalls) == 0 || r.ToolCalls[0].CallID == "" || r.Start.ConversationID == "" {
		t.Fatalf("a stored WebSocket chat with tools: %s, calls %+v", r.End.raw, r.ToolCalls)
	}
	conv, callID := r.Start.ConversationID, r.ToolCalls[0].CallID
	r = runWSChat(t, ws, map[string]any{"type": "chat", "id": "s2", "model": "chat", "conversation_id": conv, "params": map[string]any{"max_tokens": 4},
		"tool_results": []any{map[string]any{"tool_call_id": callID, "content": "18 degrees"}}})
	if r.End.Type != "done" || r.End.Usage == nil {
		t.Fatalf("tool_results over the WebSocket: %s", r.End.raw)
	}
	c = g.conversation(g.Key, conv)
	if len(c.Messages) != 4 || len(c.Messages[1].ToolCalls) != 1 || c.Messages[1].ToolCalls[0].ID != callID ||
		c.Messages[2].Role != "tool" || c.Messages[2].ToolCallID != callID || c.Messages[3].Status != "complete" {
		t.Fatalf("the stored WebSocket conversation: %+v", c.Messages)
	}
	// tool_results are refused where they cannot go, naming the field.
	for i, f := range []map[string]any{
		{"tool_results": []any{map[string]any{"tool_call_id": callID, "content": "x"}}},
		{"conversation_id": conv, "tool_results": []any{}},
		{"conversation_id": conv, "tool_results": []any{map[string]any{"content": "x"}}},
		{"conversation_id": conv, "tool_results": []any{map[string]any{"tool_call_id": "c", "content": "x", "name": "f"}}},
		{"conversation_id": conv, "tool_results": []any{map[string]any{"tool_call_id": "c\u0000", "content": "x"}}},
	} {
		f["type"], f["id"], f["model"] = "chat", fmt.Sprintf("bad%d", i), "chat"
		writeWS(t, ws, f)
		if got := readWS(t, ws); got.Type != "error" || got.Error == nil || !strings.HasPrefix(got.Error.Param, "tool_results") {
			t.Fatalf("tool_results %v: %s", f, got.raw)
		}
	}
}
