package oai

import (
	"encoding/json"
	"errors"
	"regexp"

	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugin-sdk/gbnf"
)

// wireSchema names and gives a JSON Schema: chat's response_format.json_schema,
// or the same fields beside "type" in Responses' text.format.
type wireSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description"`
	Schema      json.RawMessage `json:"schema"`
	Strict      *bool           `json:"strict"`
}

// responseFormat is the response_format object of a chat request.
type responseFormat struct {
	Type       string      `json:"type"`
	JSONSchema *wireSchema `json:"json_schema"`
}

// textFormat is the text.format object of a Responses request.
type textFormat struct {
	Type string `json:"type"`
	wireSchema
}

var schemaNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// ResponseFormat reads a chat request's response_format (param names it, e.g.
// "response_format" or "params.response_format"): nil for none or {"type":
// "text"}; a JSON object, or JSON of a schema, otherwise. A schema the backends'
// grammar cannot express is a 400 naming what in it (see package gbnf).
func ResponseFormat(raw json.RawMessage, param string) (*sdk.ResponseFormat, *Error) {
	if IsNull(raw) {
		return nil, nil
	}
	var f responseFormat
	if err := Decode(raw, &f, param); err != nil {
		return nil, err
	}
	if k := UnknownField(raw, &f); k != "" {
		return nil, Invalid(param+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", param, k)
	}
	wantSchema, err := formatType(f.Type, param)
	if err != nil {
		return nil, err
	}
	switch {
	case !wantSchema && f.JSONSchema != nil:
		return nil, Invalid(param+".json_schema", CodeInvalidValue, "'%s.json_schema' goes with type json_schema", param)
	case !wantSchema:
		return formatOf(f.Type), nil
	case f.JSONSchema == nil:
		return nil, Missing(param + ".json_schema")
	}
	if k := UnknownField(jsonField(raw, "json_schema"), f.JSONSchema); k != "" {
		return nil, Invalid(param+".json_schema."+k, "unknown_parameter", "unknown parameter '%s.json_schema.%s'", param, k)
	}
	return f.JSONSchema.format(param + ".json_schema")
}

// TextFormat reads a Responses request's text.format (param names it): {"type":
// "text"} (nil), {"type": "json_object"}, or {"type": "json_schema", "name",
// "schema"?, "strict"?, "description"?}, checked as ResponseFormat checks chat's.
func TextFormat(raw json.RawMessage, param string) (*sdk.ResponseFormat, *Error) {
	if IsNull(raw) {
		return nil, nil
	}
	var f textFormat
	if err := Decode(raw, &f, param); err != nil {
		return nil, err
	}
	if k := UnknownField(raw, &f); k != "" {
		return nil, Invalid(param+"."+k, "unknown_parameter", "unknown parameter '%s.%s'", param, k)
	}
	wantSchema, err := formatType(f.Type, param)
	if err != nil {
		return nil, err
	}
	if !wantSchema {
		if k := UnknownField(raw, &struct {
			Type string `json:"type"`
		}{}); k != "" {
			return nil, Invalid(param+"."+k, CodeInvalidValue, "'%s.%s' goes with type json_schema", param, k)
		}
		return formatOf(f.Type), nil
	}
	return f.format(param)
}

// formatType checks a format's type (param names the format): whether it is
// json_schema, or else text or json_object.
func formatType(typ, param string) (bool, *Error) {
	switch typ {
	case "text", "json_object":
		return false, nil
	case "json_schema":
		return true, nil
	case "":
		return false, Missing(param + ".type")
	}
	return false, Invalid(param+".type", CodeInvalidValue, "invalid value for '%s.type': '%s'; it must be text, json_object or json_schema", param, typ)
}

// formatOf is the format of type text (none) or json_object.
func formatOf(typ string) *sdk.ResponseFormat {
	if typ == "json_object" {
		return &sdk.ResponseFormat{Type: sdk.ResponseJSONObject}
	}
	return nil
}

// format checks the name and schema (param names the object holding them).
func (js *wireSchema) format(param string) (*sdk.ResponseFormat, *Error) {
	if !schemaNameRE.MatchString(js.Name) {
		return nil, Invalid(param+".name", CodeInvalidValue, "'%s.name' is 1 to 64 letters, digits, '_' or '-'", param)
	}
	schema := []byte(js.Schema)
	if IsNull(js.Schema) {
		schema = []byte(`{}`) // no schema: any JSON value
	}
	if err := grammarCheck(schema, param+".schema"); err != nil {
		return nil, err
	}
	return &sdk.ResponseFormat{Type: sdk.ResponseJSONSchema, Schema: schema}, nil
}

// grammarCheck refuses a schema the backends' grammar cannot express, naming
// param: unsupported keywords as such, anything else as an invalid value.
func grammarCheck(schema []byte, param string) *Error {
	_, err := gbnf.FromSchema(schema)
	if err == nil {
		return nil
	}
	var ue *gbnf.UnsupportedError
	if errors.As(err, &ue) {
		return Invalid(param, CodeUnsupported, "%s: %s", param, ue.Error())
	}
	return Invalid(param, CodeInvalidValue, "%s: %v", param, err)
}

// jsonField returns the value of key in the JSON object raw (nil if none).
func jsonField(raw json.RawMessage, key string) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	return obj[key]
}
