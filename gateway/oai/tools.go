package oai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// MaxTools bounds the tools of one request.
const MaxTools = 128

// wireFunction defines a function: chat's tools[i].function, or the same fields
// beside "type" in a Responses tool.
type wireFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
}

// wireTool is one entry of a chat request's tools.
type wireTool struct {
	Type     string        `json:"type"`
	Function *wireFunction `json:"function"`
}

// flatTool is one entry of a Responses request's tools.
type flatTool struct {
	Type string `json:"type"`
	wireFunction
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

// toolShape is where an API puts a tool's function and tool_choice's name.
type toolShape struct {
	flat bool // Responses: {"type": "function", "name", …}; chat: {"type": "function", "function": {"name", …}}
}

// fn is the param of tools[i]'s function fields (p names tools[i]).
func (sh toolShape) fn(p string) string {
	if sh.flat {
		return p
	}
	return p + ".function"
}

// Tools reads a chat request's tools, tool_choice and parallel_tool_calls (param
// prefix: "" or "params."): the functions, and whether and which the model calls
// (nil choice: auto, or none without tools). A function's parameters must be a JSON
// Schema object; when a call is required, a schema the backends' grammar cannot
// express is a 400 naming it.
func Tools(rawTools, rawChoice json.RawMessage, prefix string) ([]sdk.Tool, *sdk.ToolChoice, *Error) {
	return readTools(rawTools, rawChoice, prefix, toolShape{})
}

// ResponsesTools reads a Responses request's tools ({"type": "function", "name",
// "description"?, "parameters"?, "strict"?}) and tool_choice ("none", "auto",
// "required" or {"type": "function", "name"}), checked as Tools checks chat's.
func ResponsesTools(rawTools, rawChoice json.RawMessage) ([]sdk.Tool, *sdk.ToolChoice, *Error) {
	return readTools(rawTools, rawChoice, "", toolShape{flat: true})
}

func readTools(rawTools, rawChoice json.RawMessage, prefix string, sh toolShape) ([]sdk.Tool, *sdk.ToolChoice, *Error) {
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
			fn, err := sh.function(el, p)
			if err != nil {
				return nil, nil, err
			}
			t, err := fn.tool(sh.fn(p), seen)
			if err != nil {
				return nil, nil, err
			}
			tools = append(tools, t)
		}
	}
	choice, err := sh.toolChoice(rawChoice, prefix, tools)
	if err != nil {
		return nil, nil, err
	}
	if choice != nil && (choice.Mode == sdk.ToolChoiceRequired || choice.Mode == sdk.ToolChoiceFunction) {
		// A required call is decoded under a grammar of the parameters.
		for i, t := range tools {
			if choice.Mode == sdk.ToolChoiceFunction && t.Name != choice.Name || len(t.Parameters) == 0 {
				continue
			}
			if err := grammarCheck(t.Parameters, sh.fn(fmt.Sprintf("%stools[%d]", prefix, i))+".parameters"); err != nil {
				return nil, nil, err
			}
		}
	}
	return tools, choice, nil
}

