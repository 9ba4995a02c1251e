package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ParseModelJSON decodes one models entry from JSON (the admin API's body, a stored
// deployment) as strictly as the config file's YAML: on top of [DefaultModel], unknown
// keys and mistyped values are errors, then [Model.Validate]. Every problem is a
// *FieldError naming its key path, joined with errors.Join.
func ParseModelJSON(data []byte) (Model, error) {
	f := modelFields(DefaultModel())
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(&f); err != nil {
		return Model{}, jsonFieldError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Model{}, &FieldError{Msg: "a model entry is one JSON object, with nothing after it"}
	}
	m := Model(f)
	m.Options = numbersToGo(m.Options).(map[string]any)
	if err := m.Validate(); err != nil {
		return Model{}, err
	}
	return m, nil
}

// jsonFieldError turns a decoding error into a *FieldError naming the key.
func jsonFieldError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return &FieldError{Path: te.Field, Msg: fmt.Sprintf("want %s, got a JSON %s", goTypeName(te.Type.String()), te.Value)}
	case errors.As(err, &se):
		return &FieldError{Msg: fmt.Sprintf("not valid JSON (at byte %d)", se.Offset)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		key := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &FieldError{Path: key, Msg: "unknown key (known: " + knownKeys("config.modelFields") + ")"}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Msg: "a model entry is a JSON object; the body is empty or cut short"}
	}
	// A value's own decoder (a duration) says what is wrong with it.
	return &FieldError{Msg: err.Error()}
}

// numbersToGo turns json.Number values (from UseNumber) into int when whole and
// float64 otherwise, as the YAML decoder gives them.
func numbersToGo(v any) any {
	switch t := v.(type) {
	case nil:
		return map[string]any(nil)
	case map[string]any:
		for k, x := range t {
			t[k] = numbersToGo(x)
		}
		return t
	case []any:
		for i, x := range t {
			t[i] = numbersToGo(x)
		}
		return t
	case json.Number:
		if n, err := t.Int64(); err == nil {
			return int(n)
		}
		f, _ := t.Float64()
		return f
	}
	return v
}
