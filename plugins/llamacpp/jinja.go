package main

// Rendering chat templates as Hugging Face's transformers does (apply_chat_template):
// trim_blocks and lstrip_blocks on, JSON values with their keys in the order given,
// and a tojson that writes what Python's json.dumps writes.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unsafe"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"github.com/nikolalohinski/gonja/v2/nodes"
)

// jinjaConfig is transformers' renderer's: a block tag's line leaves no blank line
// or indentation behind.
var jinjaConfig = func() *config.Config {
	c := gonja.DefaultConfig.Inherit()
	c.TrimBlocks, c.LeftStripBlocks = true, true
	return c
}()

// jinjaEnv is gonja's environment with the filters and dict methods that keep the
// order of JSON objects and write JSON as Python does.
var jinjaEnv = func() *exec.Environment {
	filters := exec.NewFilterSet(map[string]exec.FilterFunction{}).Update(builtins.Filters)
	_ = filters.Replace("tojson", filterToJSON)
	_ = filters.Replace("items", filterItems)
	_ = filters.Replace("trim", filterTrim)
	_ = filters.Register(pyIndexFilter, filterPyIndex)
	methods := builtins.Methods
	methods.Dict = exec.NewMethodSet(map[string]exec.Method[map[string]any]{
		"items":  dictItems,
		"keys":   dictKeys,
		"values": dictValues,
		"get":    dictGet,
	})
	return &exec.Environment{
		Context:           gonja.DefaultContext,
		Filters:           filters,
		Tests:             builtins.Tests,
		ControlStructures: builtins.ControlStructures,
		Methods:           methods,
	}
}()

// compileJinja parses a chat template.
func compileJinja(src string) (*exec.Template, error) {
	if name := selfRecursiveMacro(src); name != "" {
		// A macro that calls itself can recurse until the stack is exhausted, which
		// no recover catches: the process would die.
		return nil, fmt.Errorf("macro %q calls itself: recursive macros are not supported", name)
	}
	// Templates are one text: include, import and extends find nothing.
	loader, err := loaders.NewMemoryLoader(map[string]string{"/chat_template": src})
	if err != nil {
		return nil, err
	}
	t, err := exec.NewTemplate("/chat_template", jinjaConfig, loader, jinjaEnv)
	if err != nil {
		return nil, fmt.Errorf("not a valid Jinja template: %w", err)
	}
	pythonIndexes(t)
	return t, nil
}

// pyIndexFilter is the filter pythonIndexes puts before every x[i].
const pyIndexFilter = "_python_index"

// pythonIndexes makes every x[i] of a template index as Python does. gonja v2.9.1
// takes x[-n] of an n-item list or string for a missing item (an off-by-one in its
// negative indexes): messages[-1] of a one-message chat, or
// content.split('</think>')[-1] of a text without one, would be nothing. Each x of
// x[i] goes through pyIndexFilter, which wraps lists and strings in pyIndexed. The
// template's tree is reached by reflection: gonja keeps it unexported.
func pythonIndexes(t *exec.Template) {
	field := reflect.ValueOf(t).Elem().FieldByName("root")
	root := *(**nodes.Template)(unsafe.Pointer(field.UnsafeAddr()))
	getItem := reflect.TypeFor[*nodes.GetItem]()
	seen := map[uintptr]bool{}
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() || seen[v.Pointer()] {
				return
			}
			seen[v.Pointer()] = true
			if v.Type() == getItem {
				g := (*nodes.GetItem)(v.UnsafePointer())
				if target, ok := g.Node.(nodes.Expression); ok {
					g.Node = &nodes.FilteredExpression{Expression: target,
						Filters: []*nodes.FilterCall{{Token: g.Location, Name: pyIndexFilter, Kwargs: map[string]nodes.Expression{}}}}
				}
			}
			walk(v.Elem())
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for it := v.MapRange(); it.Next(); {
				walk(it.Value())
			}
		}
	}
	walk(reflect.ValueOf(root))
}

// pyIndexed is a list or a string indexed as Python does (a negative index counts
// from the end; a string's items are its characters).
type pyIndexed struct{ v *exec.Value }

