package main

import (
	"context"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/hybridgroup/yzma/pkg/llama"
	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugins/llamacpp/gguf"
)

// Reranking. A model loaded with rerank: true is a cross-encoder run under
// llama.cpp's rank pooling (LLAMA_POOLING_TYPE_RANK): each query-document
// pair is one sequence, and llama_get_embeddings_seq gives the model's
// classification head's output for it, n_cls_out floats, the first of which
// is the pair's score (as llama.cpp's server takes it). For a BERT-like
// reranker (bge-reranker, jina-reranker) it is a logit of the first token's
// state; for a Qwen3-Reranker llama.cpp applies a softmax over the head's
// outputs ("yes", "no") of the last token's state, so the score is P(yes).
//
// Rank pooling needs a classification head (tensor cls.output.weight or
// cls.weight). llama.cpp does not check: without one it hands back floats of
// the pooled state that are no score at all. So Load reads the GGUF header
// and refuses a model that has none.

// checkRerankModel refuses a GGUF file without a classification head with
// sdk.ErrUnsupported (the model cannot serve as a reranker: the gateway does
// not retry the load). A header this package cannot read is left to
// llama.cpp to judge.
func checkRerankModel(path string) error {
	h, err := gguf.ReadFile(path)
	if err != nil {
		return nil
	}
	for _, t := range h.Tensors {
		if t.Name == "cls.output.weight" || t.Name == "cls.weight" {
			return nil
		}
	}
	arch, _ := h.Get("general.architecture")
	return fmt.Errorf("%w: model_path %s (architecture %v) has no classification head (tensor cls.output.weight or cls.weight): it is not a reranker, and llama.cpp's rank pooling would give no score", sdk.ErrUnsupported, path, arch)
}

// rerankFormat turns a query-document pair into the tokens the model scores,
// as llama.cpp's server does (tools/server, format_prompt_rerank):
//
//   - a model whose GGUF has a rerank prompt (tokenizer.chat_template.rerank,
//     as conversions of Qwen3-Reranker carry) gets that prompt with the query
//     in place of {query} and the document in place of {document};
//   - any other gets [BOS] query [EOS] [SEP] document [EOS]: BOS where the
//     vocabulary adds one, EOS (SEP where there is no EOS) and SEP where the
//     vocabulary has them. For an XLM-RoBERTa reranker (bge-reranker-v2-m3)
//     that is "<s> query </s></s> document </s>", its training format.
//
// Where it departs from the server, deliberately: the placeholders are
// replaced in one pass (a query holding "{document}" stays text), and
// special-token text is a special token only in the prompt's own text, never
// in the query or a document (a document holding "<|im_end|>" cannot end the
// prompt's turn early; Embed treats its inputs the same way). The text
// between two special tokens, prompt and user text alike, is tokenized as one
// text, as llama.cpp tokenizes the rendered prompt, so words at the seams
// tokenize as they would in it.
type rerankFormat struct {
	// items are the parts of the rerank prompt in order; nil when the model
	// has none.
	items []rerankItem
	// bos, eos and sep frame the pair without a prompt; -1: none.
	bos, eos, sep llama.Token
}

// rerankItem is one part of a rerank prompt.
type rerankItem struct {
	kind rerankItemKind
	text string      // itemText
	tok  llama.Token // itemSpecial
}

type rerankItemKind int

const (
	itemText     rerankItemKind = iota // the prompt's own text
	itemSpecial                        // a special token written in the prompt
	itemQuery                          // {query}
	itemDocument                       // {document}
)

// newRerankFormat reads the model's rerank prompt, if any.
func newRerankFormat(model llama.Model) (*rerankFormat, error) {
	vocab := llama.ModelGetVocab(model)
	tmpl := llama.ModelChatTemplate(model, "rerank")
	if tmpl == "" {
		f := &rerankFormat{bos: -1, eos: llama.VocabEOS(vocab), sep: llama.VocabSEP(vocab)}
		if llama.VocabGetAddBOS(vocab) {
			f.bos = llama.VocabBOS(vocab)
		}
		if f.eos < 0 {
			f.eos = f.sep
		}
		return f, nil
	}
	if !strings.Contains(tmpl, "{query}") || !strings.Contains(tmpl, "{document}") {
		return nil, fmt.Errorf("the model's rerank prompt (tokenizer.chat_template.rerank) lacks {query} or {document}")
	}
	return &rerankFormat{items: parseRerankPrompt(tmpl, specialTokens(vocab, tmpl))}, nil
}

