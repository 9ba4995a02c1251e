package gguf_test

import (
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hybridgroup/yzma/pkg/llama"

	"github.com/ragway/ragway/plugins/llamacpp/gguf"
)

// These tests prove that llama.cpp (the v0.5.0 shared libraries of task setup,
// through yzma) loads the generated files, tokenizes with their vocabulary,
// applies their chat template and generates.

var (
	llamaOnce sync.Once
	llamaErr  error
)

// loadLlama loads llama.cpp once per test binary from RAGWAY_LLAMA_LIB or the
// repository's .data/lib, and fails the test when neither holds the libraries.
func loadLlama(t *testing.T) {
	t.Helper()
	llamaOnce.Do(func() {
		dir := os.Getenv("RAGWAY_LLAMA_LIB")
		if dir == "" {
			root, err := repoRoot()
			if err != nil {
				llamaErr = err
				return
			}
			dir = filepath.Join(root, ".data", "lib")
		}
		if _, err := os.Stat(filepath.Join(dir, "libllama.so")); err != nil {
			llamaErr = err
			return
		}
		if err := llama.Load(dir); err != nil {
			llamaErr = err
			return
		}
		llama.LogSet(llama.LogSilent())
		llama.Init()
	})
	if llamaErr != nil {
		t.Fatalf("llama.cpp libraries not available (%v): run `task setup` (it installs them into .data/lib) or set RAGWAY_LLAMA_LIB", llamaErr)
	}
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "plugin-sdk")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// run is one generated model loaded into llama.cpp.
type run struct {
	logits []float32     // after the chat prompt
	tokens []llama.Token // greedy continuation
}

