// Command ragway-mkgguf writes a generated llama-architecture chat model (GGUF v3,
// seeded random weights) for tests and benchmarks, or a reranker (preset rerank:
// a qwen3-architecture model with a classification head, for llama.cpp's rank
// pooling; see gguf.Llama):
//
//	ragway-mkgguf -out .data/models/demo.gguf -preset demo
//	ragway-mkgguf -out .data/models/bench-f16.gguf -preset bench
//	ragway-mkgguf -out .data/models/rerank.gguf -preset rerank
//	ragway-mkgguf -out m.gguf -preset demo -n-layer 4 -type q8_0 -seed 7
//
// A preset gives every dimension; flags given explicitly override it. The file
// is written through a temporary file and renamed into place. See package
// github.com/ragway/ragway/plugins/llamacpp/gguf.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ragway/ragway/plugins/llamacpp/gguf"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ragway-mkgguf:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ragway-mkgguf", flag.ContinueOnError)
	presets := make([]string, 0, len(gguf.Presets))
	for name := range gguf.Presets {
		presets = append(presets, name)
	}
	sort.Strings(presets)
	var (
		out      = fs.String("out", "", "file to write (required)")
		preset   = fs.String("preset", "demo", "base configuration: "+strings.Join(presets, ", "))
		name     = fs.String("name", "", "general.name (default: the preset's)")
		nEmbd    = fs.Int("n-embd", 0, "embedding length")
		nLayer   = fs.Int("n-layer", 0, "number of blocks")
		nHead    = fs.Int("n-head", 0, "attention heads")
		nHeadKV  = fs.Int("n-head-kv", 0, "key/value heads (grouped-query attention)")
		nFF      = fs.Int("n-ff", 0, "feed-forward length")
		nCtx     = fs.Int("n-ctx", 0, "training context length")
		typeName = fs.String("type", "", "matrix type: f32, f16 or q8_0 (norms are always f32)")
		seed     = fs.Uint64("seed", 0, "seed of the random weights")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *out == "" {
		return fmt.Errorf("-out is required")
	}
	cfg, ok := gguf.Presets[*preset]
	if !ok {
		return fmt.Errorf("-preset %q: want one of %s", *preset, strings.Join(presets, ", "))
	}
	var typeErr error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "name":
			cfg.Name = *name
		case "n-embd":
			cfg.EmbeddingLength = *nEmbd
		case "n-layer":
			cfg.BlockCount = *nLayer
		case "n-head":
			cfg.HeadCount = *nHead
			if !isSet(fs, "n-head-kv") {
				cfg.HeadCountKV = 0 // follow n-head unless given
			}
		case "n-head-kv":
			cfg.HeadCountKV = *nHeadKV
		case "n-ff":
			cfg.FeedForwardLength = *nFF
		case "n-ctx":
			cfg.ContextLength = *nCtx
		case "type":
			cfg.Type, typeErr = gguf.ParseType(*typeName)
		case "seed":
			cfg.Seed = *seed
		}
	})
	if typeErr != nil {
		return fmt.Errorf("-type: %w", typeErr)
	}
	file, err := gguf.Llama(cfg)
	if err != nil {
		return err
	}
	size, err := file.Size()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := file.WriteFile(*out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %s, %.1fM parameters, %v, %.1f MB, in %v\n",
		*out, cfg.Name, float64(cfg.NumParams())/1e6, cfg.Type, float64(size)/1e6,
		time.Since(start).Round(time.Millisecond))
	return nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
