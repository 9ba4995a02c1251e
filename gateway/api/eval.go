package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/evaluate"
	"github.com/ragway/ragway/gateway/knowledge"
	"github.com/ragway/ragway/gateway/oai"
)

// maxEvalQuestions bounds the questions of one evaluation request.
const maxEvalQuestions = 1000

type figuresJSON struct {
	Questions int     `json:"questions"`
	Recall1   float64 `json:"recall_at_1"`
	Recall5   float64 `json:"recall_at_5"`
	Recall10  float64 `json:"recall_at_10"`
	MRR10     float64 `json:"mrr_at_10"`
	NDCG10    float64 `json:"ndcg_at_10"`
}

func toFiguresJSON(f evaluate.Figures) figuresJSON {
	return figuresJSON{Questions: f.Questions, Recall1: f.Recall1, Recall5: f.Recall5, Recall10: f.Recall10, MRR10: f.MRR10, NDCG10: f.NDCG10}
}

// adminEval serves POST /admin/knowledge-bases/{kb}/eval {"questions": "…JSON Lines…",
// "retrieval"?: {…}, "compare"?: {…}}: `ragway eval` in the gateway. The questions (a
// question file's text, at most 1000) run through the same search as chats, over the
// caller's knowledge base, by its retrieval settings with "retrieval" over them; the
// answer has the figures overall and per kind, and the misses. With "compare" they
// run again with those settings instead, and the answer has both.
func (s *server) adminEval(c *fiber.Ctx) error {
	k, err := s.kb(c)
	if err != nil {
		return err
	}
	var req struct {
		Questions string           `json:"questions"`
		Retrieval json.RawMessage  `json:"retrieval"`
		Compare   *json.RawMessage `json:"compare"`
	}
	if err := decodeStrict(c.Body(), &req); err != nil {
		return err
	}
	if req.Questions == "" {
		return oai.Missing("questions")
	}
	if e := oai.CheckText("questions", req.Questions); e != nil {
		return e
	}
	qs, err := evaluate.ReadQuestions(strings.NewReader(req.Questions))
	if err != nil {
		return oai.Invalid("questions", oai.CodeInvalidValue, "invalid 'questions': %v", err)
	}
	if len(qs) > maxEvalQuestions {
		return oai.Invalid("questions", oai.CodeInvalidValue, "invalid 'questions': at most %d per request, got %d", maxEvalQuestions, len(qs))
	}
	runs := []json.RawMessage{req.Retrieval}
	names := []string{"retrieval"}
	if req.Compare != nil {
		runs, names = append(runs, *req.Compare), append(names, "compare")
	}
	sets := make([]knowledge.Settings, len(runs))
	for i, raw := range runs {
		set, err := knowledge.ParseSettings(raw, names[i])
		if err == nil {
			err = set.CheckSearch(names[i])
		}
		if e := settingsError(err); e != nil {
			return e
		}
		if err != nil {
			return err
		}
		sets[i] = set
	}
	user := principalOf(c).UserID
	reports := make([]evalReportJSON, len(sets))
	for i, set := range sets {
		judged, err := evaluate.Run(c.UserContext(), qs, func(ctx context.Context, q string) ([]evaluate.Hit, error) {
			hits, err := s.opts.Knowledge.Search(ctx, user, k, knowledge.Query{Text: q, TopK: 10, Settings: set})
			out := make([]evaluate.Hit, len(hits))
			for j, h := range hits {
				out[j] = evaluate.Hit{DocumentID: h.DocumentID, Title: h.Title, Text: h.Text}
			}
			return out, err
		}, 4)
		if e := settingsError(err); e != nil {
			return e // the run's settings, not one question
		}
		var qe *evaluate.QuestionError
		if errors.As(err, &qe) {
			e := toAPIError(qe.Err)
			e.Message = fmt.Sprintf("question on line %d: %s", qe.Line, e.Message)
			return e
		}
		if err != nil {
			return err
		}
		reports[i] = toEvalReportJSON(k.Name, set, evaluate.Summarize(judged))
	}
	if len(reports) == 1 {
		return c.JSON(reports[0])
	}
	reports[0].Compare = &reports[1]
	return c.JSON(reports[0])
}

type missJSON struct {
	Line int    `json:"line"`
	Kind string `json:"kind"`
	Q    string `json:"q"`
}

type evalReportJSON struct {
	Object        string                 `json:"object"`
	KnowledgeBase string                 `json:"knowledge_base"`
	Retrieval     json.RawMessage        `json:"retrieval"`
	Overall       figuresJSON            `json:"overall"`
	ByKind        map[string]figuresJSON `json:"by_kind"`
	Misses        []missJSON             `json:"misses"`
	// Compare is the run with the "compare" settings, when asked for.
	Compare *evalReportJSON `json:"compare,omitempty"`
}

func toEvalReportJSON(kb string, set knowledge.Settings, r evaluate.Report) evalReportJSON {
	out := evalReportJSON{Object: "eval.report", KnowledgeBase: kb, Retrieval: json.RawMessage(set.String()),
		Overall: toFiguresJSON(r.Overall), ByKind: map[string]figuresJSON{}, Misses: []missJSON{}}
	for kind, f := range r.ByKind {
		out.ByKind[kind] = toFiguresJSON(*f)
	}
	for _, m := range r.Misses {
		out.Misses = append(out.Misses, missJSON{Line: m.Question.Line, Kind: m.Question.Kind, Q: m.Question.Q})
	}
	return out
}
