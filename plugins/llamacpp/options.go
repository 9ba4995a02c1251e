package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// options are the model's `options:` from the gateway config.
type options struct {
	ModelPath     string
	ContextLength int // 0: the model's training context
	Threads       int // 0: the free cores
	ThreadsBatch  int // 0: Threads
	Parallel      int // sequence slots
	BatchSize     int // tokens per decode call
	GPULayers     int
	Pooling       string // embeddings: mean, cls, last ("" = the model's, else mean); rerank models: rank (the only one)
	ChatTemplate  string // a template llama.cpp knows by name ("chatml"), or a Jinja template's text
	LibPath       string
}

var optionNames = []string{"model_path", "context_length", "threads", "threads_batch", "parallel", "batch_size", "n_gpu_layers", "pooling", "chat_template", "lib_path"}

// parseOptions validates the options map; every problem names its option.
func parseOptions(m map[string]any) (options, error) {
	o := options{Parallel: 4, BatchSize: 512}
	var problems []string
	bad := func(k, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("option %s: %s", k, fmt.Sprintf(format, args...)))
	}
	intOpt := func(k string, v any, min int, dst *int) {
		f, ok := v.(float64)
		if !ok || f != float64(int(f)) {
			bad(k, "want an integer, got %v", v)
			return
		}
		if int(f) < min {
			bad(k, "must be >= %d, got %d", min, int(f))
			return
		}
		*dst = int(f)
	}
	strOpt := func(k string, v any, dst *string) {
		s, ok := v.(string)
		if !ok {
			bad(k, "want a string, got %v", v)
			return
		}
		if strings.Contains(s, "\x00") {
			// llama.cpp takes paths and templates as C strings.
			bad(k, "contains a NUL byte")
			return
		}
		*dst = s
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		switch k {
		case "model_path":
			strOpt(k, v, &o.ModelPath)
		case "context_length":
			intOpt(k, v, 0, &o.ContextLength)
		case "threads":
			intOpt(k, v, 1, &o.Threads)
		case "threads_batch":
			intOpt(k, v, 1, &o.ThreadsBatch)
		case "parallel":
			intOpt(k, v, 1, &o.Parallel)
		case "batch_size":
			intOpt(k, v, 16, &o.BatchSize)
		case "n_gpu_layers":
			intOpt(k, v, 0, &o.GPULayers)
		case "pooling":
			strOpt(k, v, &o.Pooling)
			switch o.Pooling {
			case "", "mean", "cls", "last", "rank": // rank: rerank models only (see Load)
			default:
				bad(k, `want "mean", "cls", "last" or "rank", got %q`, o.Pooling)
			}
		case "chat_template":
			strOpt(k, v, &o.ChatTemplate)
		case "lib_path":
			strOpt(k, v, &o.LibPath)
		default:
			bad(k, "unknown option (known: %s)", strings.Join(optionNames, ", "))
		}
	}
	if o.BatchSize < o.Parallel {
		bad("batch_size", "must be >= parallel (%d), got %d: every sequence needs a place in each decode step", o.Parallel, o.BatchSize)
	}
	if o.ModelPath == "" && len(problems) == 0 {
		bad("model_path", "required: the GGUF file to load")
	}
	if len(problems) > 0 {
		return o, sdk.InvalidRequestf("%s", strings.Join(problems, "; "))
	}
	if o.LibPath == "" {
		o.LibPath = os.Getenv("RAGWAY_LLAMA_LIB")
	}
	o.ModelPath = resolveModel(o.ModelPath, sdk.ModelsDir())
	return o, nil
}

// resolveModel finds a model_path given as a bare name (no directory: "demo" or
// "demo.gguf") in the models directory, where `ragway models pull` puts files; a
// path is used as given.
func resolveModel(p, modelsDir string) string {
	if modelsDir == "" || strings.ContainsRune(p, filepath.Separator) || p == "." || p == ".." {
		return p
	}
	name := p
	if !strings.HasSuffix(name, ".gguf") {
		name += ".gguf"
	}
	return filepath.Join(modelsDir, name)
}