func TestLlamaCppRunsGeneratedModels(t *testing.T) {
	loadLlama(t)
	v := gguf.ChatVocab()
	base := gguf.Presets["demo"]
	base.HeadCountKV = 2 // exercise grouped-query attention too

	runs := map[gguf.Type]run{}
	for _, typ := range []gguf.Type{gguf.TypeF32, gguf.TypeF16, gguf.TypeQ8_0} {
		t.Run(typ.String(), func(t *testing.T) {
			c := base
			c.Type = typ
			f, err := gguf.Llama(c)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "model.gguf")
			if err := f.WriteFile(path); err != nil {
				t.Fatal(err)
			}
			model, err := llama.ModelLoadFromFile(path, llama.ModelDefaultParams())
			if err != nil {
				t.Fatalf("llama.cpp cannot load the %v model: %v", typ, err)
			}
			defer llama.ModelFree(model)

			if got := [...]int32{llama.ModelNEmbd(model), llama.ModelNLayer(model), llama.ModelNHead(model), llama.ModelNHeadKV(model), llama.ModelNCtxTrain(model)}; got != [...]int32{64, 2, 4, 2, 2048} {
				t.Errorf("n_embd, n_layer, n_head, n_head_kv, n_ctx_train = %v", got)
			}
			if name, _ := llama.ModelMetaValStr(model, "general.name"); name != c.Name {
				t.Errorf("general.name = %q", name)
			}

			vocab := llama.ModelGetVocab(model)
			if llama.GetVocabType(vocab) != llama.VocabTypeSPM {
				t.Errorf("vocab type %d, want SPM", llama.GetVocabType(vocab))
			}
			if n := llama.VocabNTokens(vocab); int(n) != len(v.Tokens) {
				t.Errorf("%d tokens, want %d", n, len(v.Tokens))
			}
			if llama.VocabBOS(vocab) != llama.Token(v.BOS) || llama.VocabEOS(vocab) != llama.Token(v.IMEnd) {
				t.Errorf("bos %d eos %d, want %d and %d", llama.VocabBOS(vocab), llama.VocabEOS(vocab), v.BOS, v.IMEnd)
			}
			if !llama.VocabIsEOG(vocab, llama.Token(v.IMEnd)) || !llama.VocabGetAddBOS(vocab) {
				t.Error("<|im_end|> is not end of generation, or BOS is not added")
			}

			// Text tokenizes into merged pieces, not bytes; other scripts fall back to bytes.
			texts := func(toks []llama.Token) []string {
				var out []string
				for _, tok := range toks {
					out = append(out, llama.VocabGetText(vocab, tok))
				}
				return out
			}
			for _, tc := range []struct {
				text string
				want []string
			}{
				{"Hello world", []string{"<s>", "Hello", "▁world"}},
				{"the answer to the question", []string{"<s>", "the", "▁answer", "▁to", "▁the", "▁question"}},
				{"你好", []string{"<s>", "<0xE4>", "<0xBD>", "<0xA0>", "<0xE5>", "<0xA5>", "<0xBD>"}},
			} {
				toks := llama.Tokenize(vocab, tc.text, true, false)
				if got := texts(toks); !slices.Equal(got, tc.want) {
					t.Errorf("Tokenize(%q) = %q, want %q", tc.text, got, tc.want)
				}
				if back := llama.Detokenize(vocab, toks[1:], false, false); back != tc.text {
					t.Errorf("Detokenize(Tokenize(%q)) = %q", tc.text, back)
				}
			}

			// The model's own template is ChatML; llama.cpp applies it.
			tmpl := llama.ModelChatTemplate(model, "")
			if tmpl != gguf.ChatMLTemplate {
				t.Fatalf("chat template = %q", tmpl)
			}
			msgs := []llama.ChatMessage{llama.NewChatMessage("system", "answer the question"), llama.NewChatMessage("user", "Hello world")}
			buf := make([]byte, 1024)
			n := llama.ChatApplyTemplate(tmpl, msgs, true, buf)
			prompt := string(buf[:n])
			wantPrompt := "<|im_start|>system\nanswer the question<|im_end|>\n<|im_start|>user\nHello world<|im_end|>\n<|im_start|>assistant\n"
			if prompt != wantPrompt {
				t.Fatalf("chat prompt = %q, want %q", prompt, wantPrompt)
			}
			ptoks := llama.Tokenize(vocab, prompt, true, true)
			wantToks := []string{"<s>", "<|im_start|>", "system", "<0x0A>", "answer", "▁the", "▁question", "<|im_end|>", "<0x0A>",
				"<|im_start|>", "user", "<0x0A>", "Hello", "▁world", "<|im_end|>", "<0x0A>", "<|im_start|>", "assistant", "<0x0A>"}
			if got := texts(ptoks); !slices.Equal(got, wantToks) {
				t.Errorf("prompt tokens = %q, want %q", got, wantToks)
			}

			first := generate(t, model, ptoks, 24)
			second := generate(t, model, ptoks, 24)
			if !slices.Equal(first.tokens, second.tokens) {
				t.Errorf("greedy decoding is not deterministic: %v vs %v", first.tokens, second.tokens)
			}
			t.Logf("%v: %q", typ, llama.Detokenize(vocab, first.tokens, false, true))
			runs[typ] = first
		})
	}

	// F16 and Q8_0 weights are faithful: their logits follow the F32 model's.
	ref, ok := runs[gguf.TypeF32]
	if !ok {
		t.Fatal("no F32 run")
	}
	for _, tc := range []struct {
		typ gguf.Type
		tol float64 // max |Δlogit| as a fraction of the F32 logits' standard deviation
	}{{gguf.TypeF16, 0.02}, {gguf.TypeQ8_0, 0.15}} {
		r, ok := runs[tc.typ]
		if !ok {
			t.Errorf("no %v run", tc.typ)
			continue
		}
		var sq, maxDiff float64
		for i, x := range ref.logits {
			sq += float64(x) * float64(x)
			maxDiff = math.Max(maxDiff, math.Abs(float64(r.logits[i]-x)))
		}
		std := math.Sqrt(sq / float64(len(ref.logits)))
		if maxDiff > tc.tol*std {
			t.Errorf("%v logits differ from F32 by up to %.4f (std %.3f, tolerance %.4f)", tc.typ, maxDiff, std, tc.tol*std)
		}
		t.Logf("%v: max |Δlogit| %.4f, logit std %.3f", tc.typ, maxDiff, std)
	}
}

