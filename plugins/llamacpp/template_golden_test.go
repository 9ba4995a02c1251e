package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// families are the reference templates' special tokens and extra variables, as
// testdata/templates/render.py gives them.
var families = map[string]struct {
	bos, eos string
	vars     map[string]any
}{
	"llama3.1": {"<|begin_of_text|>", "<|eot_id|>", map[string]any{"date_string": "15 Jan 2026"}},
	"llama3.2": {"<|begin_of_text|>", "<|eot_id|>", map[string]any{"date_string": "15 Jan 2026"}},
	"qwen2.5":  {"", "<|im_end|>", nil},
	"qwen3":    {"", "<|im_end|>", nil},
	"mistral":  {"<s>", "</s>", nil},
	"chatml":   {"", "<|im_end|>", nil},
	"gemma":    {"<bos>", "<eos>", nil},
}

// TestTemplatesRenderAsTransformersDoes renders the real chat templates of Llama 3.1
// and 3.2, Qwen 2.5 and 3, Mistral, ChatML and Gemma for every conversation of
// testdata/templates/cases (tools, tool calls and results, several turns, Chinese)
// and compares the prompts byte for byte with what Python's jinja2 renders with
// transformers' settings (testdata/templates/golden, made by render.py); a case the
// reference refuses must be refused too.
func TestTemplatesRenderAsTransformersDoes(t *testing.T) {
	dir := filepath.Join("testdata", "templates")
	cases, err := filepath.Glob(filepath.Join(dir, "cases", "*.json"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	fixed := time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)
	checked := 0
	for family, f := range families {
		src, err := os.ReadFile(filepath.Join(dir, family+".jinja"))
		if err != nil {
			t.Fatal(err)
		}
		tpl, err := compileJinja(string(src))
		if err != nil {
			t.Errorf("%s: %v", family, err)
			continue
		}
		tmpl := chatTemplate{jinja: tpl, bos: f.bos, eos: f.eos, now: func() time.Time { return fixed }}
		for _, path := range cases {
			name := strings.TrimSuffix(filepath.Base(path), ".json")
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			vars, err := caseVars(raw)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			for k, v := range f.vars {
				vars[k] = v
			}
			got, rerr := tmpl.render(vars)
			golden := filepath.Join(dir, "golden", family+"__"+name)
			if want, err := os.ReadFile(golden + ".txt"); err == nil {
				if rerr != nil {
					t.Errorf("%s × %s: %v; the reference renders it", family, name, rerr)
				} else if got != string(want) {
					t.Errorf("%s × %s: the prompt differs from the reference at byte %d:\n got: %q\nwant: %q", family, name, diffAt(got, string(want)), got, want)
				}
			} else if want, err := os.ReadFile(golden + ".error"); err == nil {
				if strings.Contains(string(want), "NoneType") {
					// Python's own type error on a null content (None + str): the
					// reference renders nothing to compare with (docs/tools.md §1:
					// such templates are to get "" for it).
					continue
				}
				if rerr == nil {
					t.Errorf("%s × %s: rendered, but the reference refuses it (%s)", family, name, strings.TrimSpace(string(want)))
				}
			} else {
				t.Fatalf("%s × %s: no golden file", family, name)
			}
			checked++
		}
	}
	t.Logf("%d renderings compared with the reference", checked)
}

// caseVars reads a case: its messages, tools and add_generation_prompt, and any other
// top-level key, as template variables (as apply_chat_template's keyword arguments).
func caseVars(raw []byte) (map[string]any, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil {
		return nil, err
	}
	vars := map[string]any{}
	for k, v := range top {
		val, err := jsonValue(v)
		if err != nil {
			return nil, err
		}
		if k == "messages" {
			list, ok := val.([]any)
			if !ok {
				return nil, errors.New("messages is not a list")
			}
			val = messageList(list)
		}
		vars[k] = val
	}
	return vars, nil
}

func diffAt(a, b string) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// BenchmarkTemplateRender is the cost of rendering a chat template per request: the
// real Llama 3.1 template (the longest of the reference set) with two tools and a
// tool result, and Qwen 2.5 with a three-turn chat.
func BenchmarkTemplateRender(b *testing.B) {
	for _, bc := range []struct{ family, c string }{{"llama3.1", "toolresult"}, {"qwen2.5", "multiturn"}} {
		b.Run(bc.family+"/"+bc.c, func(b *testing.B) {
			dir := filepath.Join("testdata", "templates")
			src, err := os.ReadFile(filepath.Join(dir, bc.family+".jinja"))
			if err != nil {
				b.Fatal(err)
			}
			tpl, err := compileJinja(string(src))
			if err != nil {
				b.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(dir, "cases", bc.c+".json"))
			if err != nil {
				b.Fatal(err)
			}
			f := families[bc.family]
			tmpl := chatTemplate{jinja: tpl, bos: f.bos, eos: f.eos, now: time.Now}
			b.ReportAllocs()
			for b.Loop() {
				vars, err := caseVars(raw)
				if err != nil {
					b.Fatal(err)
				}
				for k, v := range f.vars {
					vars[k] = v
				}
				if _, err := tmpl.render(vars); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
