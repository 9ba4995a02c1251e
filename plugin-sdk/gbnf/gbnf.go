package gbnf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Limits of what a schema may ask for: beyond them, FromSchema refuses it.
const (
	MaxDepth  = 32   // nesting of schemas within the schema
	MaxRules  = 2048 // rules of the grammar
	MaxRepeat = 1000 // minLength, maxLength, minItems, maxItems
	// MaxRepeats bounds the sum of the bounds of a grammar's repetitions:
	// llama.cpp writes x{0,n} out as n rules.
	MaxRepeats = 20000
	MaxBytes   = 256 << 10
	// MaxAmbiguity bounds the ways a grammar may read one text at once (see
	// ruleInfo): llama.cpp follows each of them, for every token it considers.
	MaxAmbiguity = 256
)

// UnsupportedError is a schema FromSchema cannot turn into a grammar: Keyword (at
// Path, a JSON pointer into the schema) constrains values in a way the grammar does
// not express, or the schema is malformed.
type UnsupportedError struct {
	Path    string
	Keyword string
	Reason  string
}

func (e *UnsupportedError) Error() string {
	where := e.Path
	if where == "" {
		where = "/"
	}
	if e.Keyword == "" {
		return fmt.Sprintf("the schema at %s: %s", where, e.Reason)
	}
	return fmt.Sprintf("the schema at %s: '%s' %s", where, e.Keyword, e.Reason)
}

// The shared rules of JSON's lexical parts (compact: no whitespace). A string's
// characters leave out U+0080–U+00BF as such (they are written \u0080–\u00BF):
// llama.cpp's grammar reads a lone UTF-8 continuation byte of a token as one of those
// code points, and would let a model write invalid UTF-8 into a string. A \u escape
// of a surrogate comes in a pair, high then low: a lone one is no character.
const commonRules = `value ::= object | array | string | number | boolean | null
object ::= "{" ( string ":" value ( "," string ":" value )* )? "}"
array ::= "[" ( value ( "," value )* )? "]"
string ::= "\"" char* "\""
char ::= [^"\\\x7F\x00-\x1F\x80-\xBF] | "\\" ( ["\\/bfnrt] | "u" escape )
escape ::= ( [0-9a-cA-CefEF] [0-9a-fA-F] | [dD] [0-7] ) [0-9a-fA-F]{2} | [dD] [89abAB] [0-9a-fA-F]{2} "\\u" [dD] [c-fC-F] [0-9a-fA-F]{2}
number ::= integer ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?
integer ::= "-"? nonneg
nonneg ::= "0" | [1-9] [0-9]{0,15}
boolean ::= "true" | "false"
null ::= "null"
`

// JSONObject is the grammar of any JSON object (response_format json_object).
const JSONObject = "root ::= object\n" + commonRules

// JSONValue is the grammar of any JSON value.
const JSONValue = "root ::= value\n" + commonRules

// FromSchema returns the grammar (its root rule "root") of the JSON texts schema
// accepts, or an *UnsupportedError.
func FromSchema(schema []byte) (string, error) {
	var b Builder
	name, err := b.Schema(schema)
	if err != nil {
		return "", err
	}
	return b.Grammar(name), nil
}

// Builder makes one grammar of several schemas and literal text: a tool call's
// grammar is its syntax around the schemas of the functions' arguments. The zero
// Builder is ready.
type Builder struct {
	rules   map[string]string
	order   []string
	bodies  map[string]string // body → rule, to share identical rules
	n       int
	repeats int // the sum of the repetitions' bounds (MaxRepeats)
	// info is what is known of the rules Schema made (see ruleInfo).
	info map[string]ruleInfo
}

// repeated counts a repetition of up to n copies.
func (b *Builder) repeated(n int) error {
	b.repeats += n
	if b.repeats > MaxRepeats {
		return &UnsupportedError{Reason: fmt.Sprintf("repeats more than %d elements in all (lengths and item counts)", MaxRepeats)}
	}
	return nil
}

// Schema adds the rules of the values schema accepts and returns the name of its
// rule, or an *UnsupportedError.
func (b *Builder) Schema(schema []byte) (string, error) {
	if len(schema) > MaxBytes {
		return "", &UnsupportedError{Reason: fmt.Sprintf("is longer than %d bytes", MaxBytes)}
	}
	root, err := decode(schema)
	if err != nil {
		return "", &UnsupportedError{Reason: "is not JSON: " + err.Error()}
	}
	c := &converter{b: b, root: root, refs: map[string]string{}}
	return c.visit(root, "", 0)
}

// Rule adds a rule with body (GBNF; it may use the names Schema returned, Literal's
// text and the JSON rules value, object, array, string, number, integer, boolean,
// null) and returns its name.
func (b *Builder) Rule(body string) (string, error) { return b.rule(body) }

// Literal is the GBNF literal matching s exactly.
func Literal(s string) string { return literal(s) }

// The kinds of JSON value by their first character: a set of them says what a rule's
// text may begin with.
const (
	kindObject uint8 = 1 << iota
	kindArray
	kindString
	kindNumber
	kindTrue
	kindFalse
	kindNull
	kindAny = kindObject | kindArray | kindString | kindNumber | kindTrue | kindFalse | kindNull
)

