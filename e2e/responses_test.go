package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/responses"
)

func textInput(s string) responses.ResponseNewParamsInputUnion {
	return responses.ResponseNewParamsInputUnion{OfString: openai.String(s)}
}

// TestResponses: /v1/responses with the official Go SDK: text input and
// instructions, a stored response continued with previous_response_id (the history
// is the stored conversation's), store false keeping nothing, the stream of
// Responses events, function tools (a required call, its output fed back), and
// refusals naming the field.
func TestResponses(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := startGateway(t, echoModels+fmt.Sprintf(`
  - {name: chat-llama, backend: llamacpp, max_concurrency: 4, options: {model_path: %q, lib_path: %q, threads: 1, parallel: 2, context_length: 1024}}
`, model, lib))
	client := sdkClient(g)
	ctx := ctxTimeout(t, 120*time.Second)

	first, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: textInput("tell me about ships"),
		Instructions: openai.String("Answer briefly.")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(first.ID, "resp_") || first.Status != "completed" || first.OutputText() != "tell me about ships" || first.Usage.InputTokens == 0 {
		t.Fatalf("first response: %+v", first)
	}
	second, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: textInput("and boats"), PreviousResponseID: openai.String(first.ID)})
	if err != nil {
		t.Fatal(err)
	}
	if second.OutputText() != "and boats" || second.Usage.InputTokens <= first.Usage.InputTokens+first.Usage.OutputTokens {
		t.Fatalf("continued: %q, %d input tokens after %+v: the history was not sent", second.OutputText(), second.Usage.InputTokens, first.Usage)
	}
	ids := g.conversationIDs(g.Key)
	if len(ids) != 1 || len(g.conversation(g.Key, ids[0]).Messages) != 4 {
		t.Fatalf("stored: conversations %v", ids)
	}
	// Not stored: nothing kept, and the history still comes from the previous one.
	third, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: textInput("and rafts"), PreviousResponseID: openai.String(second.ID),
		Store: openai.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	if third.OutputText() != "and rafts" || third.Usage.InputTokens <= second.Usage.InputTokens || len(g.conversation(g.Key, ids[0]).Messages) != 4 || len(g.conversationIDs(g.Key)) != 1 {
		t.Fatalf("store false: %q %+v", third.OutputText(), third.Usage)
	}

	// Streamed: the Responses events, in order, ending with the completed response.
	stream := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "chat", Input: textInput("one two three"), Store: openai.Bool(false)})
	var types []string
	var text strings.Builder
	var done responses.Response
	for stream.Next() {
		ev := stream.Current()
		types = append(types, ev.Type)
		switch ev.Type {
		case "response.output_text.delta":
			text.WriteString(ev.Delta)
		case "response.completed":
			done = ev.Response
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
	if !slices.Equal(types[:4], want) || types[len(types)-1] != "response.completed" || text.String() != "one two three" || done.OutputText() != "one two three" || done.Usage.OutputTokens != 3 {
		t.Fatalf("stream: %v, text %q, final %+v", types, text.String(), done)
	}

	// Streamed and stored: its id continues the conversation.
	stored := client.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "chat", Input: textInput("four five")})
	var storedDone responses.Response
	for stored.Next() {
		if ev := stored.Current(); ev.Type == "response.completed" {
			storedDone = ev.Response
		}
	}
	if err := stored.Err(); err != nil {
		t.Fatal(err)
	}
	next, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat", Input: textInput("six"), PreviousResponseID: openai.String(storedDone.ID)})
	if err != nil || next.OutputText() != "six" || next.Usage.InputTokens <= storedDone.Usage.InputTokens {
		t.Fatalf("continuing a streamed response %q: %v %+v", storedDone.ID, err, next)
	}

	// Function tools: a required call, then its output fed back.
	tools := []responses.ToolUnionParam{responses.ToolParamOfFunction("get_weather", weatherParams, true)}
	call, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat-llama", Input: textInput("Weather in Paris?"), Tools: tools,
		ToolChoice:        responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsRequired)},
		ParallelToolCalls: openai.Bool(false), Store: openai.Bool(false), Temperature: openai.Float(1), MaxOutputTokens: openai.Int(200)})
	if err != nil {
		t.Fatal(err)
	}
	if len(call.Output) != 1 || call.Output[0].Type != "function_call" || call.Output[0].Name != "get_weather" {
		t.Fatalf("required call: %+v", call.Output)
	}
	fc := call.Output[0].AsFunctionCall()
	validateJSON(t, compileSchema(t, weatherParams), "the call's arguments", fc.Arguments)
	after, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat-llama", Tools: tools, Store: openai.Bool(false), MaxOutputTokens: openai.Int(5),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			responses.ResponseInputItemParamOfMessage("Weather in Paris?", responses.EasyInputMessageRoleUser),
			responses.ResponseInputItemParamOfFunctionCall(fc.Arguments, fc.CallID, fc.Name),
			{OfFunctionCallOutput: &responses.ResponseInputItemFunctionCallOutputParam{CallID: openai.String(fc.CallID),
				Output: responses.ResponseInputItemFunctionCallOutputOutputUnionParam{OfString: openai.String(`{"temperature": 18}`)}}},
		}}})
	if err != nil {
		t.Fatal(err)
	}
	if after.Usage.InputTokens <= call.Usage.InputTokens || after.Status == "" {
		t.Fatalf("after the output: %+v", after)
	}

	// Stored (the default): the call is kept, and previous_response_id with the
	// call's output goes on from it.
	kept, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat-llama", Input: textInput("Weather in Lyon?"), Tools: tools,
		ToolChoice:        responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsRequired)},
		ParallelToolCalls: openai.Bool(false), Temperature: openai.Float(1), MaxOutputTokens: openai.Int(200)})
	if err != nil || len(kept.Output) != 1 || kept.Output[0].Type != "function_call" {
		t.Fatalf("a stored required call: %v %+v", err, kept)
	}
	kc := kept.Output[0].AsFunctionCall()
	cont, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat-llama", Tools: tools, MaxOutputTokens: openai.Int(5),
		PreviousResponseID: openai.String(kept.ID),
		Input: responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
			{OfFunctionCallOutput: &responses.ResponseInputItemFunctionCallOutputParam{CallID: openai.String(kc.CallID),
				Output: responses.ResponseInputItemFunctionCallOutputOutputUnionParam{OfString: openai.String(`{"temperature": 21}`)}}},
		}}})
	if err != nil || cont.Usage.InputTokens <= kept.Usage.InputTokens {
		t.Fatalf("the output sent back to a stored call: %v %+v (the call's input had %d tokens)", err, cont, kept.Usage.InputTokens)
	}
	// Not stored, from the stored exchange: its calls and outputs are in the history.
	if _, err := client.Responses.New(ctx, responses.ResponseNewParams{Model: "chat-llama", Tools: tools, Store: openai.Bool(false), MaxOutputTokens: openai.Int(3),
		PreviousResponseID: openai.String(cont.ID), Input: textInput("Thanks.")}); err != nil {
		t.Fatalf("store false after a stored call: %v", err)
	}
	var found bool
	for _, id := range g.conversationIDs(g.Key) {
		ms := g.conversation(g.Key, id).Messages
		if len(ms) == 4 && len(ms[1].ToolCalls) == 1 && ms[1].ToolCalls[0].ID == kc.CallID && ms[1].ToolCalls[0].Function.Arguments == kc.Arguments &&
			ms[2].Role == "tool" && ms[2].ToolCallID == kc.CallID && ms[2].Content == `{"temperature": 21}` {
			found = true
		}
	}
	if !found {
		t.Fatalf("no stored conversation holds the call %q and its output", kc.CallID)
	}

	for _, tc := range []struct {
		param string
		req   responses.ResponseNewParams
	}{
		{"previous_response_id", responses.ResponseNewParams{Model: "chat", Input: textInput("x"), PreviousResponseID: openai.String(first.ID)}},
		{"previous_response_id", responses.ResponseNewParams{Model: "chat", Input: textInput("x"), PreviousResponseID: openai.String("resp_nothing")}},
		{"reasoning", responses.ResponseNewParams{Model: "chat", Input: textInput("x"), Reasoning: responses.ReasoningParam{Effort: responses.ReasoningEffortHigh}}},
	} {
		_, err := client.Responses.New(ctx, tc.req)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode/100 != 4 || apiErr.StatusCode == http.StatusTooManyRequests || apiErr.Param != tc.param {
			t.Errorf("%s: %v, want a 4xx naming it", tc.param, err)
		}
	}
}