// function reads tools[i] (el; p names it) as far as its function's fields,
// refusing unknown fields and a type other than function.
func (sh toolShape) function(el json.RawMessage, p string) (*wireFunction, *Error) {
	if sh.flat {
		var w flatTool
		if err := Decode(el, &w, p); err != nil {
			return nil, err
		}
		if k := UnknownField(el, &w); k != "" {
			return nil, Invalid(p+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", p, k)
		}
		if w.Type != "function" {
			return nil, Invalid(p+".type", CodeInvalidValue, "'%s.type' must be \"function\"", p)
		}
		return &w.wireFunction, nil
	}
	var w wireTool
	if err := Decode(el, &w, p); err != nil {
		return nil, err
	}
	if k := UnknownField(el, &w); k != "" {
		return nil, Invalid(p+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", p, k)
	}
	if w.Type != "function" {
		return nil, Invalid(p+".type", CodeInvalidValue, "'%s.type' must be \"function\"", p)
	}
	if w.Function == nil {
		return nil, Missing(p + ".function")
	}
	if k := UnknownField(jsonField(el, "function"), w.Function); k != "" {
		return nil, Invalid(p+".function."+k, "unknown_parameter", "unknown parameter '%s.function.%s'", p, k)
	}
	return w.Function, nil
}

// tool checks a function's name (unique among seen), description and
// parameters (a JSON Schema object); p names the object holding them.
func (f *wireFunction) tool(p string, seen map[string]bool) (sdk.Tool, *Error) {
	if !schemaNameRE.MatchString(f.Name) {
		return sdk.Tool{}, Invalid(p+".name", CodeInvalidValue, "'%s.name' is 1 to 64 letters, digits, '_' or '-'", p)
	}
	if seen[f.Name] {
		return sdk.Tool{}, Invalid(p+".name", CodeInvalidValue, "two tools are named '%s'", f.Name)
	}
	seen[f.Name] = true
	if err := CheckText(p+".description", f.Description); err != nil {
		return sdk.Tool{}, err
	}
	var params []byte
	if !IsNull(f.Parameters) {
		var probe struct {
			Type json.RawMessage `json:"type"`
		}
		if firstByte(f.Parameters) != '{' || json.Unmarshal(f.Parameters, &probe) != nil {
			return sdk.Tool{}, Invalid(p+".parameters", CodeInvalidType, "'%s.parameters' must be a JSON Schema object", p)
		}
		if len(probe.Type) > 0 && string(bytes.TrimSpace(probe.Type)) != `"object"` {
			return sdk.Tool{}, Invalid(p+".parameters", CodeInvalidValue, "'%s.parameters' describes the arguments, an object: its type is \"object\"", p)
		}
		var b bytes.Buffer
		_ = json.Compact(&b, f.Parameters)
		params = b.Bytes()
	}
	return sdk.Tool{Name: f.Name, Description: f.Description, Parameters: params}, nil
}

// toolChoice reads tool_choice: "none", "auto", "required" or an object naming
// one of tools ({"type": "function", "function": {"name"}}, or {"type":
// "function", "name"} in the flat shape).
func (sh toolShape) toolChoice(raw json.RawMessage, prefix string, tools []sdk.Tool) (*sdk.ToolChoice, *Error) {
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
		name, err := sh.choiceName(raw, p)
		if err != nil {
			return nil, err
		}
		c = sdk.ToolChoice{Mode: sdk.ToolChoiceFunction, Name: name}
	default:
		return nil, Invalid(p, CodeInvalidType, "invalid type for '%s': expected a string or an object", p)
	}
	switch {
	case c.Mode == sdk.ToolChoiceFunction && !slices.ContainsFunc(tools, func(t sdk.Tool) bool { return t.Name == c.Name }):
		return nil, Invalid(p, CodeInvalidValue, "'%s' names '%s', which is not among the tools", p, c.Name)
	case len(tools) == 0 && c.Mode == sdk.ToolChoiceRequired:
		return nil, Invalid(p, CodeInvalidValue, "'%s' is required, but there are no tools", p)
	}
	return &c, nil
}

// choiceName reads the function an object tool_choice (raw; p names it) names.
func (sh toolShape) choiceName(raw json.RawMessage, p string) (string, *Error) {
	if sh.flat {
		var f struct {
			Type string `json:"type"`
			Name string `json:"name"`
		}
		if err := Decode(raw, &f, p); err != nil {
			return "", err
		}
		if k := UnknownField(raw, &f); k != "" {
			return "", Invalid(p+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", p, k)
		}
		if f.Type != "function" {
			return "", Invalid(p, CodeInvalidValue, "'%s' names a function as {\"type\": \"function\", \"name\": …}", p)
		}
		return f.Name, nil
	}
	var f struct {
		Type     string `json:"type"`
		Function *struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := Decode(raw, &f, p); err != nil {
		return "", err
	}
	if f.Type != "function" || f.Function == nil {
		return "", Invalid(p, CodeInvalidValue, "'%s' names a function as {\"type\": \"function\", \"function\": {\"name\": …}}", p)
	}
	if k := UnknownField(raw, &f); k != "" {
		return "", Invalid(p+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", p, k)
	}
	if k := UnknownField(jsonField(raw, "function"), f.Function); k != "" {
		return "", Invalid(p+".function."+k, "unknown_parameter", "unknown parameter '%s.function.%s'", p, k)
	}
	return f.Function.Name, nil
}

// toolCalls reads an assistant message's tool_calls (param names them).
func toolCalls(raw []wireToolCall, param string) ([]sdk.ToolCall, *Error) {
	if len(raw) > sdk.MaxToolCalls {
		return nil, Invalid(param, CodeInvalidValue, "'%s' holds %d calls: at most %d", param, len(raw), sdk.MaxToolCalls)
	}
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
