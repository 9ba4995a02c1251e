package evaluate

import (
	"bytes"
	"context"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestReadQuestions(t *testing.T) {
	qs, err := ReadQuestions(strings.NewReader(`# a comment
{"q": "where is the sea", "expect": ["The Sea"], "kind": "lexical"}

{"q": "which doc", "docs": ["d1"]}
`))
	if err != nil || len(qs) != 2 || qs[0].Line != 2 || qs[1].Line != 4 || qs[1].Kind != "" {
		t.Fatalf("ReadQuestions = %+v, %v", qs, err)
	}
	for _, c := range []struct{ file, want string }{
		{`{"q": "x"}`, "line 1: give \"expect\""},
		{`{"q": "", "expect": ["a"]}`, "line 1: \"q\" is empty"},
		{`{"q": "x", "expect": [" "]}`, "matches everything"},
		{`{"q": "x", "expect": ["a"], "kinds": "y"}`, "line 1: json: unknown field"},
		{"{\"q\": \"x\", \"expect\": [\"a\"]}\nnot json", "line 2:"},
		{"", "no questions"},
		{strings.Repeat(`{"q": "x", "expect": ["a"]}`+"\n", MaxQuestions+1), "more than 10000 questions"},
		{`{"q": "x", "expect": ["` + strings.Repeat("a", maxLine) + `"]}`, "a line is longer than"},
	} {
		if _, err := ReadQuestions(strings.NewReader(c.file)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ReadQuestions(%.60q…) = %v, want %q", c.file, err, c.want)
		}
	}
}

func TestJudgeAndSummarize(t *testing.T) {
	hits := []Hit{
		{DocumentID: "d9", Text: "nothing here"},
		{DocumentID: "d2", Text: "The  SEA is\nblue"},
		{DocumentID: "d3", Title: "Waves", Text: "the sea is blue again"},
	}
	j := Judge(Question{Q: "q", Expect: []string{"the sea is blue"}}, hits)
	// First relevant at rank 2; the second hit with the same substring adds nothing.
	if j.Rank != 2 || math.Abs(j.DCG-1/math.Log2(3)) > 1e-9 || j.IDCG != 1 {
		t.Fatalf("Judge = %+v", j)
	}
	two := Judge(Question{Q: "q", Expect: []string{"sea is blue"}, Docs: []string{"Waves"}}, hits)
	if two.Rank != 2 || math.Abs(two.DCG/two.IDCG-(1/math.Log2(3)+1/math.Log2(4))/(1+1/math.Log2(3))) > 1e-9 {
		t.Fatalf("two expectations: %+v", two)
	}
	miss := Judge(Question{Q: "q", Expect: []string{"absent"}, Kind: "needle", Line: 7}, hits)
	first := Judge(Question{Q: "q", Docs: []string{"d9"}, Kind: "needle"}, hits)
	r := Summarize([]Judged{j, miss, first})
	if r.Overall.Questions != 3 || r.Overall.Recall1 != 1.0/3 || r.Overall.Recall5 != 2.0/3 ||
		math.Abs(r.Overall.MRR10-(0.5+1)/3) > 1e-9 || len(r.Misses) != 1 || strings.Join(r.Kinds, ",") != "needle,other" {
		t.Fatalf("Summarize = %+v", r)
	}
	if f := r.ByKind["needle"]; f.Questions != 2 || f.Recall10 != 0.5 || f.MRR10 != 0.5 {
		t.Fatalf("needle: %+v", f)
	}
	var out bytes.Buffer
	r.Write(&out, 10)
	for _, want := range []string{"needle", "other", "all", "0.333", "missed (no relevant hit in the first 10): 1", "line 7 [needle] q"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("report lacks %q:\n%s", want, out.String())
		}
	}
	// Beyond the 10th hit nothing counts.
	far := make([]Hit, 12)
	far[11] = Hit{Text: "needle"}
	if j := Judge(Question{Q: "q", Expect: []string{"needle"}}, far); j.Rank != 0 {
		t.Fatalf("a hit at rank 12 counted: %+v", j)
	}
}

func TestRun(t *testing.T) {
	qs := []Question{{Q: "a", Expect: []string{"x"}, Line: 1}, {Q: "b", Expect: []string{"y"}, Line: 2}}
	judged, err := Run(context.Background(), qs, func(_ context.Context, q string) ([]Hit, error) {
		return []Hit{{Text: "x y"}}, nil
	}, 2)
	if err != nil || len(judged) != 2 || judged[0].Rank != 1 || judged[1].Rank != 1 {
		t.Fatalf("Run = %+v, %v", judged, err)
	}
	_, err = Run(context.Background(), qs, func(_ context.Context, q string) ([]Hit, error) {
		if q == "b" {
			return nil, errors.New("index down")
		}
		return nil, nil
	}, 2)
	var qe *QuestionError
	if !errors.As(err, &qe) || qe.Line != 2 || !strings.Contains(err.Error(), "question on line 2: index down") {
		t.Fatalf("Run with a failing search: %v", err)
	}
}
