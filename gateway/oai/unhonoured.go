package oai

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
)

// Unhonoured holds the chat-completion fields OpenAI defines that change the answer
// and that the gateway does not implement: a request that sets one to anything but
// its neutral value (none, empty, plain text) is refused with a 400 naming it, never
// answered as if it were not there. Embed it in a request type and call Check.
type Unhonoured struct {
	Tools            json.RawMessage `json:"tools"`
	ToolChoice       json.RawMessage `json:"tool_choice"`
	Functions        json.RawMessage `json:"functions"`
	FunctionCall     json.RawMessage `json:"function_call"`
	LogitBias        json.RawMessage `json:"logit_bias"`
	Modalities       json.RawMessage `json:"modalities"`
	Audio            json.RawMessage `json:"audio"`
	Prediction       json.RawMessage `json:"prediction"`
	ReasoningEffort  json.RawMessage `json:"reasoning_effort"`
	Verbosity        json.RawMessage `json:"verbosity"`
	WebSearchOptions json.RawMessage `json:"web_search_options"`
}

// unhonoured lists Unhonoured's fields with the values that leave the answer as it
// would be without them (besides null).
var unhonoured = []struct {
	name    string
	field   func(*Unhonoured) json.RawMessage
	neutral []string
	what    string
}{
	{"tools", func(u *Unhonoured) json.RawMessage { return u.Tools }, []string{`[]`}, "tool calling"},
	{"tool_choice", func(u *Unhonoured) json.RawMessage { return u.ToolChoice }, []string{`"none"`}, "tool calling"},
	{"functions", func(u *Unhonoured) json.RawMessage { return u.Functions }, []string{`[]`}, "function calling"},
	{"function_call", func(u *Unhonoured) json.RawMessage { return u.FunctionCall }, []string{`"none"`}, "function calling"},
	{"logit_bias", func(u *Unhonoured) json.RawMessage { return u.LogitBias }, []string{`{}`}, "logit bias"},
	{"modalities", func(u *Unhonoured) json.RawMessage { return u.Modalities }, []string{`["text"]`}, "output modalities other than text"},
	{"audio", func(u *Unhonoured) json.RawMessage { return u.Audio }, nil, "audio output"},
	{"prediction", func(u *Unhonoured) json.RawMessage { return u.Prediction }, nil, "predicted outputs"},
	{"reasoning_effort", func(u *Unhonoured) json.RawMessage { return u.ReasoningEffort }, nil, "reasoning effort"},
	{"verbosity", func(u *Unhonoured) json.RawMessage { return u.Verbosity }, nil, "verbosity"},
	{"web_search_options", func(u *Unhonoured) json.RawMessage { return u.WebSearchOptions }, nil, "web search"},
}

// Check returns the 400 for the first field set to a value other than null or its
// neutral one, naming it (with prefix, e.g. "params."); nil if there is none.
func (u *Unhonoured) Check(prefix string) *Error {
	for _, f := range unhonoured {
		raw := f.field(u)
		if isNull(raw) {
			continue
		}
		var b bytes.Buffer
		if json.Compact(&b, raw) == nil && slices.Contains(f.neutral, b.String()) {
			continue
		}
		return Unsupported(prefix+f.name, "'%s' is not supported: this gateway does not implement %s", prefix+f.name, f.what)
	}
	return nil
}

// UnknownField returns the first key (in sorted order) of the JSON object data that
// the struct v points to has no field for, embedded structs' fields included; "" when
// every key is known or data is not an object.
func UnknownField(data []byte, v any) string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return ""
	}
	known := map[string]bool{}
	jsonFields(reflect.TypeOf(v).Elem(), known)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !known[k] {
			return k
		}
	}
	return ""
}

// jsonFields adds the JSON names of struct type t's fields to into.
func jsonFields(t reflect.Type, into map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			jsonFields(f.Type, into)
		case name == "-" || !f.IsExported():
		case name == "":
			into[f.Name] = true
		default:
			into[name] = true
		}
	}
}
