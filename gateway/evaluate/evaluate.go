package evaluate

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode"
)

// Question is one line of a question file.
type Question struct {
	Q string `json:"q"`
	// Expect are substrings of a relevant chunk's text; Docs, relevant documents
	// (ids or titles). At least one of the two.
	Expect []string `json:"expect,omitempty"`
	Docs   []string `json:"docs,omitempty"`
	// Kind groups questions in the report ("lexical", "paraphrase", …); "" is
	// "other".
	Kind string `json:"kind,omitempty"`
	// Line is the question's line in its file.
	Line int `json:"-"`
}

// Hit is what a search returned, as judged.
type Hit struct {
	DocumentID, Title, Text string
}

// Limits of a question file.
const (
	MaxQuestions = 10000
	maxLine      = 1 << 20
)

// ReadQuestions parses a question file. Errors name the line.
func ReadQuestions(r io.Reader) ([]Question, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out []Question
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		var q Question
		if err := dec.Decode(&q); err != nil {
			return nil, fmt.Errorf("line %d: %v (want {\"q\": …, \"expect\": [...] or \"docs\": [...], \"kind\"?: …})", n, err)
		}
		switch {
		case strings.TrimSpace(q.Q) == "":
			return nil, fmt.Errorf("line %d: \"q\" is empty", n)
		case len(q.Expect) == 0 && len(q.Docs) == 0:
			return nil, fmt.Errorf("line %d: give \"expect\" (substrings of the answer) or \"docs\" (document ids or titles)", n)
		case slices.ContainsFunc(q.Expect, func(s string) bool { return strings.TrimSpace(s) == "" }):
			return nil, fmt.Errorf("line %d: an empty \"expect\" substring matches everything", n)
		}
		q.Line = n
		out = append(out, q)
		if len(out) > MaxQuestions {
			return nil, fmt.Errorf("more than %d questions", MaxQuestions)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("a line is longer than %d bytes", maxLine)
		}
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no questions")
	}
	return out, nil
}