// GetItem implements exec.ItemGetter.
func (p pyIndexed) GetItem(key any) (*exec.Value, bool) {
	i, ok := key.(int)
	if !ok {
		return p.v.GetItem(key)
	}
	if p.v.IsString() {
		runes := []rune(p.v.String())
		if i < 0 {
			i += len(runes)
		}
		if i < 0 || i >= len(runes) {
			return exec.AsValue(nil), false
		}
		return exec.AsValue(string(runes[i])), true
	}
	n := p.v.Len()
	if i < 0 {
		i += n
	}
	if i < 0 || i >= n {
		return exec.AsValue(nil), false
	}
	return p.v.Index(i), true
}

func filterPyIndex(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() || in.IsNil() || in.IsDict() {
		return in
	}
	if _, own := in.Interface().(exec.ItemGetter); own {
		return in
	}
	if in.IsList() || in.IsString() {
		return exec.AsValue(pyIndexed{in})
	}
	return in
}

// filterTrim is Jinja's trim: the value as text (None is "None"), without the
// whitespace (or the characters given) at either end.
func filterTrim(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	var chars *exec.Value
	if err := params.Take(exec.PositionalArgument("chars", exec.AsValue(nil), func(v *exec.Value) error { chars = v; return nil })); err != nil {
		return exec.AsValue(exec.ErrInvalidCall(err))
	}
	s := "None"
	if !in.IsNil() {
		s = in.String()
	}
	if chars.IsNil() {
		return exec.AsValue(strings.TrimSpace(s))
	}
	return exec.AsValue(strings.Trim(s, chars.String()))
}

// jsonValue decodes JSON into what a template sees: objects as ordered dicts (their
// keys in the order given, as Python's json.loads keeps them), arrays as lists,
// integers as int, other numbers as float64.
func jsonValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeOrdered(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func decodeOrdered(dec *json.Decoder, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("JSON nested more than %d levels deep", maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			d := exec.NewDict()
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := decodeOrdered(dec, depth+1)
				if err != nil {
					return nil, err
				}
				d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(k.(string)), Value: exec.AsValue(v)})
			}
			_, err := dec.Token() // }
			return d, err
		case '[':
			list := []any{}
			for dec.More() {
				v, err := decodeOrdered(dec, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token() // ]
			return list, err
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(t), 10, 64); err == nil && int64(int(i)) == i {
			return int(i), nil
		}
		return t.Float64()
	}
	return tok, nil // string, bool, nil
}

