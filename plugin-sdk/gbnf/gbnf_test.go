package gbnf

import (
	"errors"
	"fmt"
	"math"
	"regexp"
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
	if g, err := FromSchema([]byte(`{"enum": [` + strings.Join(enum, ",") + `]}`)); err != nil || !strings.Contains(g, `"\"v19999\""`) {
		t.Fatalf("an enum of 20,000 strings: %v", err)
	}
}
