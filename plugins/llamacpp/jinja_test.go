package main

import (
	"strings"
	"testing"
	"time"
)

// TestJinjaAsPython: negative indexes, tojson, trim and dict methods behave as in
// Python's jinja2 with transformers' filters.
func TestJinjaAsPython(t *testing.T) {
	vars, err := caseVars([]byte(`{"messages": [{"role": "user", "content": "hi"}],
		"args": {"zeta": 1, "alpha": "x<y>&'\"", "list": [1.5, 100000000000000000.0, 0.00001, true, null, "北京"], "nested": {}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ src, want string }{
		{`{{ messages[-1].content }}|{{ messages[0].content }}|{{ messages[-2] is defined }}`, `hi|hi|False`},
		{`{{ "a</think>b".split("</think>")[-1] }}|{{ "ab".split("</think>")[-1] }}|{{ "héllo"[-4] }}`, `b|ab|é`},
		{`{% set u = messages | selectattr("role", "equalto", "user") | list %}{{ u[-1] == messages[0] }}`, `True`},
		{`{{ args | tojson }}`, `{"zeta": 1, "alpha": "x<y>&'\"", "list": [1.5, 1e+17, 1e-05, true, null, "北京"], "nested": {}}`},
		{`{{ args.list[:2] | tojson(indent=2) }}`, "[\n  1.5,\n  1e+17\n]"},
		{`{{ args | tojson(sort_keys=true, separators=(",", ":")) }}`, `{"alpha":"x<y>&'\"","list":[1.5,1e+17,1e-05,true,null,"北京"],"nested":{},"zeta":1}`},
		{`{% for k, v in args.items() %}{{ k }},{% endfor %}|{{ args.keys() | list | length }}|{{ args.get("zeta") }}|{{ args.get("none", 7) }}`, `zeta,alpha,list,nested,|4|1|7`},
		{`{{ none | trim }}|{{ "  x " | trim }}|{{ "xxaxx" | trim("x") }}`, `None|x|a`},
		{`{{ strftime_now("%d %b %Y %H:%M") }}`, `15 Jan 2026 09:05`},
	} {
		tpl, err := compileJinja(tc.src)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		now := time.Date(2026, 1, 15, 9, 5, 0, 0, time.UTC)
		got, err := chatTemplate{jinja: tpl, now: func() time.Time { return now }}.render(vars)
		if err != nil || got != tc.want {
			t.Errorf("%s:\n got %q (%v)\nwant %q", tc.src, got, err, tc.want)
		}
	}
}

// JSON given to a template (a call's arguments) nested deeper than maxJSONDepth is
// refused, not followed level by level on the stack.
func TestJSONValueDepth(t *testing.T) {
	if _, err := jsonValue([]byte(strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth))); err != nil {
		t.Fatalf("%d levels: %v", maxJSONDepth, err)
	}
	deep := strings.Repeat("[", 100000) + strings.Repeat("]", 100000)
	if _, err := jsonValue([]byte(deep)); err == nil {
		t.Fatal("100,000 levels were taken")
	}
}
