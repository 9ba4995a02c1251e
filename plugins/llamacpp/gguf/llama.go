package gguf

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"
)

// Config describes a generated llama-architecture chat model, or (Rerank) a
// qwen3-architecture reranker.
type Config struct {
	Name              string // general.name
	ContextLength     int    // llama.context_length (n_ctx_train)
	EmbeddingLength   int    // n_embd
	BlockCount        int    // n_layer
	FeedForwardLength int    // n_ff
	HeadCount         int    // n_head
	HeadCountKV       int    // n_head_kv (grouped-query attention); 0 means HeadCount
	// RMSEpsilon is llama.attention.layer_norm_rms_epsilon; 0 means 1e-5.
	RMSEpsilon float32
	// RopeFreqBase is llama.rope.freq_base; 0 means 10000.
	RopeFreqBase float32
	// Type of the weight matrices (token embedding and output included): F32, F16
	// or Q8_0. Norm weights are always F32.
	Type Type
	// Seed of the random weights: the same Config always gives the same file.
	Seed uint64
	// Rerank makes a reranker for llama.cpp's rank pooling instead of a chat
	// model: see [Llama].
	Rerank bool
}

// Presets are the models the project generates (task models:demo, models:bench;
// rerank for tests of reranking).
var Presets = map[string]Config{
	// A tiny chat model: fast to write and to run, for tests and the default config.
	"demo": {
		Name: "ragway-demo", ContextLength: 2048,
		EmbeddingLength: 64, BlockCount: 2, FeedForwardLength: 128, HeadCount: 4, HeadCountKV: 4,
		Type: TypeF16, Seed: 1,
	},
	// A tiny reranker (rank pooling, a yes/no classification head): for tests of
	// the rerank capability.
	"rerank": {
		Name: "ragway-rerank", ContextLength: 2048,
		EmbeddingLength: 64, BlockCount: 2, FeedForwardLength: 128, HeadCount: 4, HeadCountKV: 4,
		Type: TypeF16, Seed: 1, Rerank: true,
	},
	// A model of realistic per-token cost (~130M parameters, ~260 MB F16) for benchmarks.
	"bench": {
		Name: "ragway-bench", ContextLength: 4096,
		EmbeddingLength: 1024, BlockCount: 12, FeedForwardLength: 2048, HeadCount: 16, HeadCountKV: 16,
		Type: TypeF16, Seed: 1,
	},
}

func (c Config) withDefaults() Config {
	if c.HeadCountKV == 0 {
		c.HeadCountKV = c.HeadCount
	}
	if c.RMSEpsilon == 0 {
		c.RMSEpsilon = 1e-5
	}
	if c.RopeFreqBase == 0 {
		c.RopeFreqBase = 10000
	}
	if c.Name == "" {
		c.Name = "ragway-generated"
	}
	return c
}

// Validate reports the first problem that would make the model unloadable.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, is %d", name, v))
		}
	}
	positive("context length", c.ContextLength)
	positive("embedding length", c.EmbeddingLength)
	positive("block count", c.BlockCount)
	positive("feed-forward length", c.FeedForwardLength)
	positive("head count", c.HeadCount)
	positive("kv head count", c.HeadCountKV)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.EmbeddingLength%c.HeadCount != 0 {
		return fmt.Errorf("embedding length %d is not a multiple of head count %d", c.EmbeddingLength, c.HeadCount)
	}
	if c.HeadCount%c.HeadCountKV != 0 {
		return fmt.Errorf("head count %d is not a multiple of kv head count %d", c.HeadCount, c.HeadCountKV)
	}
	if hd := c.EmbeddingLength / c.HeadCount; hd%2 != 0 {
		return fmt.Errorf("head size %d (embedding length / head count) must be even for RoPE", hd)
	}
	if _, err := c.Type.FileType(); err != nil {
		return fmt.Errorf("matrix type %v: want f32, f16 or q8_0", c.Type)
	}
	if c.Type == TypeQ8_0 {
		for _, d := range []struct {
			name string
			n    int
		}{{"embedding length", c.EmbeddingLength}, {"feed-forward length", c.FeedForwardLength}} {
			if d.n%QK8_0 != 0 {
				return fmt.Errorf("q8_0 needs the %s to be a multiple of %d, is %d", d.name, QK8_0, d.n)
			}
		}
	}
	return nil
}