// fold lowers s and makes runs of white space one space, for matching.
func fold(s string) string {
	var b strings.Builder
	space := false
	for _, r := range strings.ToLower(s) {
		if unicode.IsSpace(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// Judged is one question's outcome.
type Judged struct {
	Question Question
	// Rank is the rank (from 1) of the first relevant hit, 0 if none.
	Rank int
	// DCG is the discounted gain of the first 10 hits; IDCG the ideal one.
	DCG, IDCG float64
}

// Judge judges hits (best first) for q.
func Judge(q Question, hits []Hit) Judged {
	j := Judged{Question: q}
	expect := make([]string, len(q.Expect))
	for i, e := range q.Expect {
		expect[i] = fold(e)
	}
	met := make([]bool, len(q.Expect)+len(q.Docs))
	for i, h := range hits {
		if i >= 10 {
			break
		}
		text := fold(h.Text)
		gain := 0.0
		for k, e := range expect {
			if !met[k] && strings.Contains(text, e) {
				met[k], gain = true, 1
			}
		}
		for k, d := range q.Docs {
			if !met[len(expect)+k] && (d == h.DocumentID || d == h.Title) {
				met[len(expect)+k], gain = true, 1
			}
		}
		if gain > 0 {
			if j.Rank == 0 {
				j.Rank = i + 1
			}
			j.DCG += gain / math.Log2(float64(i+2))
		}
	}
	for i := range min(len(met), 10) {
		j.IDCG += 1 / math.Log2(float64(i+2))
	}
	return j
}

// Figures are the measures of a set of questions.
type Figures struct {
	Questions                  int
	Recall1, Recall5, Recall10 float64
	MRR10, NDCG10              float64
	found1, found5, found10    int
	reciprocal, ndcg           float64
}

func (f *Figures) add(j Judged) {
	f.Questions++
	switch r := j.Rank; {
	case r == 0:
	case r == 1:
		f.found1++
		fallthrough
	case r <= 5:
		f.found5++
		fallthrough
	default:
		f.found10++
		f.reciprocal += 1 / float64(r)
	}
	if j.IDCG > 0 {
		f.ndcg += j.DCG / j.IDCG
	}
	n := float64(f.Questions)
	f.Recall1, f.Recall5, f.Recall10 = float64(f.found1)/n, float64(f.found5)/n, float64(f.found10)/n
	f.MRR10, f.NDCG10 = f.reciprocal/n, f.ndcg/n
}

// Report is an evaluation's outcome: the figures overall and per kind (sorted by
// kind), and the questions whose answer is not in the first 10 hits.
type Report struct {
	Overall Figures
	Kinds   []string
	ByKind  map[string]*Figures
	Misses  []Judged
}

// Summarize makes the report of judged questions.
func Summarize(judged []Judged) Report {
	r := Report{ByKind: map[string]*Figures{}}
	for _, j := range judged {
		r.Overall.add(j)
		kind := j.Question.Kind
		if kind == "" {
			kind = "other"
		}
		f := r.ByKind[kind]
		if f == nil {
			f = &Figures{}
			r.ByKind[kind] = f
			r.Kinds = append(r.Kinds, kind)
		}
		f.add(j)
		if j.Rank == 0 {
			r.Misses = append(r.Misses, j)
		}
	}
	slices.Sort(r.Kinds)
	return r
}

// Write prints r as a table, then the misses (at most maxMisses).
func (r Report) Write(w io.Writer, maxMisses int) {
	fmt.Fprintf(w, "%-14s %9s %9s %9s %9s %9s %9s\n", "kind", "questions", "recall@1", "recall@5", "recall@10", "MRR@10", "nDCG@10")
	row := func(name string, f Figures) {
		fmt.Fprintf(w, "%-14s %9d %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, f.Questions, f.Recall1, f.Recall5, f.Recall10, f.MRR10, f.NDCG10)
	}
	for _, k := range r.Kinds {
		row(k, *r.ByKind[k])
	}
	row("all", r.Overall)
	if len(r.Misses) == 0 {
		return
	}
	fmt.Fprintf(w, "\nmissed (no relevant hit in the first 10): %d\n", len(r.Misses))
	for i, m := range r.Misses {
		if i == maxMisses {
			fmt.Fprintf(w, "  … and %d more\n", len(r.Misses)-maxMisses)
			break
		}
		fmt.Fprintf(w, "  line %d [%s] %s\n", m.Question.Line, m.Question.Kind, m.Question.Q)
	}
}

// WriteCompared prints two reports of the same questions side by side: for each kind
// (and all), a row for a, a row for b, and their difference; then the questions only
// one of them missed (at most maxMisses each).
func WriteCompared(w io.Writer, a, b Report, maxMisses int) {
	fmt.Fprintf(w, "%-14s %-4s %9s %9s %9s %9s %9s %9s\n", "kind", "", "questions", "recall@1", "recall@5", "recall@10", "MRR@10", "nDCG@10")
	row := func(name, which string, f Figures) {
		fmt.Fprintf(w, "%-14s %-4s %9d %9.3f %9.3f %9.3f %9.3f %9.3f\n", name, which, f.Questions, f.Recall1, f.Recall5, f.Recall10, f.MRR10, f.NDCG10)
	}
	diff := func(fa, fb Figures) {
		fmt.Fprintf(w, "%-14s %-4s %9s %+9.3f %+9.3f %+9.3f %+9.3f %+9.3f\n", "", "B-A", "", fb.Recall1-fa.Recall1, fb.Recall5-fa.Recall5,
			fb.Recall10-fa.Recall10, fb.MRR10-fa.MRR10, fb.NDCG10-fa.NDCG10)
	}
	kinds := slices.Clone(a.Kinds)
	for _, k := range b.Kinds {
		if !slices.Contains(kinds, k) {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	figures := func(r Report, kind string) Figures {
		if f := r.ByKind[kind]; f != nil {
			return *f
		}
		return Figures{}
	}
	for _, k := range kinds {
		row(k, "A", figures(a, k))
		row("", "B", figures(b, k))
		diff(figures(a, k), figures(b, k))
	}
	row("all", "A", a.Overall)
	row("", "B", b.Overall)
	diff(a.Overall, b.Overall)
	only := func(name string, x, y Report) {
		missed := map[int]bool{}
		for _, m := range y.Misses {
			missed[m.Question.Line] = true
		}
		var lines []Judged
		for _, m := range x.Misses {
			if !missed[m.Question.Line] {
				lines = append(lines, m)
			}
		}
		if len(lines) == 0 {
			return
		}
		fmt.Fprintf(w, "\nmissed by %s only (no relevant hit in the first 10): %d\n", name, len(lines))
		for i, m := range lines {
			if i == maxMisses {
				fmt.Fprintf(w, "  … and %d more\n", len(lines)-maxMisses)
				break
			}
			fmt.Fprintf(w, "  line %d [%s] %s\n", m.Question.Line, m.Question.Kind, m.Question.Q)
		}
	}
	only("A", a, b)
	only("B", b, a)
}

// SearchFunc searches for a question's text and returns the hits, best first.
type SearchFunc func(ctx context.Context, q string) ([]Hit, error)

// Run judges every question of qs on what search returns, parallel at a time. The
// first error is returned, naming its question's line.
func Run(ctx context.Context, qs []Question, search SearchFunc, parallel int) ([]Judged, error) {
	judged := make([]Judged, len(qs))
	errs := make([]error, len(qs))
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			hits, err := search(ctx, q.Q)
			if err != nil {
				errs[i] = &QuestionError{Line: q.Line, Err: err}
				return
			}
			judged[i] = Judge(q, hits)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return judged, nil
}

// QuestionError is a search that failed for the question on Line.
type QuestionError struct {
	Line int
	Err  error
}

func (e *QuestionError) Error() string { return fmt.Sprintf("question on line %d: %v", e.Line, e.Err) }
func (e *QuestionError) Unwrap() error { return e.Err }