// ruleInfo is what the converter knows of a rule it made, to bound the work of
// following it. llama.cpp's grammar keeps one parse stack for each way of reading the
// text so far, and checks every candidate token against each: alternatives that can
// begin alike are followed together until they part (anyOf of two objects, until a
// key or value differs), and alternatives nested in such alternatives multiply.
type ruleInfo struct {
	// kinds the rule's text may begin with.
	kinds uint8
	// width bounds the parse stacks the rule keeps at once.
	width int
	// recur are the references being expanded (in c.refs, not yet defined) that the
	// rule reaches: a rule that reaches one is part of a recursion.
	recur []string
	// lead, for an object, is how it always begins.
	lead lead
}

// lead is how an object always begins: its required properties, in order (they are
// written first).
type lead []leadProperty

// leadProperty is a property of a lead: its key, its values' JSON texts when it is a
// const or an enum (nil: any value), and whether its value is part of a recursion.
type leadProperty struct {
	key       string
	values    []string
	recursive bool
}

// parts reports whether objects led by a and b part within their leads, at a key or
// at const values (after a value comes "," or "}", so one cannot be the beginning of
// another), before either reads a value that is part of a recursion.
func (a lead) parts(b lead) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		switch {
		case x.key != y.key:
			return true
		case x.values != nil && y.values != nil && !slices.ContainsFunc(x.values, func(v string) bool { return slices.Contains(y.values, v) }):
			return true
		case x.recursive || y.recursive:
			return false
		}
	}
	return false
}

// commonInfo is what is known of the shared rules (commonRules).
var commonInfo = map[string]ruleInfo{
	"value": {kinds: kindAny, width: 1}, "object": {kinds: kindObject, width: 1}, "array": {kinds: kindArray, width: 1},
	"string": {kinds: kindString, width: 1}, "number": {kinds: kindNumber, width: 1}, "integer": {kinds: kindNumber, width: 1},
	"boolean": {kinds: kindTrue | kindFalse, width: 1}, "null": {kinds: kindNull, width: 1},
}

// sequence is the info of a rule reading parts one after another (an object's
// properties, an array's items) and beginning with kind; open alternatives are
// followed at once at some point (optional properties, at their keys).
func sequence(kind uint8, open int, parts ...ruleInfo) ruleInfo {
	out := ruleInfo{kinds: kind, width: max(open, 1)}
	for _, p := range parts {
		out.width = max(out.width, p.width)
		out.recur = union(out.recur, p.recur)
	}
	return out
}

// union is the references of a and b.
func union(a, b []string) []string {
	for _, r := range b {
		if !slices.Contains(a, r) {
			a = append(slices.Clip(a), r)
		}
	}
	return a
}

// Grammar returns the grammar whose root is rule root.
func (b *Builder) Grammar(root string) string {
	var out strings.Builder
	fmt.Fprintf(&out, "root ::= %s\n", root)
	for _, r := range b.order {
		fmt.Fprintf(&out, "%s ::= %s\n", r, b.rules[r])
	}
	out.WriteString(commonRules)
	return out.String()
}

// object is a JSON object with its keys in order.
type object struct {
	keys []string
	m    map[string]any
}

func (o *object) get(k string) (any, bool) { v, ok := o.m[k]; return v, ok }

// decode reads JSON keeping objects' key order; numbers stay json.Number.
func decode(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data after the value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > 4*MaxDepth {
		return nil, errors.New("nested too deep")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if t == '{' {
			o := &object{m: map[string]any{}}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key := k.(string)
				if _, dup := o.m[key]; dup {
					return nil, fmt.Errorf("the key %q appears twice", key)
				}
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				o.keys = append(o.keys, key)
				o.m[key] = v
			}
			_, err := dec.Token()
			return o, err
		}
		list := []any{}
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err := dec.Token()
		return list, err
	}
	return tok, nil
}

// encode writes v as compact JSON, objects' keys in their order.
func encode(b *strings.Builder, v any) {
	switch t := v.(type) {
	case *object:
		b.WriteByte('{')
		for i, k := range t.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			encode(b, k)
			b.WriteByte(':')
			encode(b, t.m[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			encode(b, e)
		}
		b.WriteByte(']')
	case string:
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(t)
		b.Write(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))) // Encode's newline
	case json.Number:
		b.WriteString(string(t))
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case nil:
		b.WriteString("null")
	}
}