// Llama returns the GGUF file of a llama-architecture chat model with the
// vocabulary of [ChatVocab] and seeded random weights. Writing it needs memory
// for one tensor row only.
//
// With c.Rerank it returns a reranker as llama.cpp runs Qwen3-Reranker models
// instead: the llama.cpp of task setup loads a classification head
// (cls.output.weight) for the qwen3 architecture but not for llama (a llama
// file holding one fails with "wrong number of tensors"), so the file is a
// qwen3-architecture model: the llama tensors plus the per-head query and key
// norms qwen3 requires (blk.N.attn_q_norm.weight, blk.N.attn_k_norm.weight, all
// 1), and cls.output.weight of shape [n_embd, 2] with the output labels "yes"
// and "no" (qwen3.classifier.output_labels sets n_cls_out to 2; with one label
// llama.cpp's softmax over the head would make every score 1). Its metadata
// names rank pooling (qwen3.pooling_type 4) and carries a rerank prompt
// (tokenizer.chat_template.rerank, [RerankTemplate]). Under rank pooling
// llama.cpp takes the last token's hidden state (for qwen3; the first for
// other architectures), applies the head and a softmax, and
// llama_get_embeddings_seq gives [P(yes), P(no)] per sequence: the score is
// P(yes). Its weight matrices have standard deviation 0.2, not 0.02 (below):
// the prompt's last token is the same for every pair, and larger weights let
// attention carry enough of the query and the document into its state for
// scores to differ by tenths between documents.
//
// Weights are drawn from a zero-mean distribution with standard deviation 0.02
// (norms are 1), so activations stay in range. Token embeddings have standard
// deviation 1, so each token outweighs the near-uniform attention over the
// context in the residual stream: greedy text then wanders through the
// vocabulary instead of repeating one word. output.weight rows of whole words
// give logits a standard deviation of about 3, which makes greedy decoding
// decisive (tiny numeric differences, such as batched versus single decoding,
// do not flip the chosen token); rows of whole "▁word" pieces, <|im_end|> and
// </s> are larger than those of other pieces, characters, bytes and control
// tokens, so generated text is mostly space-separated words.
func Llama(c Config) (*File, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("gguf: invalid model config: %w", err)
	}
	c = c.withDefaults()
	arch := "llama"
	if c.Rerank {
		arch = "qwen3"
	}
	ftype, _ := c.Type.FileType()
	v, whole := chatVocab()
	nVocab := len(v.Tokens)
	headDim := c.EmbeddingLength / c.HeadCount
	nEmbdKV := headDim * c.HeadCountKV
	u := func(n int) uint32 { return uint32(n) }

	types := make([]int32, nVocab)
	for i, t := range v.Types {
		types[i] = int32(t)
	}
	f := &File{Metadata: []KV{
		{"general.architecture", arch},
		{"general.name", c.Name},
		{"general.description", fmt.Sprintf("generated by ragway: random weights, seed %d; meaningless text", c.Seed)},
		{"general.file_type", ftype},
		{"general.quantization_version", uint32(2)},
		{"general.alignment", uint32(DefaultAlignment)},
		{arch + ".context_length", u(c.ContextLength)},
		{arch + ".embedding_length", u(c.EmbeddingLength)},
		{arch + ".block_count", u(c.BlockCount)},
		{arch + ".feed_forward_length", u(c.FeedForwardLength)},
		{arch + ".attention.head_count", u(c.HeadCount)},
		{arch + ".attention.head_count_kv", u(c.HeadCountKV)},
		{arch + ".rope.dimension_count", u(headDim)},
		{arch + ".attention.layer_norm_rms_epsilon", c.RMSEpsilon},
		{arch + ".rope.freq_base", c.RopeFreqBase},
		{arch + ".vocab_size", u(nVocab)},
		{"tokenizer.ggml.model", "llama"},
		{"tokenizer.ggml.tokens", v.Tokens},
		{"tokenizer.ggml.scores", v.Scores},
		{"tokenizer.ggml.token_type", types},
		{"tokenizer.ggml.bos_token_id", u(v.BOS)},
		{"tokenizer.ggml.eos_token_id", u(v.EOS)},
		{"tokenizer.ggml.unknown_token_id", u(v.UNK)},
		{"tokenizer.ggml.add_bos_token", true},
		{"tokenizer.ggml.add_eos_token", false},
		// No space before the text: ChatML turns then tokenize as "<|im_start|>" "user"
		// "<0x0A>" rather than with a stray "▁" after every special token.
		{"tokenizer.ggml.add_space_prefix", false},
		{"tokenizer.chat_template", ChatMLTemplate},
	}}
	if c.Rerank {
		f.Metadata = append(f.Metadata,
			KV{arch + ".pooling_type", uint32(4)}, // LLAMA_POOLING_TYPE_RANK
			KV{arch + ".classifier.output_labels", []string{"yes", "no"}},
			KV{"tokenizer.chat_template.rerank", RerankTemplate},
		)
	}

	std, embStd := float32(0.02), float32(1)
	if c.Rerank {
		// A reranker scores the prompt's last token, the same for every pair: its
		// weights are larger, so that attention brings enough of the query and
		// the document into that token's state for the scores to differ by
		// tenths, not by ten-thousandths.
		std = 0.2
	}
	outStd := 3 / math.Sqrt(float64(c.EmbeddingLength))
	rowScale := make([]float32, nVocab)
	for i, t := range v.Types {
		switch {
		case whole[i] && strings.HasPrefix(v.Tokens[i], SpaceMarker), i == v.IMEnd, v.Tokens[i] == "</s>":
			rowScale[i] = float32(outStd)
		case t == TokenNormal: // words without a space before, prefixes, characters
			rowScale[i] = float32(outStd / 2)
		default: // bytes, <unk>, <s>, <|im_start|>
			rowScale[i] = float32(outStd / 4)
		}
	}

	matrixStd := func(name string, nIn, nOut int, sd float32) {
		f.Tensors = append(f.Tensors, Tensor{
			Name: name, Shape: []uint64{uint64(nIn), uint64(nOut)}, Type: c.Type,
			Fill: randomRows(c.Seed, name, func(int) float32 { return sd }),
		})
	}
	matrix := func(name string, nIn, nOut int) { matrixStd(name, nIn, nOut, std) }
	normN := func(name string, n int) {
		f.Tensors = append(f.Tensors, Tensor{
			Name: name, Shape: []uint64{uint64(n)}, Type: TypeF32,
			Fill: func(_ int, dst []float32) {
				for i := range dst {
					dst[i] = 1
				}
			},
		})
	}
	norm := func(name string) { normN(name, c.EmbeddingLength) }

	matrixStd("token_embd.weight", c.EmbeddingLength, nVocab, embStd)
	for l := 0; l < c.BlockCount; l++ {
		b := fmt.Sprintf("blk.%d.", l)
		norm(b + "attn_norm.weight")
		matrix(b+"attn_q.weight", c.EmbeddingLength, c.EmbeddingLength)
		matrix(b+"attn_k.weight", c.EmbeddingLength, nEmbdKV)
		matrix(b+"attn_v.weight", c.EmbeddingLength, nEmbdKV)
		matrix(b+"attn_output.weight", c.EmbeddingLength, c.EmbeddingLength)
		if c.Rerank {
			normN(b+"attn_q_norm.weight", headDim)
			normN(b+"attn_k_norm.weight", headDim)
		}
		norm(b + "ffn_norm.weight")
		matrix(b+"ffn_gate.weight", c.EmbeddingLength, c.FeedForwardLength)
		matrix(b+"ffn_up.weight", c.EmbeddingLength, c.FeedForwardLength)
		matrix(b+"ffn_down.weight", c.FeedForwardLength, c.EmbeddingLength)
	}
	norm("output_norm.weight")
	f.Tensors = append(f.Tensors, Tensor{
		Name: "output.weight", Shape: []uint64{uint64(c.EmbeddingLength), uint64(nVocab)}, Type: c.Type,
		Fill: randomRows(c.Seed, "output.weight", func(r int) float32 { return rowScale[r] }),
	})
	if c.Rerank {
		// Logits of standard deviation 1 over the normalised hidden state: the
		// scores P(yes) spread over (0, 1) rather than sit at its ends.
		matrixStd("cls.output.weight", c.EmbeddingLength, 2, float32(1/math.Sqrt(float64(c.EmbeddingLength))))
	}
	return f, nil
}