// specialTokens returns the special tokens (control, user-defined and unknown
// ones: those llama.cpp recognises when it parses special tokens) whose text
// occurs in s, by text.
func specialTokens(vocab llama.Vocab, s string) map[string]llama.Token {
	out := map[string]llama.Token{}
	const special = llama.TokenAttrControl | llama.TokenAttrUserDef | llama.TokenAttrUnknown
	for id := range llama.Token(llama.VocabNTokens(vocab)) {
		if llama.VocabGetAttr(vocab, id)&special == 0 {
			continue
		}
		if text := llama.VocabGetText(vocab, id); text != "" && strings.Contains(s, text) {
			if _, dup := out[text]; !dup {
				out[text] = id
			}
		}
	}
	return out
}

// parseRerankPrompt splits a rerank prompt into its text, its special tokens
// (the longest match at each place) and its placeholders.
func parseRerankPrompt(tmpl string, specials map[string]llama.Token) []rerankItem {
	var items []rerankItem
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			items = append(items, rerankItem{kind: itemText, text: text.String()})
			text.Reset()
		}
	}
	for i := 0; i < len(tmpl); {
		rest := tmpl[i:]
		if strings.HasPrefix(rest, "{query}") {
			flush()
			items = append(items, rerankItem{kind: itemQuery})
			i += len("{query}")
			continue
		}
		if strings.HasPrefix(rest, "{document}") {
			flush()
			items = append(items, rerankItem{kind: itemDocument})
			i += len("{document}")
			continue
		}
		best := ""
		for s := range specials {
			if len(s) > len(best) && strings.HasPrefix(rest, s) {
				best = s
			}
		}
		if best != "" {
			flush()
			items = append(items, rerankItem{kind: itemSpecial, tok: specials[best]})
			i += len(best)
			continue
		}
		text.WriteByte(tmpl[i])
		i++
	}
	flush()
	return items
}

// pairs renders the pairs of one query.
type pairs struct {
	f     *rerankFormat
	tok   *tokenizer
	query string
	q     []llama.Token // the query's tokens (no prompt)
}

