package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// caseRequest reads a template case as the plugin gets a request: SDK messages (tool
// calls' arguments as JSON text) and tools.
func caseRequest(t *testing.T, raw []byte) ([]sdk.Message, []sdk.Tool) {
	t.Helper()
	var c struct {
		Messages []struct {
			Role, Name string
			Content    *string
			ToolCallID string `json:"tool_call_id"`
			ToolCalls  []struct {
				ID       string
				Function struct {
					Name      string
					Arguments json.RawMessage
				}
			} `json:"tool_calls"`
		}
		Tools []struct {
			Function struct {
				Name, Description string
				Parameters        json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	var msgs []sdk.Message
	for _, m := range c.Messages {
		msg := sdk.Message{Role: m.Role, Name: m.Name, ToolCallID: m.ToolCallID}
		if m.Content != nil {
			msg.Content = *m.Content
		}
		for _, tc := range m.ToolCalls {
			var b bytes.Buffer
			_ = json.Compact(&b, tc.Function.Arguments)
			msg.ToolCalls = append(msg.ToolCalls, sdk.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: b.String()})
		}
		msgs = append(msgs, msg)
	}
	var tools []sdk.Tool
	for _, tl := range c.Tools {
		tools = append(tools, sdk.Tool{Name: tl.Function.Name, Description: tl.Function.Description, Parameters: tl.Function.Parameters})
	}
	return msgs, tools
}

// TestToolsRenderAsTheReference: a request's tools, tool calls and tool results, as
// the plugin gets them, render through the real templates exactly as the reference
// renders the same conversation.
func TestToolsRenderAsTheReference(t *testing.T) {
	dir := filepath.Join("testdata", "templates")
	fixed := time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)
	checked := 0
	for _, family := range []string{"qwen2.5", "qwen3", "llama3.2", "mistral"} {
		src, err := os.ReadFile(filepath.Join(dir, family+".jinja"))
		if err != nil {
			t.Fatal(err)
		}
		tpl, err := compileJinja(string(src))
		if err != nil {
			t.Fatal(err)
		}
		f := families[family]
		syntax, generic := toolSyntaxOf(string(src))
		if generic {
			t.Fatalf("%s: the template renders tools, yet it was taken for one that does not", family)
		}
		tmpl := chatTemplate{jinja: tpl, bos: f.bos, eos: f.eos, now: func() time.Time { return fixed }, tools: syntax}
		for _, c := range []string{"tools", "toolcall", "toolresult"} {
			raw, err := os.ReadFile(filepath.Join(dir, "cases", c+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var flags struct {
				AddGenerationPrompt bool `json:"add_generation_prompt"`
			}
			if json.Unmarshal(raw, &flags); !flags.AddGenerationPrompt {
				continue // a request's prompt always ends with the answer's start
			}
			msgs, tools := caseRequest(t, raw)
			want, err := os.ReadFile(filepath.Join(dir, "golden", family+"__"+c+".txt"))
			if err != nil {
				continue // the reference refuses it (or renders with extra variables)
			}
			if f.vars != nil {
				continue // needs date_string, which a request does not set
			}
			got, err := tmpl.apply(msgs, tools...)
			if err != nil || got != string(want) {
				t.Errorf("%s × %s: %v\n got %q\nwant %q", family, c, err, got, want)
			}
			checked++
		}
	}
	if checked < 4 {
		t.Fatalf("only %d renderings checked", checked)
	}
}

// TestParseToolCalls: the calls of each family's syntax, and answers that are not
// (only) calls.
func TestParseToolCalls(t *testing.T) {
	for _, tc := range []struct {
		syntax toolSyntax
		text   string
		want   string // "name args|name args", "" when not calls
	}{
		{hermesSyntax, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>", `f {"a":1}`},
		{hermesSyntax, "<tool_call>\n{\"name\":\"f\",\"arguments\":{}}\n</tool_call>\n<tool_call>\n{\"name\":\"g\",\"arguments\":{\"b\":\"北\"}}\n</tool_call>", `f {}|g {"b":"北"}`},
		{hermesSyntax, "Sure. <tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>", ""},
		{hermesSyntax, "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call> and more", ""},
		{llama3Syntax, `{"name": "f", "parameters": {"x": true}}`, `f {"x":true}`},
		{llama3Syntax, `<|python_tag|>{"name": "f", "parameters": {}}`, `f {}`},
		{llama3Syntax, `{"name": "f", "parameters": {}}{"name": "g", "parameters": {}}`, ""},
		{llama3Syntax, `{"answer": 42}`, ""},
		{mistralSyntax, `[TOOL_CALLS][{"name": "f", "arguments": {"a": [1]}, "id": "abc123XYZ"}, {"name": "g", "arguments": {}, "id": "000000000"}]`, `f {"a":[1]}|g {}`},
		{genericSyntax, `{"tool_calls":[{"name":"f","arguments":{"q":"x"}}]}`, `f {"q":"x"}`},
		{genericSyntax, `{"tool_calls":[{"name":"f","arguments":"x"}]}`, ""},
		{genericSyntax, `{"tool_calls":[]}`, ""},
		{genericSyntax, `Hello`, ""},
	} {
		calls, ok := parseToolCalls(tc.syntax, tc.text)
		var got []string
		for _, c := range calls {
			got = append(got, c.Name+" "+c.Arguments)
		}
		if g := strings.Join(got, "|"); g != tc.want || ok != (tc.want != "") {
			t.Errorf("%s %q: %q (%v), want %q", tc.syntax.name, tc.text, g, ok, tc.want)
		}
	}
}

var weatherTools = []sdk.Tool{
	{Name: "get_weather", Description: "The weather in a city.", Parameters: []byte(`{"type": "object", "properties": {
		"city": {"type": "string", "minLength": 1, "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]}},
		"required": ["city", "unit"], "additionalProperties": false}`)},
	{Name: "get_time", Description: "The time in a timezone.", Parameters: []byte(`{"type": "object", "properties": {
		"timezone": {"type": "string", "maxLength": 30}, "hour24": {"type": "boolean"}}, "required": ["timezone"], "additionalProperties": false}`)},
}

// TestRequiredToolCallsAlwaysValidate: the random-weight demo model (its ChatML
// template does not render tools: the generic syntax) asked for a required call, 50
// times at temperature 1, always calls a tool it was given with arguments valid for
// that tool; a named call always calls that one; the result of a call fed back is a
// conversation it goes on with.
func TestRequiredToolCallsAlwaysValidate(t *testing.T) {
	p := launch(t, map[string]any{"context_length": 2048})
	schemas := map[string]*jsonschema.Schema{}
	for _, tl := range weatherTools {
		c := jsonschema.NewCompiler()
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(tl.Parameters))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.AddResource(tl.Name+".json", doc)
		if schemas[tl.Name], err = c.Compile(tl.Name + ".json"); err != nil {
			t.Fatal(err)
		}
	}
	msgs := []sdk.Message{{Role: "user", Content: "What is the weather in Paris?"}}
	one := false
	call := func(seed int64, choice sdk.ToolChoice, parallel *bool) (sdk.Event, []sdk.ToolCallDelta) {
		var final sdk.Event
		var deltas []sdk.ToolCallDelta
		err := p.Generate(t.Context(), sdk.GenerateRequest{Messages: msgs, Tools: weatherTools, ToolChoice: &choice, ParallelToolCalls: parallel,
			Sampling: sdk.Sampling{Temperature: f64(1), Seed: i64(seed), MaxTokens: 1500}}, func(e sdk.Event) error {
			if e.Text != "" {
				t.Errorf("text %q in an answer that must be calls", e.Text)
			}
			deltas = append(deltas, e.ToolCalls...)
			if e.Final() {
				final = e
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return final, deltas
	}
	for i := range 50 {
		// One call each (parallel_tool_calls false), then several allowed: the
		// random model calls until the bound of a constrained answer.
		parallel := &one
		if i >= 45 {
			parallel = nil
		}
		final, deltas := call(int64(i), sdk.ToolChoice{Mode: sdk.ToolChoiceRequired}, parallel)
		if final.FinishReason != sdk.FinishToolCalls || len(deltas) == 0 || parallel != nil && len(deltas) != 1 || len(deltas) > maxParallelCalls {
			t.Fatalf("answer %d: %q with %d calls", i, final.FinishReason, len(deltas))
		}
		for j, d := range deltas {
			s := schemas[d.Name]
			if s == nil || d.Index != j || !strings.HasPrefix(d.ID, "call_") {
				t.Fatalf("answer %d: call %+v", i, d)
			}
			v, err := jsonschema.UnmarshalJSON(strings.NewReader(d.Arguments))
			if err != nil || s.Validate(v) != nil {
				t.Fatalf("answer %d: the arguments of %s do not validate: %v %#v\n%s", i, d.Name, err, s.Validate(v), d.Arguments)
			}
		}
	}
	for i := range 10 {
		final, deltas := call(int64(100+i), sdk.ToolChoice{Mode: sdk.ToolChoiceFunction, Name: "get_time"}, &one)
		if final.FinishReason != sdk.FinishToolCalls || len(deltas) == 0 || deltas[0].Name != "get_time" {
			t.Fatalf("named call %d: %q %+v", i, final.FinishReason, deltas)
		}
	}
	// A tool's result, fed back.
	final, deltas := call(7, sdk.ToolChoice{Mode: sdk.ToolChoiceRequired}, &one)
	history := append(append([]sdk.Message{}, msgs...),
		sdk.Message{Role: "assistant", ToolCalls: []sdk.ToolCall{{ID: deltas[0].ID, Name: deltas[0].Name, Arguments: deltas[0].Arguments}}},
		sdk.Message{Role: "tool", ToolCallID: deltas[0].ID, Content: `{"temperature": 18}`})
	r := run(t, p, sdk.GenerateRequest{Messages: history, Tools: weatherTools, ToolChoice: &sdk.ToolChoice{Mode: sdk.ToolChoiceNone},
		Sampling: sdk.Sampling{Temperature: f64(0), MaxTokens: 8}})
	if final.FinishReason != sdk.FinishToolCalls || r.final.FinishReason == sdk.FinishToolCalls || r.final.Usage.PromptTokens == 0 {
		t.Fatalf("after the tool's result: %+v", r.final)
	}
	// Refused: a named function that is not a tool, a required call without tools.
	for _, req := range []sdk.GenerateRequest{
		{Messages: msgs, Tools: weatherTools, ToolChoice: &sdk.ToolChoice{Mode: sdk.ToolChoiceFunction, Name: "nope"}},
		{Messages: msgs, ToolChoice: &sdk.ToolChoice{Mode: sdk.ToolChoiceRequired}},
	} {
		if err := p.Generate(t.Context(), req, func(sdk.Event) error { return nil }); !sdk.IsInvalidRequest(err) {
			t.Errorf("%+v: %v, want an invalid request", req.ToolChoice, err)
		}
	}
}
