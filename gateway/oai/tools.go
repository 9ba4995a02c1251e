package oai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugin-sdk/gbnf"
)

// MaxTools bounds the tools of one request.
const MaxTools = 128

// wireTool is one entry of a request's tools.
type wireTool struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

// wireToolCall is one of an assistant message's tool_calls.
type wireToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function *struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// Tools reads a chat request's tools, tool_choice and parallel_tool_calls (param
// prefix: "" or "params."): the functions, and whether and which the model calls
// (nil choice: auto, or none without tools). A function's parameters must be a JSON
// Schema object; when a call is required, a schema the backends' grammar cannot
// express is a 400 naming it.
func Tools(rawTools, rawChoice json.RawMessage, prefix string) ([]sdk.Tool, *sdk.ToolChoice, *Error) {
	var tools []sdk.Tool
	if !IsNull(rawTools) {
		if firstByte(rawTools) != '[' {
			return nil, nil, Invalid(prefix+"tools", CodeInvalidType, "invalid type for '%stools': expected an array", prefix)
		}
		var elems []json.RawMessage
		if err := json.Unmarshal(rawTools, &elems); err != nil {
			return nil, nil, Invalid(prefix+"tools", CodeInvalidJSON, "invalid '%stools': %v", prefix, err)
		}
		if len(elems) > MaxTools {
			return nil, nil, Invalid(prefix+"tools", CodeInvalidValue, "'%stools' holds at most %d tools", prefix, MaxTools)
		}
		seen := map[string]bool{}
		for i, el := range elems {
			p := fmt.Sprintf("%stools[%d]", prefix, i)
			var w wireTool
			if err := Decode(el, &w, p); err != nil {
				return nil, nil, err
			}
			if k := UnknownField(el, &w); k != "" {
				return nil, nil, Invalid(p+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", p, k)
			}
			if w.Type != "function" {
				return nil, nil, Invalid(p+".type", CodeInvalidValue, "'%s.type' must be \"function\"", p)
			}
			if w.Function == nil {
				return nil, nil, Missing(p + ".function")
			}
			if k := UnknownField(jsonField(el, "function"), w.Function); k != "" {
				return nil, nil, Invalid(p+".function."+k, "unknown_parameter", "unknown parameter '%s.function.%s'", p, k)
			}
			if !schemaNameRE.MatchString(w.Function.Name) {
				return nil, nil, Invalid(p+".function.name", CodeInvalidValue, "'%s.function.name' is 1 to 64 letters, digits, '_' or '-'", p)
			}
			if seen[w.Function.Name] {
				return nil, nil, Invalid(p+".function.name", CodeInvalidValue, "two tools are named '%s'", w.Function.Name)
			}
			seen[w.Function.Name] = true
			if err := CheckText(p+".function.description", w.Function.Description); err != nil {
				return nil, nil, err
			}
			var params []byte
			if !IsNull(w.Function.Parameters) {
				var probe struct {
					Type json.RawMessage `json:"type"`
				}
				if firstByte(w.Function.Parameters) != '{' || json.Unmarshal(w.Function.Parameters, &probe) != nil {
					return nil, nil, Invalid(p+".function.parameters", CodeInvalidType, "'%s.function.parameters' must be a JSON Schema object", p)
				}
				if len(probe.Type) > 0 && string(bytes.TrimSpace(probe.Type)) != `"object"` {
					return nil, nil, Invalid(p+".function.parameters", CodeInvalidValue, "'%s.function.parameters' describes the arguments, an object: its type is \"object\"", p)
				}
				var b bytes.Buffer
				_ = json.Compact(&b, w.Function.Parameters)
				params = b.Bytes()
			}
			tools = append(tools, sdk.Tool{Name: w.Function.Name, Description: w.Function.Description, Parameters: params})
		}
	}
	choice, err := toolChoice(rawChoice, prefix, tools)
	if err != nil {
		return nil, nil, err
	}
	if choice != nil && (choice.Mode == sdk.ToolChoiceRequired || choice.Mode == sdk.ToolChoiceFunction) {
		// A required call is decoded under a grammar of the parameters.
		for i, t := range tools {
			if choice.Mode == sdk.ToolChoiceFunction && t.Name != choice.Name || len(t.Parameters) == 0 {
				continue
			}
			if _, err := gbnf.FromSchema(t.Parameters); err != nil {
				p := fmt.Sprintf("%stools[%d].function.parameters", prefix, i)
				var ue *gbnf.UnsupportedError
				if errors.As(err, &ue) {
					return nil, nil, Invalid(p, CodeUnsupported, "%s: %s", p, ue.Error())
				}
				return nil, nil, Invalid(p, CodeInvalidValue, "%s: %v", p, err)
			}
		}
	}
	return tools, choice, nil
}

// toolChoice reads tool_choice: "none", "auto", "required" or {"type": "function",
// "function": {"name"}} naming one of tools.
func toolChoice(raw json.RawMessage, prefix string, tools []sdk.Tool) (*sdk.ToolChoice, *Error) {
	p := prefix + "tool_choice"
	if IsNull(raw) {
		return nil, nil
	}
	var c sdk.ToolChoice
	switch firstByte(raw) {
	case '"':
		var s string
		_ = json.Unmarshal(raw, &s)
		switch s {
		case "none", "auto", "required":
			c.Mode = s
		default:
			return nil, Invalid(p, CodeInvalidValue, "invalid value for '%s': '%s'; it must be none, auto, required or a function", p, s)
		}
	case '{':
		var f struct {
			Type     string `json:"type"`
			Function *struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if err := Decode(raw, &f, p); err != nil {
			return nil, err
		}
		if f.Type != "function" || f.Function == nil {
			return nil, Invalid(p, CodeInvalidValue, "'%s' names a function as {\"type\": \"function\", \"function\": {\"name\": …}}", p)
		}
		c = sdk.ToolChoice{Mode: sdk.ToolChoiceFunction, Name: f.Function.Name}
	default:
		return nil, Invalid(p, CodeInvalidType, "invalid type for '%s': expected a string or an object", p)
	}
	switch {
	case c.Mode == sdk.ToolChoiceFunction && !hasTool(tools, c.Name):
		return nil, Invalid(p, CodeInvalidValue, "'%s' names '%s', which is not among the tools", p, c.Name)
	case len(tools) == 0 && c.Mode == sdk.ToolChoiceRequired:
		return nil, Invalid(p, CodeInvalidValue, "'%s' is required, but there are no tools", p)
	}
	return &c, nil
}

func hasTool(tools []sdk.Tool, name string) bool {
	for _, t := range tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

// toolCalls reads an assistant message's tool_calls (param names them).
func toolCalls(raw []wireToolCall, param string) ([]sdk.ToolCall, *Error) {
	out := make([]sdk.ToolCall, 0, len(raw))
	for j, c := range raw {
		p := fmt.Sprintf("%s[%d]", param, j)
		switch {
		case c.ID == "":
			return nil, Missing(p + ".id")
		case c.Type != "function":
			return nil, Invalid(p+".type", CodeInvalidValue, "'%s.type' must be \"function\"", p)
		case c.Function == nil || c.Function.Name == "":
			return nil, Missing(p + ".function.name")
		case !json.Valid([]byte(c.Function.Arguments)):
			return nil, Invalid(p+".function.arguments", CodeInvalidValue, "'%s.function.arguments' must be JSON text", p)
		}
		for _, f := range []struct{ name, s string }{{".id", c.ID}, {".function.name", c.Function.Name}, {".function.arguments", c.Function.Arguments}} {
			if err := CheckText(p+f.name, f.s); err != nil {
				return nil, err
			}
		}
		out = append(out, sdk.ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments})
	}
	return out, nil
}
