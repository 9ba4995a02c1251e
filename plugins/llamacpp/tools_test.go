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
		{genericSyntax, "{\"tool_calls\": [ {\"name\": \"f\", \"arguments\": {}} ]}\n", `f {}`},
		{genericSyntax, `{"tool_calls": [{"name": "f", "arguments": {}}], "note": 1}`, ""},
		{mistralSyntax, `[{"name": "f", "arguments": {}, "id": "abc123XYZ"}]`, `f {}`},
		{mistralSyntax, `[TOOL_CALLS][{"name": "f", "arguments": {}},]`, ""},
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
			for _, d := range e.ToolCalls {
				// Pieces of one call join: its id and name, then its arguments.
				if d.Index == len(deltas) {
					deltas = append(deltas, d)
				} else if d.Index == len(deltas)-1 && d.ID == "" && d.Name == "" {
					deltas[d.Index].Arguments += d.Arguments
				} else {
					t.Errorf("a call's piece out of order: %+v after %d calls", d, len(deltas))
				}
			}
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

// TestToolOutput: how an answer's events come out when tools may be called.
func TestToolOutput(t *testing.T) {
	usage := &sdk.Usage{PromptTokens: 20}
	for _, tc := range []struct {
		name        string
		syntax      toolSyntax
		constrained bool
		parallel    bool
		texts       []string
		want        string // text|calls|finish
	}{
		{"auto, text", hermesSyntax, false, true, []string{"Hello", " there"}, "Hello there||stop"},
		{"auto, a call", hermesSyntax, false, true, []string{"<tool", "_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>"}, "|f {}|tool_calls"},
		{"auto, thinking then a call", hermesSyntax, false, true, []string{"<think>\nhmm\n</think>\n\n", "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>"}, "<think>\nhmm\n</think>|f {\"a\":1}|tool_calls"},
		{"auto, thinking then text", hermesSyntax, false, true, []string{"<think>x</think>", "Answer."}, "<think>x</think>Answer.||stop"},
		{"auto, an unknown function", hermesSyntax, false, true, []string{"<tool_call>{\"name\": \"rm\", \"arguments\": {}}</tool_call>"}, "<tool_call>{\"name\": \"rm\", \"arguments\": {}}</tool_call>||stop"},
		{"auto, JSON that is not calls", genericSyntax, false, true, []string{"{\"a\": 1}"}, "{\"a\": 1}||stop"},
		{"auto, two calls, not parallel", genericSyntax, false, false, []string{`{"tool_calls": [{"name": "f", "arguments": {}}, {"name": "f", "arguments": {"b": 2}}]}`}, "|f {}|tool_calls"},
		{"required", llama3Syntax, true, true, []string{`{"name":"f",`, `"parameters":{"x":true}}`}, `|f {"x":true}|tool_calls`},
		{"auto, arguments that do not validate", genericSyntax, false, true, []string{`{"tool_calls": [{"name": "g", "arguments": {"n": "x"}}]}`},
			`{"tool_calls": [{"name": "g", "arguments": {"n": "x"}}]}||stop`},
		{"auto, arguments that validate", genericSyntax, false, true, []string{`{"tool_calls": [{"name": "g", "arguments": {"n": 3}}]}`}, `|g {"n":3}|tool_calls`},
	} {
		var text strings.Builder
		var calls []string
		var finish sdk.FinishReason
		var gotUsage bool
		tools := []sdk.Tool{{Name: "f"}, {Name: "g", Parameters: []byte(`{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}`)}}
		o := &toolOutput{syntax: tc.syntax, constrained: tc.constrained, names: []string{"f", "g"}, parallel: tc.parallel, valid: argumentsValidator(tools), emit: func(e sdk.Event) error {
			text.WriteString(e.Text)
			for _, d := range e.ToolCalls {
				calls = append(calls, d.Name+" "+d.Arguments)
				if d.Name != "" && d.ID == "" {
					t.Errorf("%s: a call without an id", tc.name)
				}
			}
			if e.Usage != nil && !e.Final() {
				gotUsage = true
			}
			if e.Final() {
				finish = e.FinishReason
			}
			return nil
		}}
		for i, s := range tc.texts {
			e := sdk.Event{Text: s, Tokens: 1}
			if i == 0 {
				e.Usage = usage
			}
			if err := o.event(e); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.event(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{PromptTokens: 20, CompletionTokens: len(tc.texts)}}); err != nil {
			t.Fatal(err)
		}
		if got := text.String() + "|" + strings.Join(calls, ",") + "|" + string(finish); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if !gotUsage {
			t.Errorf("%s: the prompt's usage did not go out before the end", tc.name)
		}
	}
}

