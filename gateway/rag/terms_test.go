package rag

import (
	"hash/fnv"
	"slices"
	"testing"
)

func TestTerms(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", nil},
		{"english", "The Gateway returns HTTP 503 errors.", []string{"gateway", "return", "http", "503", "error"}},
		{"english stems", "Goroutines: a goroutine running; it runs", []string{"goroutin", "goroutin", "run", "it", "run"}},
		{"words with digits or other letters are not stemmed", "utf8s x86s naïves", []string{"utf8s", "x86s", "naïves"}},
		{"one letter dropped, digits kept", "a b 5 x1 I", []string{"5", "x1"}},
		{"stopwords", "the cat and the hat is on a mat", []string{"cat", "hat", "mat"}},
		{"punctuation splits", "snake_case, e-mail; foo.bar/baz:8080", []string{"snake", "case", "mail", "foo", "bar", "baz", "8080"}},
		{"chinese bigrams", "数据库连接", []string{"数据", "据库", "库连", "连接"}},
		{"digits break cjk runs", "网关返回503错误", []string{"网关", "关返", "返回", "503", "错误"}},
		{"isolated cjk unigram", "第3章", []string{"第", "3", "章"}},
		{"chinese punctuation splits", "你好，世界！再见。", []string{"你好", "世界", "再见"}},
		{"mixed english chinese", "使用Redis缓存提高QPS", []string{"使用", "redi", "缓存", "存提", "提高", "qps"}},
		{"full width folded", "Ｒｅｄｉｓ版本５．０", []string{"redi", "版本", "5", "0"}},
		{"japanese", "東京タワーに行きました", []string{"東京", "京タ", "タワ", "ワー", "ーに", "に行", "行き", "きま", "まし", "した"}},
		{"korean", "한국어 검색", []string{"한국", "국어", "검색"}},
		{"cyrillic greek", "Привет мир αβγ Ω", []string{"привет", "мир", "αβγ"}},
		{"accents", "café Résumé", []string{"café", "résumé"}},
		{"long word dropped", "ok " + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", []string{"ok"}},
		{"emoji separates", "好🙂的", []string{"好", "的"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Terms(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("Terms(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestTermID(t *testing.T) {
	for _, term := range []string{"", "a", "数据", "gateway", "503"} {
		h := fnv.New32a()
		h.Write([]byte(term))
		if got, want := TermID(term), h.Sum32(); got != want {
			t.Errorf("TermID(%q) = %#x, want FNV-1a %#x", term, got, want)
		}
		if got, want := termIDBytes([]byte(term)), TermID(term); got != want {
			t.Errorf("termIDBytes(%q) = %#x, want %#x", term, got, want)
		}
	}
}
