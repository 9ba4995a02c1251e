package gguf

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

// tiny is a small but complete configuration for fast tests.
var tiny = Config{
	Name: "tiny", ContextLength: 256, EmbeddingLength: 64, BlockCount: 2,
	FeedForwardLength: 96, HeadCount: 4, HeadCountKV: 2, Type: TypeF16, Seed: 3,
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" means valid
	}{
		{"tiny", func(*Config) {}, ""},
		{"demo preset", func(c *Config) { *c = Presets["demo"] }, ""},
		{"bench preset", func(c *Config) { *c = Presets["bench"] }, ""},
		{"rerank preset", func(c *Config) { *c = Presets["rerank"] }, ""},
		{"q8_0 reranker", func(c *Config) { c.Type = TypeQ8_0; c.FeedForwardLength = 128; c.Rerank = true }, ""},
		{"kv heads default to heads", func(c *Config) { c.HeadCountKV = 0 }, ""},
		{"f32", func(c *Config) { c.Type = TypeF32 }, ""},
		{"q8_0", func(c *Config) { c.Type = TypeQ8_0 }, ""},
		{"no layers", func(c *Config) { c.BlockCount = 0 }, "block count must be positive"},
		{"negative context", func(c *Config) { c.ContextLength = -1 }, "context length must be positive"},
		{"heads do not divide embedding", func(c *Config) { c.HeadCount = 5; c.HeadCountKV = 5 }, "not a multiple of head count 5"},
		{"kv heads do not divide heads", func(c *Config) { c.HeadCountKV = 3 }, "not a multiple of kv head count 3"},
		{"odd head size", func(c *Config) { c.EmbeddingLength = 36; c.HeadCount = 4; c.Type = TypeF32 }, "must be even"},
		{"q8_0 with ff not a multiple of 32", func(c *Config) { c.Type = TypeQ8_0; c.FeedForwardLength = 100 }, "feed-forward length to be a multiple of 32"},
		{"unsupported type", func(c *Config) { c.Type = Type(2) }, "want f32, f16 or q8_0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tiny
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v", err)
				}
				if _, err := Llama(c); err != nil {
					t.Fatalf("Llama() = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
			if _, err := Llama(c); err == nil {
				t.Fatal("Llama() accepted an invalid config")
			}
		})
	}
}