// newPairs checks and tokenizes the query.
func (f *rerankFormat) newPairs(tok *tokenizer, query string) (*pairs, error) {
	p := &pairs{f: f, tok: tok, query: query}
	if f.items == nil {
		var err error
		if p.q, err = tok.plain("the query", query); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// render returns the tokens of the pair (query, doc). The texts have been
// checked for NUL (see Rerank).
func (p *pairs) render(doc string) ([]llama.Token, error) {
	if p.f.items == nil {
		d, err := p.tok.plain("a document", doc)
		if err != nil {
			return nil, err
		}
		return p.frame(d), nil
	}
	var out []llama.Token
	var text strings.Builder
	flush := func() error {
		if text.Len() == 0 {
			return nil
		}
		t, err := p.tok.plain("a query-document pair", text.String())
		out = append(out, t...)
		text.Reset()
		return err
	}
	for _, it := range p.f.items {
		switch it.kind {
		case itemText:
			text.WriteString(it.text)
		case itemQuery:
			text.WriteString(p.query)
		case itemDocument:
			text.WriteString(doc)
		case itemSpecial:
			if err := flush(); err != nil {
				return nil, err
			}
			out = append(out, it.tok)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// frame puts the query's and a document's tokens together without a prompt.
func (p *pairs) frame(d []llama.Token) []llama.Token {
	out := make([]llama.Token, 0, len(p.q)+len(d)+4)
	add := func(t llama.Token) {
		if t >= 0 {
			out = append(out, t)
		}
	}
	add(p.f.bos)
	out = append(out, p.q...)
	add(p.f.eos)
	add(p.f.sep)
	out = append(out, d...)
	add(p.f.eos)
	return out
}

// fit returns the tokens of the pair (query, doc) if they are at most limit;
// a longer pair is ErrInvalidRequest naming field, or with truncate the pair
// with the document's end cut so that it fits. The query alone must fit (see
// Rerank).
func (p *pairs) fit(field, doc string, limit int, truncate bool) ([]llama.Token, error) {
	toks, err := p.render(doc)
	if err != nil || len(toks) <= limit {
		return toks, err
	}
	if !truncate {
		return nil, sdk.InvalidRequestf("%s with the query is %d tokens; at most %d fit in a query-document pair", field, len(toks), limit)
	}
	d, err := p.tok.plain(field, doc)
	if err != nil {
		return nil, err
	}
	keep := max(len(d)-(len(toks)-limit), 0)
	if p.f.items == nil {
		// The document's tokens stand alone in the pair: cut them.
		return p.frame(d[:keep]), nil
	}
	// In a prompt the document is tokenized with the text around it: cut its
	// text where its first keep tokens end, render again, and cut further if
	// the seams tokenized differently. Each round keeps fewer tokens; after a
	// few, half as many, so that the rounds are few however long the document.
	offs := p.offsets(d, doc)
	for round := 0; ; round++ {
		cut := 0
		if len(d) > 0 {
			if offs != nil {
				cut = offs[keep]
			} else {
				cut = len(doc) * keep / len(d)
			}
		}
		for cut > 0 && cut < len(doc) && !utf8.RuneStart(doc[cut]) {
			cut--
		}
		if toks, err = p.render(doc[:cut]); err != nil || len(toks) <= limit {
			return toks, err
		}
		if keep == 0 {
			// Not reached: the query was checked with an empty document.
			return nil, sdk.InvalidRequestf("the query is %d tokens in a query-document pair; at most %d fit", len(toks), limit)
		}
		if round < 3 {
			keep = max(keep-max(len(toks)-limit, 1), 0)
		} else {
			keep /= 2
		}
	}
}

// offsets returns where each of the document's tokens d starts in doc (and
// len(doc) last), or nil when their pieces do not spell it out byte for byte
// (allowing the space a SentencePiece tokenizer puts before the text).
func (p *pairs) offsets(d []llama.Token, doc string) []int {
	offs := make([]int, len(d)+1)
	pos := 0
	for i, t := range d {
		offs[i] = pos
		pos += p.tok.pieceLen(t)
	}
	offs[len(d)] = pos
	shift := pos - len(doc)
	if shift < 0 || shift > 1 {
		return nil
	}
	for i := range offs {
		offs[i] = max(offs[i]-shift, 0)
	}
	return offs
}

// Rerank scores each document against the query: one sequence per pair,
// batched through the context's sequences as Embed batches its inputs. Every
// pair is tokenized and checked before anything is decoded.
func (b *backend) Rerank(ctx context.Context, req sdk.RerankRequest) (sdk.RerankResponse, error) {
	if _, err := b.loaded(); err != nil {
		return sdk.RerankResponse{}, err
	}
	if !b.rerank {
		return sdk.RerankResponse{}, sdk.InvalidRequestf("this model is not loaded for reranking (set rerank: true)")
	}
	if req.Query == "" {
		return sdk.RerankResponse{}, sdk.InvalidRequestf("the query is empty")
	}
	resp := sdk.RerankResponse{Scores: make([]float32, len(req.Documents))}
	if len(req.Documents) == 0 {
		return resp, nil
	}
	// Text with NUL is refused before it is put together with anything, so
	// that the error names it.
	if !b.tok.hasNUL {
		if strings.Contains(req.Query, "\x00") {
			return sdk.RerankResponse{}, refuseNUL("the query", req.Query)
		}
		for i, d := range req.Documents {
			if strings.Contains(d, "\x00") {
				return sdk.RerankResponse{}, refuseNUL(fmt.Sprintf("documents[%d]", i), d)
			}
		}
	}
	pp, err := b.rerankFmt.newPairs(b.tok, req.Query)
	if err != nil {
		return sdk.RerankResponse{}, err
	}
	// The query alone (with an empty document) must fit, or no pair can.
	if bare, err := pp.render(""); err != nil {
		return sdk.RerankResponse{}, err
	} else if len(bare) > b.maxInput {
		return sdk.RerankResponse{}, sdk.InvalidRequestf("the query is %d tokens in a query-document pair (with an empty document); at most %d fit", len(bare), b.maxInput)
	}
	toks := make([][]llama.Token, len(req.Documents))
	for i, d := range req.Documents {
		if err := ctx.Err(); err != nil {
			return sdk.RerankResponse{}, err
		}
		t, err := pp.fit(fmt.Sprintf("documents[%d]", i), d, b.maxInput, req.Truncate)
		if err != nil {
			return sdk.RerankResponse{}, err
		}
		toks[i] = t
		resp.PromptTokens += len(t)
	}
	err = b.pooled(ctx, "reranking", toks, b.nClsOut, func(i int, v []float32) error {
		s := v[0]
		if math.IsNaN(float64(s)) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("the model scored documents[%d] %v, not a number", i, s)
		}
		resp.Scores[i] = s
		return nil
	})
	if err != nil {
		return sdk.RerankResponse{}, err
	}
	return resp, nil
}
