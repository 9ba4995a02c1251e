package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// structuredSchema uses every kind of value the grammar covers: bounded strings, an
// integer range, a non-negative number, an enum array, a nullable optional property,
// a format, and a reference to a definition.
const structuredSchema = `{
  "type": "object",
  "properties": {
    "name": {"type": "string", "minLength": 1, "maxLength": 12},
    "age": {"type": "integer", "minimum": 18, "maximum": 120},
    "temperature": {"type": "integer", "minimum": -40, "exclusiveMaximum": 55},
    "score": {"type": "number", "minimum": 0},
    "tags": {"type": "array", "items": {"enum": ["a", "b", "北京"]}, "minItems": 1, "maxItems": 3},
    "active": {"type": "boolean"},
    "nickname": {"type": ["string", "null"], "maxLength": 8},
    "born": {"type": "string", "format": "date"},
    "home": {"$ref": "#/$defs/place"}
  },
  "required": ["name", "age", "temperature", "score", "tags", "active", "home"],
  "additionalProperties": false,
  "$defs": {
    "place": {
      "type": "object",
      "properties": {"city": {"const": "Paris"}, "id": {"type": "string", "format": "uuid"}},
      "required": ["city"],
      "additionalProperties": false
    }
  }
}`

// TestStructuredOutputAlwaysValidates: 50 answers of the random-weight demo model,
// sampled at temperature 1 under the schema's grammar, all end by themselves, parse
// and validate against the schema; 20 under json_object are JSON objects.
func TestStructuredOutputAlwaysValidates(t *testing.T) {
	p := launch(t, map[string]any{"context_length": 2048})
	c := jsonschema.NewCompiler()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(structuredSchema))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	c.AssertFormat()
	schema, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	msgs := []sdk.Message{{Role: "user", Content: "Describe a person as JSON."}}
	for i := range 50 {
		r := run(t, p, sdk.GenerateRequest{Messages: msgs, Sampling: sdk.Sampling{Temperature: f64(1), Seed: i64(int64(i)), MaxTokens: 600},
			ResponseFormat: &sdk.ResponseFormat{Type: sdk.ResponseJSONSchema, Schema: []byte(structuredSchema)}})
		if r.final.FinishReason != sdk.FinishStop {
			t.Fatalf("answer %d ended with %q after %d tokens: %q", i, r.final.FinishReason, r.final.Usage.CompletionTokens, r.text)
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(r.text))
		if err != nil {
			t.Fatalf("answer %d is not JSON: %v\n%s", i, err, r.text)
		}
		if err := schema.Validate(v); err != nil {
			t.Fatalf("answer %d does not validate: %v\n%s", i, err, r.text)
		}
		if i == 0 {
			t.Logf("answer 0: %s", r.text)
		}
	}
	for i := range 20 {
		r := run(t, p, sdk.GenerateRequest{Messages: msgs, Sampling: sdk.Sampling{Temperature: f64(1), Seed: i64(int64(100 + i)), MaxTokens: 300},
			ResponseFormat: &sdk.ResponseFormat{Type: sdk.ResponseJSONObject}})
		var obj map[string]any
		if r.final.FinishReason == sdk.FinishStop {
			if err := json.NewDecoder(bytes.NewReader([]byte(r.text))).Decode(&obj); err != nil || obj == nil {
				t.Fatalf("json_object answer %d is not an object: %v\n%s", i, err, r.text)
			}
		} else if r.final.FinishReason != sdk.FinishLength || !strings.HasPrefix(r.text, "{") {
			t.Fatalf("json_object answer %d: %q %q", i, r.final.FinishReason, r.text)
		}
	}
}

// TestStructuredOutputRefusals: a schema the grammar does not express, and one that
// is not JSON, are refused naming the keyword; so is a response format with
// ignore_eos.
func TestStructuredOutputRefusals(t *testing.T) {
	p := launch(t, nil)
	for _, tc := range []struct {
		schema, want string
		sampling     sdk.Sampling
	}{
		{`{"type": "string", "pattern": "^a+$"}`, "'pattern' is not supported", sdk.Sampling{}},
		{`{"oneOf": [{"type": "string"}]}`, "'oneOf' is not supported", sdk.Sampling{}},
		{`{"type": "object"`, "is not JSON", sdk.Sampling{}},
		{`{"type": "string"}`, "ignore_eos", sdk.Sampling{IgnoreEOS: true}},
	} {
		err := p.Generate(t.Context(), sdk.GenerateRequest{Prompt: "x", Sampling: tc.sampling,
			ResponseFormat: &sdk.ResponseFormat{Type: sdk.ResponseJSONSchema, Schema: []byte(tc.schema)}}, func(sdk.Event) error { return nil })
		if !sdk.IsInvalidRequest(err) || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("schema %s: %v, want an invalid request saying %q", tc.schema, err, tc.want)
		}
	}
}
