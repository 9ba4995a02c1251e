package oai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
)

// Decode unmarshals the JSON object data into v (a pointer to a struct).
// Unknown fields are ignored. A syntax error or a value of the wrong type
// becomes a 400 error; a wrong type names the parameter, prefixed by
// prefix (e.g. "messages[2]") when it is not empty.
func Decode(data []byte, v any, prefix string) *Error {
	if len(bytes.TrimSpace(data)) == 0 {
		if prefix == "" {
			return Invalid("", CodeInvalidJSON, "the request body is empty: expected a JSON object")
		}
		return Invalid(prefix, CodeInvalidJSON, "'%s' is empty: expected a JSON object", prefix)
	}
	err := json.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		param := joinParam(prefix, jsonPath(reflect.TypeOf(v), te.Field))
		if param == "" {
			return Invalid("", CodeInvalidJSON, "the request body must be a JSON object, not %s", article(te.Value))
		}
		return Invalid(param, CodeInvalidType, "invalid type for '%s': expected %s, got %s", param, kindOf(te.Type), te.Value)
	}
	return Invalid(prefix, CodeInvalidJSON, "could not parse the JSON body of the request: %v", err)
}

// jsonPath turns an UnmarshalTypeError field path, which names embedded Go
// structs too, into the JSON path of the parameter, walking t (the type
// decoded into).
func jsonPath(t reflect.Type, field string) string {
	if field == "" {
		return ""
	}
	var out []string
	for _, p := range strings.Split(field, ".") {
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
			t = t.Elem()
		}
		if t != nil && t.Kind() == reflect.Struct {
			if sf, ok := t.FieldByName(p); ok && sf.Anonymous {
				t = sf.Type // an embedded struct: not part of the JSON path
				continue
			}
			t = jsonFieldType(t, p)
		}
		out = append(out, p)
	}
	return strings.Join(out, ".")
}

// jsonFieldType returns the type of the field of struct t whose JSON name
// is name (nil when there is none).
func jsonFieldType(t reflect.Type, name string) reflect.Type {
	for _, f := range reflect.VisibleFields(t) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tag == name || (tag == "" && strings.EqualFold(f.Name, name)) {
			return f.Type
		}
	}
	return nil
}

func joinParam(prefix, field string) string {
	switch {
	case prefix == "":
		return field
	case field == "":
		return prefix
	}
	return prefix + "." + field
}

func article(value string) string {
	switch {
	case value == "":
		return "this"
	case value[0] == 'a' || value[0] == 'o':
		return "an " + value
	}
	return "a " + value
}

// kindOf names the JSON kind a Go type decodes from.
func kindOf(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// IsNull reports whether raw is absent or the JSON literal null.
func IsNull(raw json.RawMessage) bool { return isNull(raw) }

func isNull(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || string(raw) == "null"
}

// firstByte returns the first non-space byte of raw (0 when empty).
func firstByte(raw json.RawMessage) byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	return raw[0]
}

// Strings decodes raw, a JSON string or an array of strings, naming param
// in its errors. With tokens set, arrays of numbers (token ids) and arrays
// of arrays are rejected as unsupported rather than as a wrong type: the
// gateway takes text only. A null or absent raw gives nil.
func Strings(raw json.RawMessage, param string, tokens bool) ([]string, *Error) {
	switch firstByte(raw) {
	case 0, 'n':
		if isNull(raw) {
			return nil, nil
		}
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, Invalid(param, CodeInvalidJSON, "invalid string for '%s': %v", param, err)
		}
		return []string{s}, nil
	case '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return nil, Invalid(param, CodeInvalidJSON, "invalid array for '%s': %v", param, err)
		}
		vals := make([]string, len(elems))
		for i, el := range elems {
			k := jsonKind(el)
			if k != "string" {
				if tokens && (k == "number" || k == "array") {
					return nil, Unsupported(param, "token arrays are not supported for '%s': send text", param)
				}
				p := fmt.Sprintf("%s[%d]", param, i)
				return nil, Invalid(p, CodeInvalidType, "invalid type for '%s': expected a string, got %s", p, k)
			}
			if err := json.Unmarshal(el, &vals[i]); err != nil {
				return nil, Invalid(param, CodeInvalidJSON, "invalid string in '%s': %v", param, err)
			}
		}
		return vals, nil
	}
	return nil, Invalid(param, CodeInvalidType, "invalid type for '%s': expected a string or an array of strings, got %s", param, jsonKind(raw))
}

// jsonKind names the kind of a JSON value.
func jsonKind(raw json.RawMessage) string {
	switch c := firstByte(raw); {
	case c == '"':
		return "string"
	case c == '[':
		return "array"
	case c == '{':
		return "object"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	case c == '-' || (c >= '0' && c <= '9'):
		return "number"
	}
	return "value"
}
