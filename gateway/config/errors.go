package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// FieldError is one validation problem: the key path ("models[1].max_concurrency") and
// what is wrong with its value. [Config.Validate] returns these joined with errors.Join.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// fieldErrors flattens an errors.Join tree into its FieldErrors; other errors become
// FieldErrors without a path.
func fieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		var fe *FieldError
		if errors.As(err, &fe) {
			out = append(out, fe)
			return
		}
		out = append(out, &FieldError{Msg: err.Error()})
	}
	walk(err)
	return out
}

// nodeEntry is one key or value of a YAML document.
type nodeEntry struct {
	line  int
	path  string
	key   string // the key's name, for key entries
	value string // the scalar text, for value entries
	kind  yaml.Kind
	isKey bool
}

// nodeIndex maps a YAML document's lines to key paths, to put key paths into yaml.v3's
// line-numbered messages and line numbers into validation messages. A nil *nodeIndex is
// an empty index.
type nodeIndex struct {
	entries []nodeEntry
	lines   map[string]int // key path → line of the key (or of the list item)
	root    *yaml.Node     // the document's root node; nil if it did not parse
}

// indexYAML indexes data; base is the key path of the document root. A document that does
// not parse gives an empty index (the decoder reports the syntax error).
func indexYAML(data []byte, base string) *nodeIndex {
	ix := &nodeIndex{lines: map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return ix
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	ix.root = root
	ix.walk(root, base, 0)
	return ix
}

// msgLine is the N of a "line N: ..." message (0 if none).
func msgLine(msg string) int {
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

// floatsInInts reports, in yaml.v3's wording, float values given for integer keys of t,
// which yaml.v3 would otherwise silently truncate (max_concurrency: 1.5 → 1).
func (ix *nodeIndex) floatsInInts(t reflect.Type) []string {
	var msgs []string
	var check func(n *yaml.Node, t reflect.Type, depth int)
	check = func(n *yaml.Node, t reflect.Type, depth int) {
		if n == nil || depth > 64 {
			return
		}
		switch {
		case t.Kind() == reflect.Pointer:
			check(n, t.Elem(), depth)
		case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				for j := range t.NumField() {
					if yamlKey(t.Field(j)) == n.Content[i].Value {
						check(n.Content[i+1], t.Field(j).Type, depth+1)
					}
				}
			}
		case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
			for _, item := range n.Content {
				check(item, t.Elem(), depth+1)
			}
		case t != reflect.TypeFor[Duration]() && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float":
			switch t.Kind() {
			case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
				reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
				msgs = append(msgs, fmt.Sprintf("line %d: cannot unmarshal !!float `%s` into %s", n.Line, n.Value, t))
			}
		}
	}
	check(ix.root, t, 0)
	return msgs
}

func (ix *nodeIndex) walk(n *yaml.Node, path string, depth int) {
	if depth > 64 {
		return
	}
	ix.entries = append(ix.entries, nodeEntry{line: n.Line, path: path, value: n.Value, kind: n.Kind})
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinPath(path, k.Value)
			if _, ok := ix.lines[p]; !ok {
				ix.lines[p] = k.Line
			}
			ix.entries = append(ix.entries, nodeEntry{line: k.Line, path: p, key: k.Value, isKey: true})
			ix.walk(v, p, depth+1)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			ix.lines[p] = item.Line
			ix.walk(item, p, depth+1)
		}
	}
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

// line returns the line where path, or the nearest enclosing key the document sets, is;
// 0 if none.
// has reports whether the file set the key path itself.
func (ix *nodeIndex) has(path string) bool {
	if ix == nil {
		return false
	}
	_, ok := ix.lines[path]
	return ok
}

func (ix *nodeIndex) line(path string) int {
	if ix == nil {
		return 0
	}
	for p := path; p != ""; p = parentPath(p) {
		if l, ok := ix.lines[p]; ok {
			return l
		}
	}
	return 0
}

// parentPath strips the last element of a key path: "models[1].name" → "models[1]" →
// "models" → "".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

// keyAt finds the path of key name on line.
func (ix *nodeIndex) keyAt(line int, name string) (string, bool) {
	for _, e := range ix.entries {
		if e.isKey && e.line == line && e.key == name {
			return e.path, true
		}
	}
	return "", false
}

