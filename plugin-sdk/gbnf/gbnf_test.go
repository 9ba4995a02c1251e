package gbnf

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ruleRegexp turns the body of an integer range rule (literals, classes, {n} and
// alternatives) into an anchored regular expression.
func ruleRegexp(body string) *regexp.Regexp {
	var b strings.Builder
	for _, alt := range strings.Split(body, " | ") {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("(?:")
		for _, part := range strings.Fields(alt) {
			if strings.HasPrefix(part, `"`) {
				b.WriteString(regexp.QuoteMeta(strings.Trim(part, `"`)))
			} else {
				b.WriteString(part)
			}
		}
		b.WriteByte(')')
	}
	return regexp.MustCompile("^(?:" + b.String() + ")$")
}

// TestIntRange: the rule of lo..hi matches exactly the integers in it (checked for
// every integer from -3000 to 3000), written as JSON writes them.
func TestIntRange(t *testing.T) {
	const min64, max64 = math.MinInt64, math.MaxInt64
	for _, r := range [][2]int64{{0, 0}, {0, 9}, {1, 9}, {18, 120}, {-40, 54}, {-999, -1}, {-5, 5}, {7, 1234}, {100, 2999},
		{-2500, -101}, {0, max64}, {37, max64}, {min64, 0}, {min64, -17}, {-300, max64}, {min64, 450}} {
		re := ruleRegexp(intRange(r[0], r[1]))
		for n := int64(-3000); n <= 3000; n++ {
			in := n >= r[0] && n <= r[1]
			if got := re.MatchString(fmt.Sprint(n)); got != in {
				t.Fatalf("range %d..%d: %d matched %v (rule %s)", r[0], r[1], n, got, intRange(r[0], r[1]))
			}
		}
		for _, bad := range []string{"-0", "01", "007", "+5", ""} {
			if re.MatchString(bad) {
				t.Fatalf("range %d..%d matches %q", r[0], r[1], bad)
			}
		}
	}
	// Unbounded ends reach 16 digits, and no further.
	re := ruleRegexp(intRange(0, math.MaxInt64))
	if !re.MatchString("9999999999999999") || re.MatchString("10000000000000000") {
		t.Fatal("the unbounded range does not stop at 16 digits")
	}
}

// TestUnsupported: what the grammar cannot express is refused naming the keyword
// and where it is.
func TestUnsupported(t *testing.T) {
	for _, tc := range []struct{ schema, path, keyword string }{
		{`{"type": "string", "pattern": "a+"}`, "", "pattern"},
		{`{"properties": {"a": {"type": "string", "format": "email"}}}`, "/properties/a/format", "format"},
		{`{"type": "object", "properties": {"x": {"oneOf": [{}]}}}`, "/properties/x", "oneOf"},
		{`{"allOf": [{}]}`, "", "allOf"},
		{`{"type": "number", "maximum": 3}`, "", "maximum"},
		{`{"type": "integer", "multipleOf": 2}`, "", "multipleOf"},
		{`{"type": "array", "uniqueItems": true}`, "", "uniqueItems"},
		{`{"type": "array", "maxItems": 100000}`, "", "maxItems"},
		{`{"type": "string", "maxLength": 5, "minLength": 6}`, "", "maxLength"},
		{`{"type": "object", "required": ["b"], "properties": {"a": {}}}`, "", "required"},
		{`{"type": "strang"}`, "", "type"},
		{`{"$ref": "https://example.com/schema"}`, "/$ref", ""},
		{`{"enum": ["a"], "minLength": 1}`, "", "minLength"},
	} {
		_, err := FromSchema([]byte(tc.schema))
		var ue *UnsupportedError
		if !errors.As(err, &ue) || ue.Path != tc.path || ue.Keyword != tc.keyword {
			t.Errorf("%s: %v (%+v), want keyword %q at %q", tc.schema, err, ue, tc.keyword, tc.path)
		}
	}
	// A schema that nests deeper than MaxDepth, or needs more than MaxRules rules, is
	// refused rather than built.
	deep := strings.Repeat(`{"type": "array", "items": `, MaxDepth+2) + "{}" + strings.Repeat("}", MaxDepth+2)
	if _, err := FromSchema([]byte(deep)); err == nil || !strings.Contains(err.Error(), "deep") {
		t.Errorf("a deep schema: %v", err)
	}
	var props []string
	for i := range MaxRules {
		props = append(props, fmt.Sprintf(`"p%d": {"type": "integer", "minimum": %d, "maximum": 99999}`, i, i))
	}
	if _, err := FromSchema([]byte(`{"type": "object", "properties": {` + strings.Join(props, ",") + `}}`)); err == nil || !strings.Contains(err.Error(), "rules") {
		t.Errorf("a schema of too many rules: %v", err)
	}
}

// TestShapes: grammars of common shapes (their text is what llama.cpp parses; the
// llamacpp plugin's tests sample under them and validate the output).
func TestShapes(t *testing.T) {
	for _, tc := range []struct{ schema, want string }{
		{`{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": false}`, `"{" r1 "}"`},
		{`{"enum": ["x", 1, null]}`, `"\"x\"" | "1" | "null"`},
		{`{"const": {"k": "北京"}}`, `"{\"k\":\"北京\"}"`},
		{`{"type": ["string", "null"]}`, `string | null`},
		{`{"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2}`, `"[" boolean ( "," boolean ){0,1} "]"`},
	} {
		g, err := FromSchema([]byte(tc.schema))
		if err != nil || !strings.Contains(g, tc.want) {
			t.Errorf("%s: %v\n%s\nwant a rule with %s", tc.schema, err, g, tc.want)
		}
	}
	// A recursive schema refers to its own rule.
	g, err := FromSchema([]byte(`{"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}}`))
	if err != nil || !strings.Contains(g, "root ::= r1\n") || !strings.Contains(g, `"[" ( r1 ( "," r1 ){0,} )? "]"`) {
		t.Errorf("a recursive schema: %v\n%s", err, g)
	}
}

// TestRefusedShapes: a schema that is only itself (left recursion, which llama.cpp
// refuses), and one that repeats too much in all, are refused; a recursive schema
// that reads text before recurring, and a long enum, are converted.
func TestRefusedShapes(t *testing.T) {
	for _, schema := range []string{
		`{"$ref": "#"}`,
		`{"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "null"}]}}, "$ref": "#/$defs/a"}`,
	} {
		if _, err := FromSchema([]byte(schema)); err == nil || !strings.Contains(err.Error(), "refers to itself") {
			t.Errorf("%s: %v", schema, err)
		}
	}
	var props []string
	for i := range 25 {
		props = append(props, fmt.Sprintf(`"p%d": {"type": "string", "maxLength": 1000}`, i))
	}
	if _, err := FromSchema([]byte(`{"type": "object", "properties": {` + strings.Join(props, ",") + `}}`)); err == nil || !strings.Contains(err.Error(), "repeats") {
		t.Errorf("25 strings of up to 1000 characters: %v", err)
	}
	if _, err := FromSchema([]byte(`{"$defs": {"n": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "$ref": "#/$defs/n"}`)); err != nil {
		t.Errorf("a tree of arrays: %v", err)
	}
	var enum []string
	for i := range 20000 {
		enum = append(enum, fmt.Sprintf(`"v%d"`, i))
	}
	g, err := FromSchema([]byte(`{"enum": [` + strings.Join(enum, ",") + `]}`))
	if err != nil || len(g) > 300<<10 {
		t.Fatalf("an enum of 20,000 strings: %v, %d bytes", err, len(g))
	}
}

// trieRegexp turns a trie's body (literals, groups, "?" and alternatives) into an
// anchored regular expression.
func trieRegexp(t *testing.T, body string) *regexp.Regexp {
	var b strings.Builder
	for i := 0; i < len(body); {
		switch c := body[i]; c {
		case ' ':
			i++
		case '(', ')', '?', '|':
			b.WriteByte(c)
			i++
		case '"':
			i++
			for body[i] != '"' {
				ch := body[i]
				if ch == '\\' {
					i++
					switch body[i] {
					case 'n':
						ch = '\n'
					case 'x':
						n, _ := strconv.ParseUint(body[i+1:i+3], 16, 8)
						ch, i = byte(n), i+2
					default:
						ch = body[i]
					}
				}
				b.WriteString(regexp.QuoteMeta(string([]byte{ch})))
				i++
			}
			i++
		default:
			t.Fatalf("unexpected %q in %s", c, body)
		}
	}
	return regexp.MustCompile("^(?:" + b.String() + ")$")
}

// TestTrie: an enum's rule matches exactly its values, and no two alternatives of a
// group begin with the same character (a grammar reads it one way only).
func TestTrie(t *testing.T) {
	for _, words := range [][]string{
		{`"a"`, `"ab"`, `"abc"`, `"b"`},
		{"1", "12", "123", "13", "2"},
		{`"北京"`, `"北海"`, `"上海"`, `"x\"y"`, `"tab\t"`},
		{"null", "true", "false", `{"k":1}`, `{"k":2}`, `[1,2]`},
		{`"same"`, `"same"`},
	} {
		body := trie(words)
		re := trieRegexp(t, body)
		for _, w := range words {
			if !re.MatchString(w) {
				t.Errorf("%s does not match %q", body, w)
			}
		}
		for _, w := range words {
			for _, other := range []string{w[:len(w)-1], w + "x", "x" + w} {
				if !slices.Contains(words, other) && re.MatchString(other) {
					t.Errorf("%s matches %q", body, other)
				}
			}
		}
		// The first characters of each group's alternatives (a literal begins each).
		var firsts [][]string
		start := true
		for i := 0; i < len(body); i++ {
			switch body[i] {
			case '(':
				firsts, start = append(firsts, nil), true
			case ')':
				firsts = firsts[:len(firsts)-1]
			case '|':
				start = true
			case '"':
				if start {
					if len(firsts) == 0 {
						firsts = append(firsts, nil)
					}
					first := string([]rune(body[i+1:])[0])
					if slices.Contains(firsts[len(firsts)-1], first) {
						t.Errorf("%s: two alternatives of a group begin with %q", body, first)
					}
					firsts[len(firsts)-1] = append(firsts[len(firsts)-1], first)
					start = false
				}
				for i++; body[i] != '"'; i++ {
					if body[i] == '\\' {
						i++
					}
				}
			}
		}
	}
}

// TestAmbiguity: alternatives that begin alike and recur are refused (each level of
// the text's nesting would multiply the ways llama.cpp follows), as are alternatives
// nested so that more than MaxAmbiguity ways are followed at once; alternatives that
// part early (by kind, by their first property's key or const value) are taken, even
// recursive ones.
func TestAmbiguity(t *testing.T) {
	refused := map[string]string{
		"recursive arrays": `{"$defs": {"t": {"type": "array", "items": {"anyOf": [{"$ref": "#/$defs/t"}, {"type": "array", "items": {"$ref": "#/$defs/t"}, "maxItems": 3}]}}}, "$ref": "#/$defs/t"}`,
		"recursive objects with the same first key": `{"$defs": {"n": {"anyOf": [
			{"type": "object", "properties": {"k": {"type": "string"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "required": ["k", "kids"]},
			{"type": "object", "properties": {"k": {"type": "string"}, "next": {"$ref": "#/$defs/n"}}, "required": ["k"]}]}}, "$ref": "#/$defs/n"}`,
	}
	// Two ways at each level, nested nine levels: 512 ways.
	level := `{"anyOf": [{"type": "string"}, {"type": "string", "maxLength": 5}]}`
	for range 8 {
		level = fmt.Sprintf(`{"anyOf": [{"type": "object", "properties": {"a": %s}, "required": ["a"]}, {"type": "object", "properties": {"a": %s, "b": {"type": "null"}}, "required": ["a"]}]}`, level, level)
	}
	refused["nested alike"] = level
	// 300 objects that part at their keys are still read at once until they do.
	var alts []string
	for i := range 300 {
		alts = append(alts, fmt.Sprintf(`{"type": "object", "properties": {"key_with_a_long_shared_beginning_%d": {"type": "null"}}, "required": ["key_with_a_long_shared_beginning_%d"]}`, i, i))
	}
	refused["300 objects"] = `{"anyOf": [` + strings.Join(alts, ",") + `]}`
	for what, schema := range refused {
		_, err := FromSchema([]byte(schema))
		var ue *UnsupportedError
		if !errors.As(err, &ue) || ue.Keyword != "anyOf" {
			t.Errorf("%s: %v, want anyOf refused", what, err)
		}
	}
	taken := map[string]string{
		"a tagged tree": `{"$defs": {"node": {"anyOf": [
			{"type": "object", "properties": {"kind": {"const": "leaf"}, "v": {"type": "string"}}, "required": ["kind", "v"]},
			{"type": "object", "properties": {"kind": {"const": "list"}, "items": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["kind", "items"]}]}}, "$ref": "#/$defs/node"}`,
		"a JSON-like value": `{"$defs": {"v": {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "array", "items": {"$ref": "#/$defs/v"}},
			{"type": "object", "additionalProperties": {"$ref": "#/$defs/v"}}, {"type": "null"}]}}, "$ref": "#/$defs/v"}`,
		"objects parting at their first key": `{"$defs": {"n": {"anyOf": [
			{"type": "object", "properties": {"a": {"type": "string"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "required": ["a", "kids"]},
			{"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}]}}, "$ref": "#/$defs/n"}`,
		"nullable strings, nested": `{"type": "object", "properties": {"a": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "b": {"type": ["string", "null"]}}, "required": ["a", "b"]}`,
		"a Pydantic list of Folder or File (parting at their second key)": `{"$defs": {
			"Folder": {"type": "object", "properties": {"name": {"type": "string"}, "children": {"type": "array", "items": {"anyOf": [{"$ref": "#/$defs/Folder"}, {"$ref": "#/$defs/File"}]}}}, "required": ["name", "children"]},
			"File": {"type": "object", "properties": {"name": {"type": "string"}, "size": {"type": "integer"}}, "required": ["name", "size"]}},
			"type": "array", "items": {"anyOf": [{"$ref": "#/$defs/Folder"}, {"$ref": "#/$defs/File"}]}}`,
		"a discriminator after an id, by reference": `{"$defs": {"A": {"const": "a"}, "B": {"enum": ["b"]}, "n": {"anyOf": [
			{"type": "object", "properties": {"id": {"type": "integer"}, "kind": {"$ref": "#/$defs/A"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}}, "required": ["id", "kind", "kids"]},
			{"type": "object", "properties": {"id": {"type": "integer"}, "kind": {"$ref": "#/$defs/B"}}, "required": ["id", "kind"]}]}}, "$ref": "#/$defs/n"}`,
		"an anyOf outside a recursion": `{"$defs": {"t": {"type": "array", "items": {"$ref": "#/$defs/t"}}}, "anyOf": [{"$ref": "#/$defs/t"}, {"type": "array", "maxItems": 2}]}`,
	}
	for what, schema := range taken {
		if _, err := FromSchema([]byte(schema)); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
}
