package gguf

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestChatVocab(t *testing.T) {
	v := ChatVocab()
	if len(v.Tokens) != len(v.Scores) || len(v.Tokens) != len(v.Types) {
		t.Fatalf("%d tokens, %d scores, %d types", len(v.Tokens), len(v.Scores), len(v.Types))
	}
	seen := map[string]int{}
	for i, tok := range v.Tokens {
		if j, dup := seen[tok]; dup {
			t.Errorf("token %q at %d and %d", tok, j, i)
		}
		seen[tok] = i
		if !utf8.ValidString(tok) {
			t.Errorf("token %d is not UTF-8: %q", i, tok)
		}
	}

	special := []struct {
		name string
		id   int
		text string
		typ  TokenType
	}{
		{"UNK", v.UNK, "<unk>", TokenUnknown},
		{"BOS", v.BOS, "<s>", TokenControl},
		{"EOS", v.EOS, "<|im_end|>", TokenControl},
		{"IMStart", v.IMStart, "<|im_start|>", TokenControl},
		{"IMEnd", v.IMEnd, "<|im_end|>", TokenControl},
	}
	for _, s := range special {
		if v.Tokens[s.id] != s.text || v.Types[s.id] != s.typ {
			t.Errorf("%s = %d %q type %d, want %q type %d", s.name, s.id, v.Tokens[s.id], v.Types[s.id], s.text, s.typ)
		}
	}
	if id, ok := v.Id("</s>"); !ok || v.Types[id] != TokenControl {
		t.Errorf("</s> missing or not a control token")
	}

	// The 256 byte tokens, in order, named as llama.cpp looks them up.
	first, _ := v.Id("<0x00>")
	for b := 0; b < 256; b++ {
		id := first + b
		if want := fmt.Sprintf("<0x%02X>", b); v.Tokens[id] != want || v.Types[id] != TokenByte {
			t.Fatalf("token %d = %q type %d, want %q type BYTE", id, v.Tokens[id], v.Types[id], want)
		}
	}

	// Every normal piece is reachable by SPM merges: each of its prefixes of two
	// or more characters is a token too, and every single character is.
	for i, tok := range v.Tokens {
		if v.Types[i] != TokenNormal {
			continue
		}
		r := []rune(tok)
		for n := 1; n < len(r); n++ {
			if _, ok := seen[string(r[:n])]; !ok {
				t.Errorf("piece %q: prefix %q is not a token", tok, string(r[:n]))
			}
		}
	}
	for c := '!'; c <= '~'; c++ {
		if _, ok := seen[string(c)]; !ok {
			t.Errorf("character %q is not a token", c)
		}
	}

	// Merged word pieces exist with and without the space marker.
	for _, w := range []string{"Hello", "world", "the", "assistant", "user", "system", "document"} {
		for _, p := range []string{w, SpaceMarker + w} {
			if _, ok := seen[p]; !ok {
				t.Errorf("word piece %q missing", p)
			}
		}
	}

	// Scores rank pieces: no two normal pieces share one, specials and bytes are 0.
	scores := map[float32]string{}
	for i, tok := range v.Tokens {
		if v.Types[i] != TokenNormal {
			if v.Scores[i] != 0 {
				t.Errorf("%q has score %g", tok, v.Scores[i])
			}
			continue
		}
		if other, dup := scores[v.Scores[i]]; dup {
			t.Errorf("%q and %q share score %g", tok, other, v.Scores[i])
		}
		scores[v.Scores[i]] = tok
	}
}

func TestChatMLTemplate(t *testing.T) {
	for _, want := range []string{"<|im_start|>", "<|im_end|>", "add_generation_prompt", "message['role']", "message['content']"} {
		if !strings.Contains(ChatMLTemplate, want) {
			t.Errorf("template lacks %q", want)
		}
	}
}