// valueAt finds the path of the value of kind (0: any) on line whose text matches hint
// ("" matches any; a hint ending in "..." is a prefix, as yaml.v3 truncates long values
// so).
func (ix *nodeIndex) valueAt(line int, kind yaml.Kind, hint string) (string, bool) {
	var found []nodeEntry
	for _, e := range ix.entries {
		if e.isKey || e.line != line || (kind != 0 && e.kind != kind) {
			continue
		}
		if hint != "" {
			if pre, ok := strings.CutSuffix(hint, "..."); ok {
				if !strings.HasPrefix(e.value, pre) {
					continue
				}
			} else if e.value != hint {
				continue
			}
		}
		found = append(found, e)
	}
	if len(found) == 0 {
		return "", false
	}
	// The deepest entry on the line is the value the decoder complained about.
	best := found[0]
	for _, e := range found[1:] {
		if len(e.path) > len(best.path) {
			best = e
		}
	}
	return best.path, true
}

var (
	lineRE         = regexp.MustCompile(`^line (\d+): (.*)$`)
	notFoundRE     = regexp.MustCompile(`^field (.+) not found in type (\S+)$`)
	alreadySetRE   = regexp.MustCompile(`^field (.+) already set in type \S+$`)
	alreadyDefRE   = regexp.MustCompile(`^mapping key (".*") already defined at line (\d+)$`)
	cannotRE       = regexp.MustCompile("^cannot unmarshal (\\S+)(?: `(.*)`)? into (.+)$")
	backtickHintRE = regexp.MustCompile("`([^`]*)`")
)

// explain rewrites one of yaml.v3's "line N: ..." decode messages as
// "line N: key.path: problem" in the terms of the config file rather than of Go types.
func (ix *nodeIndex) explain(msg string) string {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]
	at := func(path, problem string) string {
		if path == "" {
			return fmt.Sprintf("line %d: %s", line, problem)
		}
		return fmt.Sprintf("line %d: %s: %s", line, path, problem)
	}
	if s := notFoundRE.FindStringSubmatch(rest); s != nil {
		path, _ := ix.keyAt(line, s[1])
		if path == "" {
			path = s[1]
		}
		problem := "unknown key"
		if keys := knownKeys(s[2]); keys != "" {
			problem += " (known keys: " + keys + ")"
		}
		return at(path, problem)
	}
	if s := alreadyDefRE.FindStringSubmatch(rest); s != nil {
		name, err := strconv.Unquote(s[1])
		if err != nil {
			name = s[1]
		}
		path, _ := ix.keyAt(line, name)
		return at(path, "duplicate key (first set at line "+s[2]+")")
	}
	if s := alreadySetRE.FindStringSubmatch(rest); s != nil {
		path, _ := ix.keyAt(line, s[1])
		return at(path, "duplicate key")
	}
	if s := cannotRE.FindStringSubmatch(rest); s != nil {
		tag, val, into := s[1], s[2], s[3]
		kind, got := yaml.ScalarNode, "`"+val+"`"
		switch tag {
		case "!!map":
			kind, got = yaml.MappingNode, "a mapping"
		case "!!seq":
			kind, got = yaml.SequenceNode, "a list"
		}
		path, _ := ix.valueAt(line, kind, val)
		return at(path, fmt.Sprintf("expected %s, got %s", goTypeName(into), got))
	}
	hint := ""
	if h := backtickHintRE.FindStringSubmatch(rest); h != nil {
		hint = h[1]
	}
	path, _ := ix.valueAt(line, 0, hint)
	return at(path, rest)
}

// goTypeName describes a Go type from a yaml.v3 message in config-file terms.
func goTypeName(t string) string {
	switch t {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "[]string":
		return "a list of strings"
	case "[]config.Model":
		return "a list of models"
	case "config.Duration":
		return "a duration"
	}
	if strings.HasPrefix(t, "map[") || strings.HasPrefix(t, "config.") {
		return "a mapping"
	}
	return t
}

// knownKeys lists the YAML keys of the config type yaml.v3 names in a message.
func knownKeys(goType string) string {
	types := map[string]reflect.Type{
		"config.Config":      reflect.TypeFor[Config](),
		"config.VectorStore": reflect.TypeFor[VectorStore](),
		"config.Model":       reflect.TypeFor[Model](),
		"config.modelFields": reflect.TypeFor[modelFields](),
		"config.RAG":         reflect.TypeFor[RAG](),
		"config.Server":      reflect.TypeFor[Server](),
	}
	t, ok := types[goType]
	if !ok {
		return ""
	}
	var keys []string
	for i := range t.NumField() {
		if k := yamlKey(t.Field(i)); k != "" {
			keys = append(keys, k)
		}
	}
	return strings.Join(keys, ", ")
}

// yamlKey is the YAML key of a struct field ("" if it has none).
func yamlKey(f reflect.StructField) string {
	tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if tag == "-" || !f.IsExported() {
		return ""
	}
	if tag == "" {
		return strings.ToLower(f.Name)
	}
	return tag
}