// TestRequiredCallsStream: a required answer's calls go out as they are decoded,
// fed one character at a time: each call's id and name once its arguments start,
// then its arguments in pieces, joining to the whole.
func TestRequiredCallsStream(t *testing.T) {
	for _, tc := range []struct {
		syntax toolSyntax
		text   string
	}{
		{genericSyntax, `{"tool_calls":[{"name":"f","arguments":{"a":"x}]\"y","b":[1,{"c":2}]}},{"name":"g","arguments":{}}]}`},
		{hermesSyntax, "<tool_call>\n{\"name\":\"f\",\"arguments\":{\"a\":\"x}]\\\"y\",\"b\":[1,{\"c\":2}]}}\n</tool_call>\n<tool_call>\n{\"name\":\"g\",\"arguments\":{}}\n</tool_call>"},
		{mistralSyntax, `[TOOL_CALLS][{"name":"f","arguments":{"a":"x}]\"y","b":[1,{"c":2}]},"id":"abc123XYZ"},{"name":"g","arguments":{},"id":"000000000"}]`},
	} {
		var events int
		calls := map[int]*sdk.ToolCall{}
		var finish sdk.FinishReason
		o := &toolOutput{syntax: tc.syntax, constrained: true, names: []string{"f", "g"}, parallel: true, emit: func(e sdk.Event) error {
			events++
			for _, d := range e.ToolCalls {
				c := calls[d.Index]
				if c == nil {
					if d.ID == "" || d.Name == "" {
						t.Fatalf("%s: a call opens without its id and name: %+v", tc.syntax.name, d)
					}
					c = &sdk.ToolCall{ID: d.ID, Name: d.Name}
					calls[d.Index] = c
				} else if d.ID != "" || d.Name != "" {
					t.Fatalf("%s: id or name again: %+v", tc.syntax.name, d)
				}
				c.Arguments += d.Arguments
			}
			if e.Final() {
				finish = e.FinishReason
			}
			return nil
		}}
		for _, r := range tc.text {
			if err := o.event(sdk.Event{Text: string(r), Tokens: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.event(sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{}}); err != nil {
			t.Fatal(err)
		}
		if len(calls) != 2 || calls[0].Name != "f" || calls[0].Arguments != `{"a":"x}]\"y","b":[1,{"c":2}]}` || calls[1].Name != "g" || calls[1].Arguments != "{}" ||
			finish != sdk.FinishToolCalls || events < 10 {
			t.Errorf("%s: calls %+v %+v, finish %q, %d events", tc.syntax.name, calls[0], calls[1], finish, events)
		}
	}
}

// A tool's schema is the client's: a reference outside it (a file of the plugin's
// host) is never loaded. The schema does not compile, and its calls are checked by
// nothing else (as any schema that does not compile).
func TestArgumentsValidatorLoadsNothing(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret.json")
	if err := os.WriteFile(secret, []byte(`{"type": "object", "required": ["secret"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"file://" + secret, secret} {
		valid := argumentsValidator([]sdk.Tool{{Name: "f", Parameters: []byte(`{"$ref": "` + ref + `"}`)}})
		if !valid(sdk.ToolCall{Name: "f", Arguments: "{}"}) {
			t.Fatalf("%s: the file's schema was read", ref)
		}
	}
}