// dictPairs returns a dict's pairs in order: an ordered dict's as given, a map's by
// key (gonja's own order for dicts a template builds).
func dictPairs(self map[string]any, selfValue *exec.Value) [][2]any {
	if d, ok := orderedDict(selfValue.Interface()); ok {
		out := make([][2]any, len(d.Pairs))
		for i, p := range d.Pairs {
			out[i] = [2]any{p.Key.Interface(), p.Value.Interface()}
		}
		return out
	}
	keys := make([]string, 0, len(self))
	for k := range self {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([][2]any, len(keys))
	for i, k := range keys {
		out[i] = [2]any{k, self[k]}
	}
	return out
}

func orderedDict(v any) (*exec.Dict, bool) {
	switch d := v.(type) {
	case *exec.Dict:
		return d, true
	case exec.Dict:
		return &d, true
	}
	return nil, false
}

// dictView makes a dict's items(), keys() or values(): each pair, in order, as
// pick gives it.
func dictView(pick func(p [2]any) any) exec.Method[map[string]any] {
	return func(self map[string]any, selfValue *exec.Value, args *exec.VarArgs) (any, error) {
		if err := args.Take(); err != nil {
			return nil, exec.ErrInvalidCall(err)
		}
		var out []any
		for _, p := range dictPairs(self, selfValue) {
			out = append(out, pick(p))
		}
		return out, nil
	}
}

var (
	dictItems  = dictView(func(p [2]any) any { return []any{p[0], p[1]} })
	dictKeys   = dictView(func(p [2]any) any { return p[0] })
	dictValues = dictView(func(p [2]any) any { return p[1] })
)

func dictGet(self map[string]any, selfValue *exec.Value, args *exec.VarArgs) (any, error) {
	if len(args.Args) < 1 || len(args.Args) > 2 || len(args.KwArgs) > 0 {
		return nil, exec.ErrInvalidCall(errors.New("get() takes 1 or 2 positional arguments"))
	}
	key := args.Args[0].String()
	for _, p := range dictPairs(self, selfValue) {
		if p[0] == key {
			return p[1], nil
		}
	}
	if len(args.Args) == 2 {
		return args.Args[1].Interface(), nil
	}
	return nil, nil
}

func filterItems(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if err := params.Take(); err != nil {
		return exec.AsValue(exec.ErrInvalidCall(err))
	}
	if in.IsNil() {
		return exec.AsValue([]any{})
	}
	if !in.IsDict() {
		return exec.AsValue(errors.New("items requires a mapping"))
	}
	m, _ := in.ToGoSimpleType(false).(map[string]any)
	items, _ := dictItems(m, in, exec.NewVarArgs())
	return exec.AsValue(items)
}

// filterToJSON is transformers' tojson: json.dumps(x, ensure_ascii=False,
// indent=indent, separators=separators, sort_keys=sort_keys).
func filterToJSON(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	var indent, separators *exec.Value
	var sortKeys, ensureASCII bool
	if err := params.Take(
		exec.KeywordArgument("indent", exec.AsValue(nil), func(v *exec.Value) error { indent = v; return nil }),
		exec.KeywordArgument("ensure_ascii", exec.AsValue(false), func(v *exec.Value) error { ensureASCII = v.Bool(); return nil }),
		exec.KeywordArgument("separators", exec.AsValue(nil), func(v *exec.Value) error { separators = v; return nil }),
		exec.KeywordArgument("sort_keys", exec.AsValue(false), func(v *exec.Value) error { sortKeys = v.Bool(); return nil }),
	); err != nil {
		return exec.AsValue(exec.ErrInvalidCall(err))
	}
	w := pyJSONWriter{ensureASCII: ensureASCII, sortKeys: sortKeys, item: ", ", key: ": "}
	if !indent.IsNil() {
		switch {
		case indent.IsInteger():
			w.indent = strings.Repeat(" ", indent.Integer())
		case indent.IsString():
			w.indent = indent.String()
		default:
			return exec.AsValue(errors.New("tojson: indent is a number or a string"))
		}
		w.pretty, w.item = true, ","
	}
	if !separators.IsNil() {
		if !separators.IsList() || separators.Len() != 2 {
			return exec.AsValue(errors.New("tojson: separators is a pair of strings"))
		}
		w.item, w.key = separators.Index(0).String(), separators.Index(1).String()
	}
	if err := w.write(in.Interface(), 0); err != nil {
		return exec.AsValue(err)
	}
	return exec.AsSafeValue(w.b.String())
}

// pyJSONWriter writes a template value as Python's json.dumps does.
type pyJSONWriter struct {
	b           strings.Builder
	ensureASCII bool
	sortKeys    bool
	pretty      bool
	indent      string
	item, key   string
}

// maxJSONDepth bounds nesting: of the JSON a template is given (a call's arguments,
// a tool's parameters; decodeOrdered recurses once per level), and of what tojson
// writes (a template can build a value that contains itself).
const maxJSONDepth = 64

func (w *pyJSONWriter) newline(depth int) {
	if w.pretty {
		w.b.WriteByte('\n')
		w.b.WriteString(strings.Repeat(w.indent, depth))
	}
}

func (w *pyJSONWriter) write(v any, depth int) error {
	if depth > maxJSONDepth {
		return errors.New("tojson: the value nests too deep")
	}
	if w.b.Len() > maxRendered {
		return errors.New("tojson: the value is too long")
	}
	switch t := v.(type) {
	case *exec.Value:
		return w.write(t.Interface(), depth)
	case nil:
		w.b.WriteString("null")
	case bool:
		w.b.WriteString(map[bool]string{true: "true", false: "false"}[t])
	case string:
		w.str(t)
	case int:
		w.b.WriteString(strconv.Itoa(t))
	case int64:
		w.b.WriteString(strconv.FormatInt(t, 10))
	case float64:
		w.b.WriteString(pyFloat(t))
	case json.Number:
		w.b.WriteString(string(t))
	case *exec.Dict, exec.Dict:
		d, _ := orderedDict(t)
		pairs := make([][2]any, len(d.Pairs))
		for i, p := range d.Pairs {
			pairs[i] = [2]any{p.Key.String(), p.Value}
		}
		return w.object(pairs, depth)
	case map[string]any:
		pairs := make([][2]any, 0, len(t))
		for k, val := range t {
			pairs = append(pairs, [2]any{k, val})
		}
		sort.Slice(pairs, func(i, j int) bool { return pairs[i][0].(string) < pairs[j][0].(string) })
		return w.object(pairs, depth)
	case []any:
		if len(t) == 0 {
			w.b.WriteString("[]")
			return nil
		}
		w.b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				w.b.WriteString(w.item)
			}
			w.newline(depth + 1)
			if err := w.write(e, depth+1); err != nil {
				return err
			}
		}
		w.newline(depth)
		w.b.WriteByte(']')
	default:
		// Other shapes gonja makes (lists of another type, tuples): through its own
		// view of them.
		val := exec.AsValue(v)
		switch {
		case val.IsList():
			list := make([]any, val.Len())
			for i := range list {
				list[i] = val.Index(i).Interface()
			}
			return w.write(list, depth)
		case val.IsDict():
			m, ok := val.ToGoSimpleType(false).(map[string]any)
			if !ok {
				return fmt.Errorf("tojson: cannot write %T", v)
			}
			return w.write(m, depth)
		case val.IsInteger():
			w.b.WriteString(strconv.Itoa(val.Integer()))
		case val.IsFloat():
			w.b.WriteString(pyFloat(val.Float()))
		case val.IsString():
			w.str(val.String())
		default:
			return fmt.Errorf("tojson: cannot write %T", v)
		}
	}
	return nil
}

