package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// EnvPrefix starts every environment variable that sets a configuration key.
const EnvPrefix = "RAGWAY_"

// envBinding ties one environment variable to one configuration key.
type envBinding struct {
	name  string // RAGWAY_RAG_TOP_K
	path  string // rag.top_k
	index []int  // field index in Config
}

// envBindings derives the variables from Config's YAML keys: every key outside models,
// nested blocks joined with "_", and models as one variable holding the whole list.
func envBindings() []envBinding {
	var out []envBinding
	var walk func(t reflect.Type, path string, index []int)
	walk = func(t reflect.Type, path string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			key := yamlKey(f)
			if key == "" {
				continue
			}
			p := joinPath(path, key)
			idx := append(append([]int(nil), index...), i)
			if f.Type.Kind() == reflect.Struct {
				walk(f.Type, p, idx)
				continue
			}
			name := EnvPrefix + strings.ToUpper(strings.ReplaceAll(p, ".", "_"))
			out = append(out, envBinding{name: name, path: p, index: idx})
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// EnvVars returns the names of the environment variables that set configuration keys,
// mapped to the key path each sets (RAGWAY_RAG_TOP_K → rag.top_k).
func EnvVars() map[string]string {
	m := map[string]string{}
	for _, b := range envBindings() {
		m[b.name] = b.path
	}
	return m
}

// envOrigins records which key paths environment variables set.
type envOrigins map[string]string // key path → "env RAGWAY_X"

// origin names the variable that set path or a key enclosing it ("" if none did).
func (o envOrigins) origin(path string) string {
	for p := path; p != ""; p = parentPath(p) {
		if v, ok := o[p]; ok {
			return v
		}
	}
	return ""
}

// applyEnv sets the keys named by RAGWAY_* entries of env (os.Environ form; the last entry
// for a name wins) and reports which paths it set and every value it could not use.
func applyEnv(c *Config, env []string) (envOrigins, []error) {
	values := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(k, EnvPrefix) {
			values[k] = v
		}
	}
	origins := envOrigins{}
	var errs []error
	root := reflect.ValueOf(c).Elem()
	for _, b := range envBindings() {
		raw, ok := values[b.name]
		if !ok {
			continue
		}
		origins[b.path] = "env " + b.name
		if err := setFromEnv(root.FieldByIndex(b.index), raw, b.path); err != nil {
			for _, e := range flatten(err) {
				errs = append(errs, fmt.Errorf("env %s: %w", b.name, e))
			}
		}
	}
	return origins, errs
}

// setFromEnv parses raw into field v (the key at path).
func setFromEnv(v reflect.Value, raw, path string) error {
	if v.Type() == reflect.TypeFor[Duration]() {
		d, err := ParseDuration(raw)
		if err != nil {
			return &FieldError{Path: path, Msg: err.Error()}
		}
		v.Set(reflect.ValueOf(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, v.Type().Bits())
		if err != nil {
			return &FieldError{Path: path, Msg: fmt.Sprintf("expected an integer, got %q", raw)}
		}
		v.SetInt(n)
		return nil
	case reflect.Bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return &FieldError{Path: path, Msg: fmt.Sprintf("expected true or false, got %q", raw)}
		}
		v.SetBool(b)
		return nil
	}
	// A list of strings (server.cors_origins) may be comma-separated; empty: no entries.
	if v.Type() == reflect.TypeFor[[]string]() && !strings.HasPrefix(strings.TrimSpace(raw), "[") {
		list := []string{}
		for _, item := range strings.Split(raw, ",") {
			if item = strings.TrimSpace(item); item != "" {
				list = append(list, item)
			}
		}
		v.Set(reflect.ValueOf(list))
		return nil
	}
	// Lists (models) and anything else: a YAML (or JSON) value, decoded as strictly as
	// the file.
	if strings.TrimSpace(raw) == "" {
		return &FieldError{Path: path, Msg: "empty value; give a YAML or JSON value (\"[]\" for an empty list)"}
	}
	ptr := reflect.New(v.Type())
	if errs := decodeYAML(ptr.Interface(), []byte(raw), path); len(errs) > 0 {
		return errors.Join(errs...)
	}
	v.Set(ptr.Elem())
	return nil
}

// flatten splits an errors.Join tree into its leaves.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}
