package oai

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// TestToolShapes checks that chat's and Responses' shapes of tools, tool_choice
// and a JSON Schema format are read alike, and that each refusal names the field
// in the shape the client sent.
func TestToolShapes(t *testing.T) {
	const params = `{"type":"object","properties":{"city":{"type":"string"}}}`
	chatTools := `[{"type":"function","function":{"name":"get_weather","description":"d","parameters":` + params + `}}]`
	flatTools := `[{"type":"function","name":"get_weather","description":"d","parameters":` + params + `}]`
	ct, cc, err := Tools(json.RawMessage(chatTools), json.RawMessage(`{"type":"function","function":{"name":"get_weather"}}`), "")
	if err != nil {
		t.Fatalf("chat tools: %v", err)
	}
	ft, fc, err := ResponsesTools(json.RawMessage(flatTools), json.RawMessage(`{"type":"function","name":"get_weather"}`))
	if err != nil {
		t.Fatalf("responses tools: %v", err)
	}
	if len(ct) != 1 || ct[0].Name != "get_weather" || string(ct[0].Parameters) != params || !reflect.DeepEqual(ct, ft) || !reflect.DeepEqual(cc, fc) {
		t.Fatalf("chat %+v %+v, responses %+v %+v", ct, cc, ft, fc)
	}

	refused := []struct {
		tools, choice, param, code string
		flat                       bool
	}{
		{`[{"type":"function","function":{"name":"a b"}}]`, ``, "tools[0].function.name", CodeInvalidValue, false},
		{`[{"type":"function","name":"a b"}]`, ``, "tools[0].name", CodeInvalidValue, true},
		{`[{"type":"function","function":{"name":"f","extra":1}}]`, ``, "tools[0].function.extra", "unknown_parameter", false},
		{`[{"type":"function","name":"f","extra":1}]`, ``, "tools[0].extra", "unknown_parameter", true},
		{`[{"type":"web_search"}]`, ``, "tools[0].type", CodeInvalidValue, true},
		{`[{"type":"function","name":"f"},{"type":"function","name":"f"}]`, ``, "tools[1].name", CodeInvalidValue, true},
		{`[{"type":"function","name":"f","parameters":{"type":"string"}}]`, ``, "tools[0].parameters", CodeInvalidValue, true},
		{`[{"type":"function","function":{"name":"f","parameters":{"type":"object","not":{}}}}]`, `"required"`, "tools[0].function.parameters", CodeUnsupported, false},
		{`[{"type":"function","name":"f","parameters":{"type":"object","not":{}}}]`, `"required"`, "tools[0].parameters", CodeUnsupported, true},
		{`[{"type":"function","name":"f"}]`, `{"type":"function","name":"g"}`, "tool_choice", CodeInvalidValue, true},
		{`[{"type":"function","function":{"name":"f"}}]`, `{"type":"function","name":"f"}`, "tool_choice", CodeInvalidValue, false},
		{`[{"type":"function","name":"f"}]`, `{"type":"function","function":{"name":"f"}}`, "tool_choice.function", "unknown_parameter", true},
		{``, `"required"`, "tool_choice", CodeInvalidValue, true},
		{`[{"type":"function","name":"f"}]`, `{"type":"function","name":"f","strict":true}`, "tool_choice.strict", "unknown_parameter", true},
		{`[{"type":"function","function":{"name":"f"}}]`, `{"type":"function","function":{"name":"f"},"x":1}`, "tool_choice.x", "unknown_parameter", false},
		{`[{"type":"function","function":{"name":"f"}}]`, `{"type":"function","function":{"name":"f","x":1}}`, "tool_choice.function.x", "unknown_parameter", false},
	}
	for _, tc := range refused {
		read := Tools
		if tc.flat {
			read = func(tools, choice json.RawMessage, _ string) ([]sdk.Tool, *sdk.ToolChoice, *Error) {
				return ResponsesTools(tools, choice)
			}
		}
		_, _, err := read(json.RawMessage(tc.tools), json.RawMessage(tc.choice), "")
		if err == nil || err.Param != tc.param || err.Code != tc.code {
			t.Errorf("tools %s choice %s: %+v, want %s naming %s", tc.tools, tc.choice, err, tc.code, tc.param)
		}
	}
}

