package oai

import (
	"encoding/json"
	"errors"
	"regexp"

	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugin-sdk/gbnf"
)

// responseFormat is the response_format object of a chat request.
type responseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Schema      json.RawMessage `json:"schema"`
		Strict      *bool           `json:"strict"`
	} `json:"json_schema"`
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
	switch f.Type {
	case "text":
		if f.JSONSchema != nil {
			return nil, Invalid(param+".json_schema", CodeInvalidValue, "'%s.json_schema' goes with type json_schema", param)
		}
		return nil, nil
	case "json_object":
		if f.JSONSchema != nil {
			return nil, Invalid(param+".json_schema", CodeInvalidValue, "'%s.json_schema' goes with type json_schema", param)
		}
		return &sdk.ResponseFormat{Type: sdk.ResponseJSONObject}, nil
	case "json_schema":
	case "":
		return nil, Missing(param + ".type")
	default:
		return nil, Invalid(param+".type", CodeInvalidValue, "invalid value for '%s.type': '%s'; it must be text, json_object or json_schema", param, f.Type)
	}
	js := f.JSONSchema
	if js == nil {
		return nil, Missing(param + ".json_schema")
	}
	if k := UnknownField(jsonField(raw, "json_schema"), js); k != "" {
		return nil, Invalid(param+".json_schema."+k, "unknown_parameter", "unknown parameter '%s.json_schema.%s'", param, k)
	}
	if !schemaNameRE.MatchString(js.Name) {
		return nil, Invalid(param+".json_schema.name", CodeInvalidValue, "'%s.json_schema.name' is 1 to 64 letters, digits, '_' or '-'", param)
	}
	schema := []byte(js.Schema)
	if IsNull(js.Schema) {
		schema = []byte(`{}`) // no schema: any JSON value
	}
	if _, err := gbnf.FromSchema(schema); err != nil {
		var ue *gbnf.UnsupportedError
		p := param + ".json_schema.schema"
		if errors.As(err, &ue) {
			return nil, Invalid(p, CodeUnsupported, "%s: %s", p, ue.Error())
		}
		return nil, Invalid(p, CodeInvalidValue, "%s: %v", p, err)
	}
	return &sdk.ResponseFormat{Type: sdk.ResponseJSONSchema, Schema: schema}, nil
}

// jsonField returns the value of key in the JSON object raw (nil if none).
func jsonField(raw json.RawMessage, key string) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	return obj[key]
}
