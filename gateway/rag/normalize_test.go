package rag

import (
	"testing"

	"github.com/ragway/ragway/gateway/tokens"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"plain", "hello world", "hello world"},
		{"crlf", "a\r\nb\rc\n", "a\nb\nc"},
		{"controls dropped", "a\x00b\x07c\x1bd\u0085e\u200bf", "abcd\ne\u200bf"},
		{"bom dropped", "\uFEFFtitle", "title"},
		{"invalid utf8 dropped", "a\xffb", "ab"},
		{"runs collapsed", "a  b\t\tc \t d", "a b c d"},
		{"unicode spaces", "a\u00a0\u00a0b\u3000c", "a b c"},
		{"indent kept", "- a\n  - b\n\tcode", "- a\n  - b\n\tcode"},
		{"ideographic indent", "\u3000\u3000第一段。", "  第一段。"},
		{"trailing spaces", "a  \nb\t\n", "a\nb"},
		{"blank runs", "a\n\n\n\n\nb", "a\n\n\nb"},
		{"two blanks kept", "a\n\n\nb", "a\n\n\nb"},
		{"space only lines are blank", "a\n  \n \t \n\n\n\nb", "a\n\n\nb"},
		{"leading blank lines", "\n\n  \nx", "x"},
		{"nfc", "e\u0301t\u00e9", "\u00e9t\u00e9"},
		{"cjk untouched", "数据库连接失败，请重试！", "数据库连接失败，请重试！"},
		{"full width kept", "ＡＢＣ１２３", "ＡＢＣ１２３"},
		{"line separator", "a\u2028b", "a\nb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Normalize(tt.in); got != tt.want {
				t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if got := Normalize(tt.want); got != tt.want {
				t.Errorf("Normalize not idempotent on %q: %q", tt.want, got)
			}
		})
	}
}

func TestEstimateTokens(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"", 0},
		{"abc", 1},
		{"abcd", 2},
		{"数据库", 3},
		{"数据ab", 3},
	}
	for _, tt := range tests {
		if got := tokens.Estimate(tt.in); got != tt.want {
			t.Errorf("tokens.Estimate(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}