// generate decodes the prompt in a fresh one-thread context and samples n tokens greedily.
func generate(t *testing.T, model llama.Model, prompt []llama.Token, n int) run {
	t.Helper()
	cp := llama.ContextDefaultParams()
	cp.NCtx, cp.NBatch, cp.NSeqMax = 512, 512, 1
	cp.NThreads, cp.NThreadsBatch = 1, 1
	ctx, err := llama.InitFromModel(model, cp)
	if err != nil {
		t.Fatal(err)
	}
	defer llama.Free(ctx)
	sampler := llama.SamplerChainInit(llama.SamplerChainDefaultParams())
	defer llama.SamplerFree(sampler)
	llama.SamplerChainAdd(sampler, llama.SamplerInitGreedy())

	nVocab := int(llama.VocabNTokens(llama.ModelGetVocab(model)))
	if rc, err := llama.Decode(ctx, llama.BatchGetOne(prompt)); err != nil || rc != 0 {
		t.Fatalf("decoding the prompt: %d %v", rc, err)
	}
	logits, err := llama.GetLogitsIth(ctx, -1, nVocab)
	if err != nil || logits == nil {
		t.Fatalf("no logits: %v", err)
	}
	out := run{logits: slices.Clone(logits)}
	for range n {
		tok := llama.SamplerSample(sampler, ctx, -1)
		llama.SamplerAccept(sampler, tok)
		out.tokens = append(out.tokens, tok)
		if rc, err := llama.Decode(ctx, llama.BatchGetOne([]llama.Token{tok})); err != nil || rc != 0 {
			t.Fatalf("decoding token %d: %d %v", tok, rc, err)
		}
	}

	// Freeing the sequence's KV cells empties it (what a finished slot does).
	mem, err := llama.GetMemory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pos, _ := llama.MemorySeqPosMax(mem, 0); int(pos) != len(prompt)+n-1 {
		t.Errorf("sequence 0 ends at position %d, want %d", pos, len(prompt)+n-1)
	}
	if ok, err := llama.MemorySeqRm(mem, 0, -1, -1); !ok || err != nil {
		t.Errorf("MemorySeqRm = %v, %v", ok, err)
	}
	if pos, _ := llama.MemorySeqPosMax(mem, 0); pos != -1 {
		t.Errorf("after MemorySeqRm sequence 0 ends at %d, want -1 (empty)", pos)
	}
	return out
}

// Two sequences decoded together in one batch per step produce, under greedy
// sampling, the same tokens as each decoded alone: the generated models are
// decisive enough for the plugin's batching-equals-solo guarantee.
func TestLlamaCppBatchedEqualsSolo(t *testing.T) {
	loadLlama(t)
	f, err := gguf.Llama(gguf.Presets["demo"])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "demo.gguf")
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	model, err := llama.ModelLoadFromFile(path, llama.ModelDefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	defer llama.ModelFree(model)
	vocab := llama.ModelGetVocab(model)
	prompts := [][]llama.Token{
		llama.Tokenize(vocab, "Hello world", true, false),
		llama.Tokenize(vocab, "the answer to the question is in the document", true, false),
	}
	const n = 32
	var solo [][]llama.Token
	for _, p := range prompts {
		solo = append(solo, generate(t, model, p, n).tokens)
	}
	if slices.Equal(solo[0], solo[1]) {
		t.Fatalf("both prompts generate %v: the comparison would prove nothing", solo[0])
	}

	cp := llama.ContextDefaultParams()
	cp.NCtx, cp.NBatch, cp.NSeqMax = 512, 512, 2
	cp.NThreads, cp.NThreadsBatch = 1, 1
	ctx, err := llama.InitFromModel(model, cp)
	if err != nil {
		t.Fatal(err)
	}
	defer llama.Free(ctx)
	batch := llama.BatchInit(512, 0, 1)
	defer llama.BatchFree(batch)
	samplers := make([]llama.Sampler, len(prompts))
	for i := range samplers {
		samplers[i] = llama.SamplerChainInit(llama.SamplerChainDefaultParams())
		defer llama.SamplerFree(samplers[i])
		llama.SamplerChainAdd(samplers[i], llama.SamplerInitGreedy())
	}

	// Both prompts in one batch; then one token of each sequence per step.
	outIdx := make([]int32, len(prompts))
	for s, p := range prompts {
		for i, tok := range p {
			last := i == len(p)-1
			if err := batch.Add(tok, llama.Pos(i), []llama.SeqId{llama.SeqId(s)}, last); err != nil {
				t.Fatal(err)
			}
			if last {
				outIdx[s] = batch.NTokens - 1
			}
		}
	}
	batched := make([][]llama.Token, len(prompts))
	for step := 0; ; step++ {
		if rc, err := llama.Decode(ctx, batch); err != nil || rc != 0 {
			t.Fatalf("step %d: decode %d %v", step, rc, err)
		}
		if step == n {
			break
		}
		batch.Clear()
		for s := range prompts {
			tok := llama.SamplerSample(samplers[s], ctx, outIdx[s])
			llama.SamplerAccept(samplers[s], tok)
			batched[s] = append(batched[s], tok)
			if err := batch.Add(tok, llama.Pos(len(prompts[s])+step), []llama.SeqId{llama.SeqId(s)}, true); err != nil {
				t.Fatal(err)
			}
			outIdx[s] = batch.NTokens - 1
		}
	}
	for s := range prompts {
		if !slices.Equal(batched[s], solo[s]) {
			t.Errorf("sequence %d: batched %v, solo %v", s, batched[s], solo[s])
		}
	}
}

