package api

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// MaxRerankDocuments bounds the documents of one /v1/rerank request.
const MaxRerankDocuments = 1000

// rerankRequest is the body of POST /v1/rerank: the shape Cohere, Jina and vLLM
// share.
type rerankRequest struct {
	Model           string          `json:"model"`
	Query           *string         `json:"query"`
	Documents       json.RawMessage `json:"documents"`
	TopN            *int            `json:"top_n"`
	ReturnDocuments *bool           `json:"return_documents"`
}

// rerank serves POST /v1/rerank for rerank models: the documents' relevance to the
// query, most relevant first, top_n of them (default all), each with its index in the
// request and, unless return_documents is false, its text.
func (s *server) rerank(c *fiber.Ctx, cl *call) error {
	var req rerankRequest
	if err := oai.Decode(c.Body(), &req, ""); err != nil {
		return err
	}
	// Other servers' options (vLLM's truncate_prompt_tokens, Cohere's
	// max_tokens_per_doc, rank_fields …) change the answer: refused, not ignored.
	if k := oai.UnknownField(c.Body(), &req); k != "" {
		return oai.Invalid(k, "unknown_parameter", "'%s' is not supported by /v1/rerank (model, query, documents, top_n, return_documents)", k)
	}
	m, aerr := s.resolveModel(cl, req.Model, kindRerank)
	if aerr != nil {
		return aerr
	}
	if req.Query == nil {
		return oai.Missing("query")
	}
	if *req.Query == "" {
		return oai.Invalid("query", oai.CodeInvalidValue, "'query' must not be empty")
	}
	docs, aerr := rerankDocuments(req.Documents)
	if aerr != nil {
		return aerr
	}
	topN := len(docs)
	if req.TopN != nil {
		if *req.TopN < 1 {
			return oai.Invalid("top_n", oai.CodeInvalidValue, "invalid value for 'top_n': %d; it must be at least 1", *req.TopN)
		}
		topN = min(*req.TopN, len(docs))
	}
	withDocs := req.ReturnDocuments == nil || *req.ReturnDocuments

	waiting, _, stop := whileClientWaits(c)
	defer stop()
	ctx, cancel := context.WithTimeout(waiting, s.opts.RequestTimeout)
	resp, err := s.b.Rerank(ctx, m.Name, sdk.RerankRequest{Query: *req.Query, Documents: docs})
	cancel()
	stop()
	if err != nil {
		return err
	}
	if len(resp.Scores) != len(docs) {
		return oai.BackendFailed(fmt.Sprintf("the backend returned %d scores for %d documents", len(resp.Scores), len(docs)))
	}
	cl.tokens(resp.PromptTokens, 0)

	order := make([]int, len(docs))
	for i := range order {
		order[i] = i
	}
	// Most relevant first; equal scores keep the request's order.
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(resp.Scores[b], resp.Scores[a]) })
	b := make([]byte, 0, 128+topN*48)
	b = append(b, `{"id":`...)
	b = oai.AppendString(b, "rerank-"+reqID(c))
	b = append(b, `,"model":`...)
	b = oai.AppendString(b, req.Model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(resp.PromptTokens), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(resp.PromptTokens), 10)
	b = append(b, `},"results":[`...)
	for k, i := range order[:topN] {
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"relevance_score":`...)
		b = appendFloat32(b, resp.Scores[i])
		if withDocs {
			b = append(b, `,"document":{"text":`...)
			b = oai.AppendString(b, docs[i])
			b = append(b, '}')
		}
		b = append(b, '}')
	}
	b = append(b, "]}"...)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// rerankDocuments reads "documents": an array of 1 to MaxRerankDocuments strings,
// or of objects {"text": string} (Cohere's and Jina's other form), none empty.
func rerankDocuments(raw json.RawMessage) ([]string, *oai.Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, oai.Missing("documents")
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, oai.Invalid("documents", oai.CodeInvalidType, "invalid type for 'documents': expected an array of strings")
	}
	switch {
	case len(elems) == 0:
		return nil, oai.Invalid("documents", oai.CodeInvalidValue, "'documents' must contain at least one document")
	case len(elems) > MaxRerankDocuments:
		return nil, oai.Invalid("documents", oai.CodeInvalidValue, "'documents' has %d documents; at most %d per request", len(elems), MaxRerankDocuments)
	}
	docs := make([]string, len(elems))
	for i, el := range elems {
		p := fmt.Sprintf("documents[%d]", i)
		var text string
		if err := json.Unmarshal(el, &text); err != nil {
			var obj struct {
				Text *string `json:"text"`
			}
			if e := oai.Decode(el, &obj, p); e != nil || firstNonSpace(el) != '{' {
				return nil, oai.Invalid(p, oai.CodeInvalidType, "invalid type for '%s': expected a string or {\"text\": string}", p)
			}
			if k := oai.UnknownField(el, &obj); k != "" {
				return nil, oai.Invalid(p+"."+k, "unknown_parameter", "unknown field '%s' in '%s': a document is a string or {\"text\": string}", k, p)
			}
			if obj.Text == nil {
				return nil, oai.Missing(p + ".text")
			}
			text = *obj.Text
		}
		if text == "" {
			return nil, oai.Invalid(p, oai.CodeInvalidValue, "'%s' must not be empty", p)
		}
		docs[i] = text
	}
	return docs, nil
}

// firstNonSpace is the first byte of b that is not JSON white space, 0 if none.
func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}