func (w *pyJSONWriter) object(pairs [][2]any, depth int) error {
	if w.sortKeys {
		sort.SliceStable(pairs, func(i, j int) bool { return pairs[i][0].(string) < pairs[j][0].(string) })
	}
	if len(pairs) == 0 {
		w.b.WriteString("{}")
		return nil
	}
	w.b.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			w.b.WriteString(w.item)
		}
		w.newline(depth + 1)
		w.str(p[0].(string))
		w.b.WriteString(w.key)
		if err := w.write(p[1], depth+1); err != nil {
			return err
		}
	}
	w.newline(depth)
	w.b.WriteByte('}')
	return nil
}

// str writes a JSON string as Python does: the short escapes, other control
// characters as \u00XX, the rest as is (or, with ensure_ascii, non-ASCII as \uXXXX).
func (w *pyJSONWriter) str(s string) {
	w.b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			w.b.WriteString(`\"`)
		case r == '\\':
			w.b.WriteString(`\\`)
		case r == '\n':
			w.b.WriteString(`\n`)
		case r == '\r':
			w.b.WriteString(`\r`)
		case r == '\t':
			w.b.WriteString(`\t`)
		case r == '\b':
			w.b.WriteString(`\b`)
		case r == '\f':
			w.b.WriteString(`\f`)
		case r < 0x20:
			fmt.Fprintf(&w.b, `\u%04x`, r)
		case r > 0x7e && w.ensureASCII:
			if r > 0xffff {
				r -= 0x10000
				fmt.Fprintf(&w.b, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			} else {
				fmt.Fprintf(&w.b, `\u%04x`, r)
			}
		default:
			w.b.WriteRune(r)
		}
	}
	w.b.WriteByte('"')
}

// pyFloat formats f as Python's repr does (1.0, 0.5, 1e-05, 1e+16).
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if abs := math.Abs(f); abs != 0 && (abs < 1e-4 || abs >= 1e16) {
		s = strconv.FormatFloat(f, 'e', -1, 64)
		mant, exp, _ := strings.Cut(s, "e")
		if len(exp) == 2 { // e+5 → e+05
			exp = exp[:1] + "0" + exp[1:]
		}
		return mant + "e" + exp
	}
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}