// The generated reranker loads, and under rank pooling llama.cpp gives each
// sequence the softmax of its two-output head: P(yes), P(no), which differ
// between documents and do not depend on the batch. A llama-architecture file
// with the same head does not load: this llama.cpp reads cls.output.weight
// for qwen3 (and BERT-like) architectures, not for llama.
func TestLlamaCppRunsGeneratedReranker(t *testing.T) {
	loadLlama(t)
	f, err := gguf.Llama(gguf.Presets["rerank"])
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "rerank.gguf")
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	model, err := llama.ModelLoadFromFile(path, llama.ModelDefaultParams())
	if err != nil {
		t.Fatalf("llama.cpp cannot load the reranker: %v", err)
	}
	defer llama.ModelFree(model)
	if n := llama.ModelNClsOut(model); n != 2 {
		t.Errorf("n_cls_out = %d, want 2", n)
	}
	if got := llama.ModelChatTemplate(model, "rerank"); got != gguf.RerankTemplate {
		t.Errorf("rerank template %q", got)
	}
	cp := llama.ContextDefaultParams()
	cp.NCtx, cp.NBatch, cp.NUbatch, cp.NSeqMax = 1024, 512, 512, 4
	cp.NThreads, cp.NThreadsBatch = 1, 1
	cp.Embeddings = 1 // pooling unspecified: the model's own, rank
	ctx, err := llama.InitFromModel(model, cp)
	if err != nil {
		t.Fatal(err)
	}
	defer llama.Free(ctx)
	if pt := llama.GetPoolingType(ctx); pt != llama.PoolingTypeRank {
		t.Fatalf("pooling type %d, want rank", pt)
	}
	vocab := llama.ModelGetVocab(model)
	docs := []string{"the sea and the ships", "a dog ran home", "the sea and the ships", "water"}
	batch := llama.BatchInit(512, 0, 1)
	defer llama.BatchFree(batch)
	scores := func(docs []string) [][]float32 {
		batch.Clear()
		for s, d := range docs {
			for i, tok := range llama.Tokenize(vocab, "what is the sea? "+d, true, false) {
				if err := batch.Add(tok, llama.Pos(i), []llama.SeqId{llama.SeqId(s)}, true); err != nil {
					t.Fatal(err)
				}
			}
		}
		mem, _ := llama.GetMemory(ctx)
		_ = llama.MemoryClear(mem, true)
		if rc, err := llama.Decode(ctx, batch); err != nil || rc != 0 {
			t.Fatalf("decode %d %v", rc, err)
		}
		var out [][]float32
		for s := range docs {
			v, err := llama.GetEmbeddingsSeq(ctx, llama.SeqId(s), 2)
			if err != nil || v == nil {
				t.Fatalf("no output for sequence %d: %v", s, err)
			}
			out = append(out, slices.Clone(v))
		}
		return out
	}
	all := scores(docs)
	for s, v := range all {
		if v[0] <= 0 || v[1] <= 0 || math.Abs(float64(v[0]+v[1])-1) > 1e-5 {
			t.Errorf("sequence %d: %v, want two probabilities", s, v)
		}
	}
	if math.Abs(float64(all[0][0]-all[2][0])) > 1e-5 || all[0][0] == all[1][0] || all[1][0] == all[3][0] {
		t.Errorf("scores %v: want the same for the same document, different for others", all)
	}
	if solo := scores(docs[1:2]); math.Abs(float64(solo[0][0]-all[1][0])) > 1e-5 {
		t.Errorf("document 1 alone %v, in the batch %v", solo[0], all[1])
	}

	for i, kv := range f.Metadata {
		if kv.Key == "general.architecture" {
			f.Metadata[i].Value = "llama"
		} else if rest, ok := strings.CutPrefix(kv.Key, "qwen3."); ok {
			f.Metadata[i].Key = "llama." + rest
		}
	}
	f.Tensors = slices.DeleteFunc(f.Tensors, func(t gguf.Tensor) bool {
		return strings.Contains(t.Name, "_norm.weight") && strings.Contains(t.Name, "attn_") && !strings.HasSuffix(t.Name, "attn_norm.weight")
	})
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	if m, err := llama.ModelLoadFromFile(path, llama.ModelDefaultParams()); err == nil && m != 0 {
		llama.ModelFree(m)
		t.Error("this llama.cpp loads a llama-architecture model with a classification head: the generated reranker could be llama")
	}
}