func writeModel(t *testing.T, c Config) []byte {
	t.Helper()
	f, err := Llama(c)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLlamaLayout(t *testing.T) {
	for _, typ := range []Type{TypeF32, TypeF16, TypeQ8_0} {
		t.Run(typ.String(), func(t *testing.T) {
			c := tiny
			c.Type = typ
			data := writeModel(t, c)
			h, err := Read(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			v := ChatVocab()
			ftype, _ := typ.FileType()
			wantMeta := map[string]any{
				"general.architecture":                   "llama",
				"general.name":                           "tiny",
				"general.file_type":                      ftype,
				"general.alignment":                      uint32(32),
				"llama.context_length":                   uint32(256),
				"llama.embedding_length":                 uint32(64),
				"llama.block_count":                      uint32(2),
				"llama.feed_forward_length":              uint32(96),
				"llama.attention.head_count":             uint32(4),
				"llama.attention.head_count_kv":          uint32(2),
				"llama.rope.dimension_count":             uint32(16),
				"llama.attention.layer_norm_rms_epsilon": float32(1e-5),
				"llama.rope.freq_base":                   float32(10000),
				"llama.vocab_size":                       uint32(len(v.Tokens)),
				"tokenizer.ggml.model":                   "llama",
				"tokenizer.ggml.tokens":                  v.Tokens,
				"tokenizer.ggml.scores":                  v.Scores,
				"tokenizer.ggml.bos_token_id":            uint32(v.BOS),
				"tokenizer.ggml.eos_token_id":            uint32(v.IMEnd),
				"tokenizer.ggml.unknown_token_id":        uint32(v.UNK),
				"tokenizer.ggml.add_bos_token":           true,
				"tokenizer.chat_template":                ChatMLTemplate,
			}
			for k, want := range wantMeta {
				got, ok := h.Get(k)
				if !ok {
					t.Errorf("metadata %s missing", k)
				} else if !reflect.DeepEqual(got, want) {
					t.Errorf("metadata %s = %#v, want %#v", k, got, want)
				}
			}
			if tt, _ := h.Get("tokenizer.ggml.token_type"); len(tt.([]int32)) != len(v.Tokens) {
				t.Errorf("token_type has %d entries", len(tt.([]int32)))
			}

			nv := uint64(len(v.Tokens))
			want := []struct {
				name  string
				shape []uint64
				typ   Type
			}{{"token_embd.weight", []uint64{64, nv}, typ}}
			for l := 0; l < 2; l++ {
				b := fmt.Sprintf("blk.%d.", l)
				want = append(want, []struct {
					name  string
					shape []uint64
					typ   Type
				}{
					{b + "attn_norm.weight", []uint64{64}, TypeF32},
					{b + "attn_q.weight", []uint64{64, 64}, typ},
					{b + "attn_k.weight", []uint64{64, 32}, typ}, // 2 kv heads of 16
					{b + "attn_v.weight", []uint64{64, 32}, typ},
					{b + "attn_output.weight", []uint64{64, 64}, typ},
					{b + "ffn_norm.weight", []uint64{64}, TypeF32},
					{b + "ffn_gate.weight", []uint64{64, 96}, typ},
					{b + "ffn_up.weight", []uint64{64, 96}, typ},
					{b + "ffn_down.weight", []uint64{96, 64}, typ},
				}...)
			}
			want = append(want, []struct {
				name  string
				shape []uint64
				typ   Type
			}{{"output_norm.weight", []uint64{64}, TypeF32}, {"output.weight", []uint64{64, nv}, typ}}...)
			if len(h.Tensors) != len(want) {
				t.Fatalf("%d tensors, want %d", len(h.Tensors), len(want))
			}
			var params uint64
			for i, ti := range h.Tensors {
				w := want[i]
				if ti.Name != w.name || ti.Type != w.typ || !reflect.DeepEqual(ti.Shape, w.shape) {
					t.Errorf("tensor %d = %s %v %v, want %s %v %v", i, ti.Name, ti.Shape, ti.Type, w.name, w.shape, w.typ)
				}
				n := uint64(1)
				for _, d := range ti.Shape {
					n *= d
				}
				params += n
			}
			if int64(params) != c.NumParams() {
				t.Errorf("NumParams() = %d, tensors hold %d", c.NumParams(), params)
			}

			// Norms are 1; matrices have mean ≈ 0 and the documented spread.
			for _, ti := range h.Tensors {
				rows := readTensor(t, data, h, ti)
				var sum, sq float64
				var n int
				for _, row := range rows {
					for _, x := range row {
						sum += float64(x)
						sq += float64(x) * float64(x)
						n++
					}
				}
				mean, std := sum/float64(n), math.Sqrt(sq/float64(n))
				switch {
				case len(ti.Shape) == 1:
					if mean != 1 || std != 1 {
						t.Errorf("%s: norm weights not all 1 (mean %g)", ti.Name, mean)
					}
				case ti.Name == "token_embd.weight":
					if math.Abs(mean) > 0.01 || math.Abs(std-1) > 0.01 {
						t.Errorf("%s: mean %g std %g, want ≈ 0 and 1", ti.Name, mean, std)
					}
				case ti.Name == "output.weight":
					if std < 0.5/8 || std > 3.0/8 {
						t.Errorf("%s: std %g outside [%g, %g]", ti.Name, std, 0.5/8, 3.0/8)
					}
				default:
					if math.Abs(mean) > 0.002 || math.Abs(std-0.02) > 0.002 {
						t.Errorf("%s: mean %g std %g, want ≈ 0 and 0.02", ti.Name, mean, std)
					}
				}
			}
		})
	}
}

// A reranker is a qwen3-architecture model: the llama tensors, query and key
// norms per layer, and a two-output classification head; its metadata names
// rank pooling, the head's labels and a rerank prompt.
func TestRerankLayout(t *testing.T) {
	c := tiny
	c.Rerank = true
	data := writeModel(t, c)
	h, err := Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"general.architecture":                   "qwen3",
		"qwen3.embedding_length":                 uint32(64),
		"qwen3.attention.head_count_kv":          uint32(2),
		"qwen3.pooling_type":                     uint32(4),
		"qwen3.classifier.output_labels":         []string{"yes", "no"},
		"tokenizer.chat_template.rerank":         RerankTemplate,
		"tokenizer.chat_template":                ChatMLTemplate,
		"qwen3.attention.layer_norm_rms_epsilon": float32(1e-5),
	} {
		if got, _ := h.Get(k); !reflect.DeepEqual(got, want) {
			t.Errorf("metadata %s = %#v, want %#v", k, got, want)
		}
	}
	if _, ok := h.Get("llama.embedding_length"); ok {
		t.Error("llama.* metadata in a qwen3 file")
	}
	shapes := map[string][]uint64{}
	var params uint64
	for _, ti := range h.Tensors {
		shapes[ti.Name] = ti.Shape
		n := uint64(1)
		for _, d := range ti.Shape {
			n *= d
		}
		params += n
	}
	for name, want := range map[string][]uint64{
		"blk.0.attn_q_norm.weight": {16}, "blk.1.attn_k_norm.weight": {16}, "blk.1.ffn_down.weight": {96, 64},
		"cls.output.weight": {64, 2}, "output.weight": {64, uint64(len(ChatVocab().Tokens))},
	} {
		if !reflect.DeepEqual(shapes[name], want) {
			t.Errorf("tensor %s shape %v, want %v", name, shapes[name], want)
		}
	}
	if int64(params) != c.NumParams() {
		t.Errorf("NumParams() = %d, tensors hold %d", c.NumParams(), params)
	}
	if len(h.Tensors) != 1+2*(9+2)+2+1 { // embeddings, 2 layers with query and key norms, output norm and matrix, head
		t.Errorf("%d tensors, want 26", len(h.Tensors))
	}
}

func TestLlamaDeterministic(t *testing.T) {
	a := writeModel(t, tiny)
	if b := writeModel(t, tiny); !bytes.Equal(a, b) {
		t.Fatal("two writes of the same config differ")
	}
	other := tiny
	other.Seed++
	b := writeModel(t, other)
	if len(a) != len(b) {
		t.Fatalf("another seed changed the size: %d vs %d", len(a), len(b))
	}
	h, _ := Read(bytes.NewReader(a))
	if bytes.Equal(a[h.DataOffset:], b[h.DataOffset:]) {
		t.Fatal("another seed gave the same weights")
	}
}

// The bytes of a generated model are fixed: the generator uses no floating-point
// function whose result may vary by platform or Go version. If this fails after
// an intended change to the vocabulary, metadata or weights, update the hash
// (and expect models:demo/models:bench to be regenerated).
func TestLlamaGolden(t *testing.T) {
	const want = "dba64e916de166ee97858b15cc44dfd395d4e27c0f059d5a48e520c2432ae3c6"
	sum := fmt.Sprintf("%x", sha256.Sum256(writeModel(t, tiny)))
	if sum != want {
		t.Errorf("sha256 of the tiny model = %s, want %s", sum, want)
	}
}

func TestWriteFile(t *testing.T) {
	f, err := Llama(tiny)
	if err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/sub/tiny.gguf"
	if err := f.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	h, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if name, _ := h.Get("general.name"); name != "tiny" {
		t.Errorf("general.name = %v", name)
	}
	if _, err := ReadFile(t.TempDir() + "/missing.gguf"); err == nil {
		t.Error("ReadFile of a missing file succeeded")
	}
}