// literal is a GBNF string literal matching s exactly.
func literal(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\x%02X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

type converter struct {
	b    *Builder
	root any
	refs map[string]string // $ref → rule
	// open are the references being expanded since the grammar last had to read
	// text ("{", "[", a string's quote): one met again is a rule that calls itself
	// before reading anything, which llama.cpp refuses (left recursion).
	open []string
}

// ruleWith adds a rule with body, as rule does, and what is known of it.
func (c *converter) ruleWith(body string, inf ruleInfo) (string, error) {
	name, err := c.b.rule(body)
	if err != nil {
		return "", err
	}
	if c.b.info == nil {
		c.b.info = map[string]ruleInfo{}
	}
	if _, known := c.b.info[name]; !known {
		c.b.info[name] = inf
	}
	return name, nil
}

// infoOf is what is known of rule name: a reference being expanded is a recursion,
// its kinds read from its schema.
func (c *converter) infoOf(name string) ruleInfo {
	if inf, ok := commonInfo[name]; ok {
		return inf
	}
	if inf, ok := c.b.info[name]; ok {
		// Of the references it reaches, those defined since are no longer open.
		inf.recur = slices.DeleteFunc(slices.Clone(inf.recur), func(r string) bool { _, defined := c.b.rules[r]; return defined })
		return inf
	}
	for ref, r := range c.refs {
		if r == name {
			target, _ := c.pointer(strings.TrimPrefix(ref, "#"))
			return ruleInfo{kinds: c.kindsOf(target, nil), width: 1, recur: []string{name}, lead: c.leadOf(target, nil)}
		}
	}
	return ruleInfo{kinds: kindAny, width: 1}
}

// resolve follows schema s's references (seen: those followed to reach s) to the
// schema object they name, and returns it with the references followed; nil when s
// is no object, or a reference is broken or comes back.
func (c *converter) resolve(s any, seen []string) (*object, []string) {
	for {
		o, ok := s.(*object)
		if !ok {
			return nil, seen
		}
		v, isRef := o.get("$ref")
		if !isRef {
			return o, seen
		}
		ref, _ := v.(string)
		target, err := c.pointer(strings.TrimPrefix(ref, "#"))
		if err != nil || slices.Contains(seen, ref) {
			return nil, seen
		}
		s, seen = target, append(seen, ref)
	}
}

// kindsOf is what the values schema s accepts may begin with (every kind when in
// doubt); seen are the references followed to reach s.
func (c *converter) kindsOf(s any, seen []string) uint8 {
	o, seen := c.resolve(s, seen)
	if o == nil {
		return kindAny
	}
	if v, ok := o.get("const"); ok {
		return kindOfValue(v)
	}
	if v, ok := o.get("enum"); ok {
		list, _ := v.([]any)
		var k uint8
		for _, e := range list {
			k |= kindOfValue(e)
		}
		return k
	}
	if v, ok := o.get("anyOf"); ok {
		list, _ := v.([]any)
		var k uint8
		for _, sub := range list {
			k |= c.kindsOf(sub, seen)
		}
		return k
	}
	types, err := schemaTypes(o, "")
	if err != nil {
		return kindAny
	}
	var k uint8
	for _, t := range types {
		k |= kindOfType[t]
	}
	return k
}

// leadOf is the lead of the objects schema s accepts, read from the schema (nil when
// it is not plainly an object's): a property's value counts as part of a recursion
// when its schema holds any reference. seen are the references followed to reach s.
func (c *converter) leadOf(s any, seen []string) lead {
	o, _ := c.resolve(s, seen)
	if o == nil {
		return nil
	}
	props, _ := o.get("properties")
	p, ok := props.(*object)
	req, _ := o.get("required")
	names, _ := req.([]any)
	if !ok || len(names) == 0 {
		return nil
	}
	var out lead
	for _, k := range p.keys {
		if slices.Contains(names, any(k)) {
			out = append(out, leadProperty{key: k, values: c.constTexts(p.m[k], nil), recursive: hasRef(p.m[k])})
		}
	}
	return out
}

// hasRef reports whether schema s holds a reference anywhere.
func hasRef(s any) bool {
	switch t := s.(type) {
	case *object:
		if _, ok := t.get("$ref"); ok {
			return true
		}
		for _, k := range t.keys {
			if hasRef(t.m[k]) {
				return true
			}
		}
	case []any:
		return slices.ContainsFunc(t, hasRef)
	}
	return false
}

var kindOfType = map[string]uint8{"object": kindObject, "array": kindArray, "string": kindString, "integer": kindNumber,
	"number": kindNumber, "boolean": kindTrue | kindFalse, "null": kindNull}

func kindOfValue(v any) uint8 {
	switch t := v.(type) {
	case *object:
		return kindObject
	case []any:
		return kindArray
	case string:
		return kindString
	case json.Number:
		return kindNumber
	case bool:
		if t {
			return kindTrue
		}
		return kindFalse
	}
	return kindNull
}

// alternatives is the rule of the alternatives alts (rules) at path, keyword the
// schema's keyword that makes them. Alternatives that can begin alike are followed
// at once: their widths add up. Refused: such alternatives of which one is part of a
// recursion (each level of the text's nesting would multiply the ways to read it),
// and a width above MaxAmbiguity.
func (c *converter) alternatives(alts []string, path, keyword string) (string, error) {
	if len(alts) == 1 {
		return alts[0], nil
	}
	out := ruleInfo{}
	infos := make([]ruleInfo, len(alts))
	for i, a := range alts {
		infos[i] = c.infoOf(a)
		out.kinds |= infos[i].kinds
		out.recur = union(out.recur, infos[i].recur)
	}
	for k := uint8(1); k != 0 && k <= kindNull; k <<= 1 {
		// All the alternatives whose text may begin with kind k are read at once
		// until they part (objects within their leads); those that have not parted
		// by a recursion would be read at once at every level of its nesting.
		width := 0
		for i, a := range infos {
			if a.kinds&k == 0 {
				continue
			}
			width += a.width
			alike, recursive := 0, false
			for _, b := range infos {
				if b.kinds&k == 0 || k == kindObject && a.lead.parts(b.lead) {
					continue
				}
				alike++
				recursive = recursive || len(b.recur) > 0
			}
			if alike > 1 && recursive {
				return "", &UnsupportedError{Path: fmt.Sprintf("%s/%s/%d", path, keyword, i), Keyword: keyword, Reason: "has alternatives that can begin alike and contain the schema itself: " +
					"reading them could take work exponential in the nesting of the text (make them differ in kind, or in a required property's key or const value before the recursion)"}
			}
		}
		out.width = max(out.width, width)
	}
	if out.width > MaxAmbiguity {
		return "", &UnsupportedError{Path: path, Keyword: keyword, Reason: fmt.Sprintf("has alternatives that can be read in more than %d ways at once (alternatives that begin alike, nested in others)", MaxAmbiguity)}
	}
	return c.ruleWith(strings.Join(alts, " | "), out)
}

func (c *converter) newName() (string, error) { return c.b.newName() }

func (c *converter) define(name, body string) { c.b.define(name, body) }

func (b *Builder) rule(body string) (string, error) {
	if name, ok := b.bodies[body]; ok {
		return name, nil
	}
	name, err := b.newName()
	if err != nil {
		return "", err
	}
	b.define(name, body)
	return name, nil
}

func (b *Builder) newName() (string, error) {
	if b.n >= MaxRules {
		return "", &UnsupportedError{Reason: fmt.Sprintf("needs more than %d grammar rules", MaxRules)}
	}
	b.n++
	return "r" + strconv.Itoa(b.n), nil
}

func (b *Builder) define(name, body string) {
	if b.rules == nil {
		b.rules, b.bodies = map[string]string{}, map[string]string{}
	}
	b.rules[name] = body
	b.order = append(b.order, name)
	b.bodies[body] = name
}

// annotations are keywords that say something of a value without constraining it.
var annotations = []string{"title", "description", "default", "examples", "$schema", "$id", "$comment",
	"deprecated", "readOnly", "writeOnly", "$defs", "definitions", "$anchor"}

// keywords each kind of schema may use (besides annotations).
var keywords = map[string][]string{
	"object":  {"type", "properties", "required", "additionalProperties", "minProperties", "maxProperties"},
	"array":   {"type", "items", "minItems", "maxItems"},
	"string":  {"type", "minLength", "maxLength", "format"},
	"integer": {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
	"number":  {"type", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
	"boolean": {"type"},
	"null":    {"type"},
}

var jsonTypes = []string{"object", "array", "string", "integer", "number", "boolean", "null"}

// visit returns the rule of the values schema s (at path) accepts.
func (c *converter) visit(s any, path string, depth int) (string, error) {
	if depth > MaxDepth {
		return "", &UnsupportedError{Path: path, Reason: fmt.Sprintf("nests more than %d schemas deep", MaxDepth)}
	}
	switch t := s.(type) {
	case bool:
		if t {
			return "value", nil
		}
		return "", &UnsupportedError{Path: path, Reason: "is false: no value is valid"}
	case *object:
		return c.visitObject(t, path, depth)
	}
	return "", &UnsupportedError{Path: path, Reason: "is not a schema (an object or a boolean)"}
}

func (c *converter) visitObject(s *object, path string, depth int) (string, error) {
	// Keywords that stand alone: $ref, const, enum, anyOf.
	for _, k := range []string{"$ref", "const", "enum", "anyOf"} {
		v, ok := s.get(k)
		if !ok {
			continue
		}
		for _, other := range s.keys {
			if other != k && !slices.Contains(annotations, other) && !(other == "type" && (k == "const" || k == "enum")) {
				return "", &UnsupportedError{Path: path, Keyword: other, Reason: fmt.Sprintf("next to '%s' is not supported", k)}
			}
		}
		switch k {
		case "$ref":
			return c.ref(v, path+"/$ref", depth)
		case "const":
			return c.values([]any{v}, s, path, "const")
		case "enum":
			list, ok := v.([]any)
			if !ok || len(list) == 0 {
				return "", &UnsupportedError{Path: path, Keyword: "enum", Reason: "must be a non-empty array"}
			}
			return c.values(list, s, path, "enum")
		case "anyOf":
			list, ok := v.([]any)
			if !ok || len(list) == 0 {
				return "", &UnsupportedError{Path: path, Keyword: "anyOf", Reason: "must be a non-empty array"}
			}
			var alts []string
			for i, sub := range list {
				r, err := c.visit(sub, fmt.Sprintf("%s/anyOf/%d", path, i), depth+1)
				if err != nil {
					return "", err
				}
				alts = append(alts, r)
			}
			return c.alternatives(alts, path, "anyOf")
		}
	}
	types, err := schemaTypes(s, path)
	if err != nil {
		return "", err
	}
	for _, k := range s.keys {
		if slices.Contains(annotations, k) {
			continue
		}
		known := false
		for _, ty := range types {
			known = known || slices.Contains(keywords[ty], k)
		}
		if !known {
			return "", &UnsupportedError{Path: path, Keyword: k, Reason: "is not supported"}
		}
	}
	var alts []string
	for _, ty := range types {
		r, err := c.typed(ty, s, path, depth)
		if err != nil {
			return "", err
		}
		alts = append(alts, r)
	}
	return c.alternatives(alts, path, "type")
}

// schemaTypes returns the types a schema's "type" allows (every type when it has
// none).
func schemaTypes(s *object, path string) ([]string, error) {
	v, ok := s.get("type")
	if !ok {
		return jsonTypes, nil
	}
	var names []any
	switch t := v.(type) {
	case string:
		names = []any{t}
	case []any:
		names = t
	}
	if len(names) == 0 {
		return nil, &UnsupportedError{Path: path, Keyword: "type", Reason: "must be a type's name or a non-empty list of them"}
	}
	var out []string
	for _, n := range names {
		name, _ := n.(string)
		if !slices.Contains(jsonTypes, name) {
			return nil, &UnsupportedError{Path: path, Keyword: "type", Reason: fmt.Sprintf("names an unknown type %v", n)}
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	// An integer is a number: "number" alone covers both.
	if slices.Contains(out, "number") {
		out = slices.DeleteFunc(out, func(t string) bool { return t == "integer" })
	}
	return out, nil
}

// values is the rule of a const or an enum: each value (of the schema's types, when
// it has any) as its JSON.
func (c *converter) values(list []any, s *object, path, keyword string) (string, error) {
	types, err := schemaTypes(s, path)
	if err != nil {
		return "", err
	}
	var texts []string
	var kinds uint8
	for _, v := range list {
		if slices.ContainsFunc(types, func(t string) bool { return isType(v, t) }) {
			var b strings.Builder
			encode(&b, v)
			texts = append(texts, b.String())
			kinds |= kindOfValue(v)
		}
	}
	if len(texts) == 0 {
		return "", &UnsupportedError{Path: path, Keyword: keyword, Reason: "has no value of the schema's type"}
	}
	return c.ruleWith(trie(texts), ruleInfo{kinds: kinds, width: 1})
}

// constTexts are the JSON texts of the values of schema s when it is a const or an
// enum, or a reference to one (nil otherwise); seen are the references followed.
func (c *converter) constTexts(s any, seen []string) []string {
	o, _ := c.resolve(s, seen)
	if o == nil {
		return nil
	}
	var list []any
	if v, ok := o.get("const"); ok {
		list = []any{v}
	} else if v, ok := o.get("enum"); ok {
		list, _ = v.([]any)
	}
	var out []string
	for _, v := range list {
		var b strings.Builder
		encode(&b, v)
		out = append(out, b.String())
	}
	return out
}

// trie is the body of a rule matching exactly texts, written as a tree of their
// common prefixes: a grammar reads it one way only (alternatives part at their first
// character), however many texts share a beginning.
func trie(texts []string) string {
	words := make([][]rune, 0, len(texts))
	for _, t := range texts {
		words = append(words, []rune(t))
	}
	slices.SortFunc(words, slices.Compare)
	words = slices.CompactFunc(words, slices.Equal)
	return trieOf(words)
}

// trieOf writes sorted, distinct, non-empty words.
func trieOf(words [][]rune) string {
	var alts []string
	for len(words) > 0 {
		// The words beginning as the first does, and their common prefix.
		n := 1
		for n < len(words) && words[n][0] == words[0][0] {
			n++
		}
		group := words[:n]
		words = words[n:]
		common := len(group[0])
		for _, w := range group[1:] {
			i := 0
			for i < common && i < len(w) && w[i] == group[0][i] {
				i++
			}
			common = i
		}
		var rest [][]rune
		ends := false
		for _, w := range group {
			if len(w) == common {
				ends = true
			} else {
				rest = append(rest, w[common:])
			}
		}
		alt := literal(string(group[0][:common]))
		switch {
		case len(rest) > 0 && ends:
			alt += " ( " + trieOf(rest) + " )?"
		case len(rest) > 0:
			alt += " ( " + trieOf(rest) + " )"
		}
		alts = append(alts, alt)
	}
	return strings.Join(alts, " | ")
}

func isType(v any, t string) bool {
	switch x := v.(type) {
	case *object:
		return t == "object"
	case []any:
		return t == "array"
	case string:
		return t == "string"
	case bool:
		return t == "boolean"
	case nil:
		return t == "null"
	case json.Number:
		if t == "number" {
			return true
		}
		f, err := x.Float64()
		return t == "integer" && err == nil && f == math.Trunc(f)
	}
	return false
}

// ref resolves a $ref within the schema (a JSON pointer, "#/$defs/name").
func (c *converter) ref(v any, path string, depth int) (string, error) {
	ref, ok := v.(string)
	if !ok || !strings.HasPrefix(ref, "#") {
		return "", &UnsupportedError{Path: path, Reason: "only references within the schema (\"#/$defs/name\") are supported"}
	}
	if slices.Contains(c.open, ref) {
		return "", &UnsupportedError{Path: path, Reason: fmt.Sprintf("%q refers to itself before any text is read (a value that is only itself)", ref)}
	}
	if name, ok := c.refs[ref]; ok {
		return name, nil
	}
	target, err := c.pointer(strings.TrimPrefix(ref, "#"))
	if err != nil {
		return "", &UnsupportedError{Path: path, Reason: fmt.Sprintf("%q: %v", ref, err)}
	}
	// Named before it is visited: a schema that refers to itself refers to this rule.
	name, err := c.newName()
	if err != nil {
		return "", err
	}
	c.refs[ref] = name
	c.open = append(c.open, ref)
	body, err := c.visit(target, strings.TrimPrefix(ref, "#"), depth+1)
	c.open = c.open[:len(c.open)-1]
	if err != nil {
		return "", err
	}
	c.define(name, body)
	inf := c.infoOf(body)
	if c.b.info == nil {
		c.b.info = map[string]ruleInfo{}
	}
	c.b.info[name] = inf
	return name, nil
}

func (c *converter) pointer(p string) (any, error) {
	if p == "" {
		return c.root, nil
	}
	if !strings.HasPrefix(p, "/") {
		return nil, errors.New("not a JSON pointer")
	}
	cur := c.root
	for _, part := range strings.Split(p[1:], "/") {
		part, err := url.PathUnescape(part)
		if err != nil {
			return nil, err
		}
		part = strings.ReplaceAll(strings.ReplaceAll(part, "~1", "/"), "~0", "~")
		switch t := cur.(type) {
		case *object:
			v, ok := t.get(part)
			if !ok {
				return nil, fmt.Errorf("no %q", part)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(t) {
				return nil, fmt.Errorf("no item %q", part)
			}
			cur = t[i]
		default:
			return nil, fmt.Errorf("no %q", part)
		}
	}
	return cur, nil
}

// count reads a non-negative integer keyword (at most MaxRepeat); -1 when absent.
func count(s *object, path, k string) (int, error) {
	v, ok := s.get(k)
	if !ok {
		return -1, nil
	}
	n, isNum := v.(json.Number)
	i, err := strconv.Atoi(string(n))
	if !isNum || err != nil || i < 0 {
		return 0, &UnsupportedError{Path: path, Keyword: k, Reason: "must be a non-negative integer"}
	}
	if i > MaxRepeat {
		return 0, &UnsupportedError{Path: path, Keyword: k, Reason: fmt.Sprintf("above %d is not supported", MaxRepeat)}
	}
	return i, nil
}

// repeat is elem repeated min to max times (max < 0: no bound), separated by sep.
func repeat(elem, sep string, lo, hi int) string {
	if hi == 0 {
		return ""
	}
	next := elem
	if sep != "" {
		next = sep + " " + elem
	}
	var rest string
	switch {
	case hi < 0:
		rest = fmt.Sprintf("( %s ){%d,}", next, max(lo-1, 0))
	default:
		rest = fmt.Sprintf("( %s ){%d,%d}", next, max(lo-1, 0), hi-1)
	}
	if lo == 0 {
		return fmt.Sprintf("( %s %s )?", elem, rest)
	}
	return elem + " " + rest
}

func (c *converter) typed(ty string, s *object, path string, depth int) (string, error) {
	switch ty {
	case "boolean", "null":
		return ty, nil
	case "string":
		return c.str(s, path)
	case "integer":
		return c.integer(s, path)
	case "number":
		return c.number(s, path)
	case "array":
		return c.array(s, path, depth)
	case "object":
		return c.object(s, path, depth)
	}
	return "", &UnsupportedError{Path: path, Keyword: "type", Reason: "names an unknown type"}
}

func (c *converter) str(s *object, path string) (string, error) {
	if f, ok := s.get("format"); ok {
		if _, hasMin := s.get("minLength"); hasMin {
			return "", &UnsupportedError{Path: path, Keyword: "minLength", Reason: "next to 'format' is not supported"}
		}
		if _, hasMax := s.get("maxLength"); hasMax {
			return "", &UnsupportedError{Path: path, Keyword: "maxLength", Reason: "next to 'format' is not supported"}
		}
		body, ok := formats[fmt.Sprint(f)]
		if !ok {
			return "", &UnsupportedError{Path: path + "/format", Keyword: "format", Reason: fmt.Sprintf("%q is not supported (date, time, date-time and uuid are)", f)}
		}
		return c.ruleWith(`"\"" `+body+` "\""`, ruleInfo{kinds: kindString, width: 4}) // (a date's months: 3 ways)
	}
	lo, err := count(s, path, "minLength")
	if err != nil {
		return "", err
	}
	hi, err := count(s, path, "maxLength")
	if err != nil {
		return "", err
	}
	if lo < 0 && hi < 0 {
		return "string", nil
	}
	lo = max(lo, 0)
	if hi >= 0 && hi < lo {
		return "", &UnsupportedError{Path: path, Keyword: "maxLength", Reason: "is below minLength: no value is valid"}
	}
	rep := fmt.Sprintf("char{%d,}", lo)
	if hi >= 0 {
		rep = fmt.Sprintf("char{%d,%d}", lo, hi)
	}
	if err := c.b.repeated(max(lo, hi)); err != nil {
		return "", err
	}
	return c.ruleWith(`"\"" `+rep+` "\""`, ruleInfo{kinds: kindString, width: 1})
}

var (
	// Days that every year has: 31 in the long months, 30 in the others, 28 in
	// February (the 29th is left out: it is valid only in leap years).
	dateRule = `[0-9]{4} "-" ( ( "0" [13578] | "1" [02] ) "-" ( "0" [1-9] | [12] [0-9] | "3" [01] ) | ( "0" [469] | "11" ) "-" ( "0" [1-9] | [12] [0-9] | "30" ) | "02" "-" ( "0" [1-9] | "1" [0-9] | "2" [0-8] ) )`
	timeRule = `( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{1,9} )? ( "Z" | [+-] ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )`
	formats  = map[string]string{
		"date":      dateRule,
		"time":      timeRule,
		"date-time": dateRule + ` "T" ` + timeRule,
		"uuid":      `[0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12}`,
	}
)

// bound reads a numeric bound keyword; ok false when absent.
func bound(s *object, path, k string) (v float64, ok bool, err error) {
	raw, present := s.get(k)
	if !present {
		return 0, false, nil
	}
	n, isNum := raw.(json.Number)
	f, perr := n.Float64()
	if !isNum || perr != nil || math.IsInf(f, 0) {
		return 0, false, &UnsupportedError{Path: path, Keyword: k, Reason: "must be a number"}
	}
	return f, true, nil
}

func (c *converter) integer(s *object, path string) (string, error) {
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
		f, ok, err := bound(s, path, k)
		if err != nil || !ok {
			if err != nil {
				return "", err
			}
			continue
		}
		if math.Abs(f) > 1e15 {
			return "", &UnsupportedError{Path: path, Keyword: k, Reason: "beyond ±10^15 is not supported"}
		}
		switch k {
		case "minimum":
			lo = max(lo, int64(math.Ceil(f)))
		case "exclusiveMinimum":
			lo = max(lo, int64(math.Floor(f))+1)
		case "maximum":
			hi = min(hi, int64(math.Floor(f)))
		case "exclusiveMaximum":
			hi = min(hi, int64(math.Ceil(f))-1)
		}
	}
	if lo == math.MinInt64 && hi == math.MaxInt64 {
		return "integer", nil
	}
	if lo > hi {
		return "", &UnsupportedError{Path: path, Keyword: "minimum", Reason: "is above the maximum: no value is valid"}
	}
	body := intRange(lo, hi)
	// Its alternatives of different lengths are followed at once.
	return c.ruleWith(body, ruleInfo{kinds: kindNumber, width: strings.Count(body, " | ") + 1})
}

// maxDigits is the most digits an unbounded integer has (as rule nonneg).
const maxDigits = 16

// intRange is the body of a rule matching the integers lo..hi in JSON (either end
// may be unbounded: math.MinInt64, math.MaxInt64).
func intRange(lo, hi int64) string {
	var alts []string
	if lo < 0 {
		// Negative part: -(1..-lo) within the range.
		nhi := uint64(-(lo + 1)) + 1 // |lo|
		if lo == math.MinInt64 {
			nhi = math.MaxUint64
		}
		nlo := uint64(1)
		if hi < 0 {
			nlo = uint64(-(hi + 1)) + 1
		}
		for _, a := range digitRanges(nlo, nhi) {
			alts = append(alts, `"-" `+a)
		}
	}
	if hi >= 0 {
		plo := uint64(max(lo, 0))
		phi := uint64(hi)
		if hi == math.MaxInt64 {
			phi = math.MaxUint64
		}
		alts = append(alts, digitRanges(plo, phi)...)
	}
	return strings.Join(alts, " | ")
}

// digitRanges matches the decimal numbers lo..hi (no leading zeros); hi
// math.MaxUint64 means any number of up to maxDigits digits from lo. Each
// alternative is a block of numbers with the same digits count: a fixed prefix, one
// digit in a range, then free digits.
func digitRanges(lo, hi uint64) []string {
	if hi == math.MaxUint64 {
		hi = pow10(maxDigits) - 1
	}
	var out []string
	if lo == 0 {
		out = append(out, `"0"`)
		lo = 1
	}
	for lo >= 1 && lo <= hi {
		// The widest aligned block starting at lo: lo..lo+w-1, w a power of ten.
		w := uint64(1)
		for lo%(w*10) == 0 && lo+w*10-1 <= hi {
			w *= 10
		}
		// As many such blocks as follow in the same decade and in the range.
		m := uint64(1)
		for (lo/w)%10+m <= 9 && lo+(m+1)*w-1 <= hi {
			m++
		}
		end := lo + m*w - 1
		out = append(out, digitsBlock(lo, end))
		lo = end + 1
	}
	return out
}

func pow10(n int) uint64 {
	p := uint64(1)
	for range n {
		p *= 10
	}
	return p
}

// digitsBlock matches lo..hi, numbers of as many digits that share a prefix, then
// differ in one digit (a range), then run over all digits (lo's all 0, hi's all 9).
func digitsBlock(lo, hi uint64) string {
	ls, hs := strconv.FormatUint(lo, 10), strconv.FormatUint(hi, 10)
	var parts []string
	i := 0
	for i < len(ls) && ls[i] == hs[i] {
		i++
	}
	if i > 0 {
		parts = append(parts, literal(ls[:i]))
	}
	if i < len(ls) {
		first := fmt.Sprintf("[%c-%c]", ls[i], hs[i])
		if ls[i] == hs[i] {
			first = literal(ls[i : i+1])
		}
		parts = append(parts, first)
		if rest := len(ls) - i - 1; rest > 0 {
			parts = append(parts, fmt.Sprintf("[0-9]{%d}", rest))
		}
	}
	return strings.Join(parts, " ")
}

func (c *converter) number(s *object, path string) (string, error) {
	var lo *float64
	for _, k := range []string{"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} {
		f, ok, err := bound(s, path, k)
		if err != nil {
			return "", err
		}
		if !ok {
			continue
		}
		if k != "minimum" || f != 0 {
			return "", &UnsupportedError{Path: path, Keyword: k, Reason: "is supported for numbers only as minimum 0 (integers take any bounds)"}
		}
		lo = &f
	}
	if lo == nil {
		return "number", nil
	}
	return c.ruleWith(`nonneg ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,2} )?`, ruleInfo{kinds: kindNumber, width: 1})
}

// reading runs visit with what is open cleared: the grammar has read text by then.
func (c *converter) reading(visit func() (string, error)) (string, error) {
	saved := c.open
	c.open = nil
	defer func() { c.open = saved }()
	return visit()
}

func (c *converter) array(s *object, path string, depth int) (string, error) {
	return c.reading(func() (string, error) { return c.arrayReading(s, path, depth) })
}

func (c *converter) arrayReading(s *object, path string, depth int) (string, error) {
	item := "value"
	if it, ok := s.get("items"); ok {
		if _, isList := it.([]any); isList {
			return "", &UnsupportedError{Path: path, Keyword: "items", Reason: "as a list (tuples) is not supported"}
		}
		r, err := c.visit(it, path+"/items", depth+1)
		if err != nil {
			return "", err
		}
		item = r
	}
	lo, err := count(s, path, "minItems")
	if err != nil {
		return "", err
	}
	hi, err := count(s, path, "maxItems")
	if err != nil {
		return "", err
	}
	lo = max(lo, 0)
	if hi >= 0 && hi < lo {
		return "", &UnsupportedError{Path: path, Keyword: "maxItems", Reason: "is below minItems: no value is valid"}
	}
	if err := c.b.repeated(max(lo, hi)); err != nil {
		return "", err
	}
	return c.ruleWith(`"[" `+repeat(item, `","`, lo, hi)+` "]"`, sequence(kindArray, 0, c.infoOf(item)))
}

func (c *converter) object(s *object, path string, depth int) (string, error) {
	return c.reading(func() (string, error) { return c.objectReading(s, path, depth) })
}

func (c *converter) objectReading(s *object, path string, depth int) (string, error) {
	props, _ := s.get("properties")
	var order []string
	values := map[string]string{}
	if props != nil {
		p, ok := props.(*object)
		if !ok {
			return "", &UnsupportedError{Path: path, Keyword: "properties", Reason: "must be an object"}
		}
		for _, k := range p.keys {
			r, err := c.visit(p.m[k], path+"/properties/"+escapePointer(k), depth+1)
			if err != nil {
				return "", err
			}
			order = append(order, k)
			values[k] = r
		}
	}
	required := map[string]bool{}
	if req, ok := s.get("required"); ok {
		list, ok := req.([]any)
		if !ok {
			return "", &UnsupportedError{Path: path, Keyword: "required", Reason: "must be an array of names"}
		}
		for _, n := range list {
			name, ok := n.(string)
			if !ok {
				return "", &UnsupportedError{Path: path, Keyword: "required", Reason: "must be an array of names"}
			}
			if _, declared := values[name]; !declared {
				return "", &UnsupportedError{Path: path, Keyword: "required", Reason: fmt.Sprintf("names %q, which is not among the properties", name)}
			}
			required[name] = true
		}
	}
	extra := ""
	if ap, ok := s.get("additionalProperties"); ok && len(order) == 0 {
		// A map: any keys, each value as the schema says.
		switch t := ap.(type) {
		case bool:
			if t {
				extra = "value"
			}
		default:
			r, err := c.visit(ap, path+"/additionalProperties", depth+1)
			if err != nil {
				return "", err
			}
			extra = r
		}
	} else if !ok && len(order) == 0 {
		extra = "value"
	}
	// (With properties, other keys are never written: a valid subset of what the
	// schema allows.)
	nReq := len(required)
	minP, err := count(s, path, "minProperties")
	if err != nil {
		return "", err
	}
	maxP, err := count(s, path, "maxProperties")
	if err != nil {
		return "", err
	}
	if extra == "" && (minP > nReq || maxP >= 0 && maxP < len(order)) {
		return "", &UnsupportedError{Path: path, Keyword: "minProperties", Reason: "and maxProperties are supported only when the properties already meet them"}
	}
	if extra != "" {
		if minP > 0 || maxP >= 0 {
			return "", &UnsupportedError{Path: path, Keyword: "minProperties", Reason: "and maxProperties are not supported on maps"}
		}
		kvInfo := sequence(kindString, 0, c.infoOf(extra))
		kv, err := c.ruleWith(`string ":" `+extra, kvInfo)
		if err != nil {
			return "", err
		}
		return c.ruleWith(`"{" `+repeat(kv, `","`, 0, -1)+` "}"`, sequence(kindObject, 0, kvInfo))
	}
	var parts []ruleInfo
	kv := func(k string) (string, error) {
		inf := sequence(kindString, 0, c.infoOf(values[k]))
		parts = append(parts, inf)
		return c.ruleWith(literal(jsonString(k))+` ":" `+values[k], inf)
	}
	var reqs, opts []string
	for _, k := range order {
		r, err := kv(k)
		if err != nil {
			return "", err
		}
		if required[k] {
			reqs = append(reqs, r)
		} else {
			opts = append(opts, r)
		}
	}
	// Optional properties, in order: any subset of them.
	var optChain string
	for i := len(opts) - 1; i >= 0; i-- {
		body := opts[i]
		if optChain != "" {
			body = fmt.Sprintf(`%s ( "," %s )? | %s`, opts[i], optChain, optChain)
		}
		// Each optional property left may come next: they are followed at once.
		r, err := c.ruleWith(body, sequence(kindString, len(opts)-i, parts...))
		if err != nil {
			return "", err
		}
		optChain = r
	}
	var inner string
	switch {
	case len(reqs) > 0:
		inner = strings.Join(reqs, ` "," `)
		if optChain != "" {
			inner += fmt.Sprintf(` ( "," %s )?`, optChain)
		}
	case optChain != "":
		inner = optChain + "?"
	}
	inf := sequence(kindObject, len(opts), parts...)
	for _, k := range order {
		if required[k] {
			inf.lead = append(inf.lead, leadProperty{key: k, values: c.constTexts(props.(*object).m[k], nil),
				recursive: len(c.infoOf(values[k]).recur) > 0})
		}
	}
	if inf.width > MaxAmbiguity {
		return "", &UnsupportedError{Path: path, Keyword: "properties", Reason: fmt.Sprintf("has more than %d optional properties", MaxAmbiguity)}
	}
	if inner == "" {
		return c.ruleWith(`"{" "}"`, inf)
	}
	return c.ruleWith(`"{" `+inner+` "}"`, inf)
}

func jsonString(s string) string {
	var b strings.Builder
	encode(&b, s)
	return b.String()
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