func TestFormatShapes(t *testing.T) {
	const schema = `{"type":"object","properties":{"name":{"type":"string"}}}`
	chat, err := ResponseFormat(json.RawMessage(`{"type":"json_schema","json_schema":{"name":"person","strict":true,"schema":`+schema+`}}`), "response_format")
	if err != nil {
		t.Fatal(err)
	}
	flat, err := TextFormat(json.RawMessage(`{"type":"json_schema","name":"person","strict":true,"schema":`+schema+`}`), "text.format")
	if err != nil || !reflect.DeepEqual(chat, flat) || string(flat.Schema) != schema {
		t.Fatalf("chat %+v, responses %+v (%v)", chat, flat, err)
	}
	for _, typ := range []string{"text", "json_object"} {
		a, err1 := ResponseFormat(json.RawMessage(`{"type":"`+typ+`"}`), "response_format")
		b, err2 := TextFormat(json.RawMessage(`{"type":"`+typ+`"}`), "text.format")
		if err1 != nil || err2 != nil || !reflect.DeepEqual(a, b) || (typ == "text") != (a == nil) {
			t.Errorf("%s: chat %+v %v, responses %+v %v", typ, a, err1, b, err2)
		}
	}
	refused := []struct {
		raw, param, code string
		flat             bool
	}{
		{`{"type":"json_schema","json_schema":{"name":"a b"}}`, "response_format.json_schema.name", CodeInvalidValue, false},
		{`{"type":"json_schema","name":"a b"}`, "text.format.name", CodeInvalidValue, true},
		{`{"type":"json_schema","json_schema":{"name":"n","schema":{"not":{}}}}`, "response_format.json_schema.schema", CodeUnsupported, false},
		{`{"type":"json_schema","name":"n","schema":{"not":{}}}`, "text.format.schema", CodeUnsupported, true},
		{`{"type":"json_schema","name":"n","extra":1}`, "text.format.extra", "unknown_parameter", true},
		{`{"type":"json_schema"}`, "response_format.json_schema", CodeMissingParam, false},
		{`{"type":"xml"}`, "text.format.type", CodeInvalidValue, true},
		{`{"name":"n"}`, "text.format.type", CodeMissingParam, true},
		{`{"type":"text","json_schema":{"name":"n"}}`, "response_format.json_schema", CodeInvalidValue, false},
		{`{"type":"text","schema":{}}`, "text.format.schema", CodeInvalidValue, true},
	}
	for _, tc := range refused {
		read, param := ResponseFormat, "response_format"
		if tc.flat {
			read, param = TextFormat, "text.format"
		}
		_, err := read(json.RawMessage(tc.raw), param)
		if err == nil || err.Param != tc.param || err.Code != tc.code {
			t.Errorf("%s: %+v, want %s naming %s", tc.raw, err, tc.code, tc.param)
		}
	}
}

// An assistant message in a request holds at most sdk.MaxToolCalls calls.
func TestMessagesBoundToolCalls(t *testing.T) {
	call := `{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}`
	many := func(n int) json.RawMessage {
		calls := make([]string, n)
		for i := range calls {
			calls[i] = call
		}
		return json.RawMessage(`[{"role":"assistant","content":null,"tool_calls":[` + strings.Join(calls, ",") + `]}]`)
	}
	if _, err := Messages(many(sdk.MaxToolCalls), "messages"); err != nil {
		t.Fatalf("%d calls: %v", sdk.MaxToolCalls, err)
	}
	if _, err := Messages(many(sdk.MaxToolCalls+1), "messages"); err == nil || err.Param != "messages[0].tool_calls" {
		t.Fatalf("%d calls: %+v, want a refusal naming messages[0].tool_calls", sdk.MaxToolCalls+1, err)
	}
}