// randomRows returns a Fill function whose row r holds zero-mean values of
// standard deviation std(r), from a generator seeded by (seed, tensor, r) alone.
// The generator is splitmix64 and the distribution Irwin–Hall (sum of four
// uniforms, close to normal, bounded by ±3.5σ): integer and float32 arithmetic
// and correctly rounded square roots only, so the bytes are the same with every
// Go version and on every machine.
func randomRows(seed uint64, tensor string, std func(r int) float32) func(int, []float32) {
	h := fnv.New64a()
	h.Write([]byte(tensor))
	base := mix64(seed ^ mix64(h.Sum64()))
	return func(r int, dst []float32) {
		state := mix64(base + uint64(r)*0x9e3779b97f4a7c15)
		s := std(r) * float32(math.Sqrt(3)) / 65536
		for i := range dst {
			state += 0x9e3779b97f4a7c15
			x := mix64(state)
			// Four 16-bit uniforms: their sum has mean 2·65535 and variance 4·65536²/12.
			sum := int32(x&0xffff) + int32(x>>16&0xffff) + int32(x>>32&0xffff) + int32(x>>48)
			dst[i] = float32(sum-2*65535) * s
		}
	}
}

// mix64 is the splitmix64 finaliser.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// NumParams returns the number of weights of the model c describes.
func (c Config) NumParams() int64 {
	c = c.withDefaults()
	nVocab := int64(len(ChatVocab().Tokens))
	e, ff := int64(c.EmbeddingLength), int64(c.FeedForwardLength)
	kv := e / int64(c.HeadCount) * int64(c.HeadCountKV)
	layer := e + e*e + 2*e*kv + e*e + e + 3*e*ff
	n := 2*e*nVocab + int64(c.BlockCount)*layer + e
	if c.Rerank {
		n += int64(c.BlockCount)*2*(e/int64(c.HeadCount)) + 2*e // query and key norms, the head
	}
	return n
}
