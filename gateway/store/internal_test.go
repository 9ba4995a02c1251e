package store

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTitleOf(t *testing.T) {
	words := strings.Repeat("word ", 30)
	for _, tc := range []struct {
		msgs []NewMessage
		want string
	}{
		{nil, ""},
		{[]NewMessage{{Role: RoleSystem, Content: "system text"}, {Role: RoleAssistant, Content: "hi"}}, ""},
		{[]NewMessage{{Role: RoleUser, Content: " \t\n"}, {Role: RoleUser, Content: "second"}}, "second"},
		{[]NewMessage{{Role: RoleUser, Content: "  a\n\tb   c "}}, "a b c"},
		{[]NewMessage{{Role: RoleUser, Content: strings.Repeat("x", 60)}}, strings.Repeat("x", 60)},
		{[]NewMessage{{Role: RoleUser, Content: strings.Repeat("x", 61)}}, strings.Repeat("x", 59) + "…"},
		{[]NewMessage{{Role: RoleUser, Content: strings.Repeat("日本", 40)}}, strings.Repeat("日本", 29) + "日…"},
		// At a word boundary: twelve words (59 characters) and "…".
		{[]NewMessage{{Role: RoleUser, Content: words}}, strings.TrimSpace(strings.Repeat("word ", 12)) + "…"},
	} {
		got := titleOf(tc.msgs)
		if got != tc.want {
			t.Errorf("titleOf(%q) = %q, want %q", tc.msgs, got, tc.want)
		}
		if n := utf8.RuneCountInString(got); n > titleLen || !utf8.ValidString(got) {
			t.Errorf("titleOf(%q) = %q: %d characters", tc.msgs, got, n)
		}
	}
}

func TestValidID(t *testing.T) {
	for id, want := range map[string]bool{
		"0190a5c4-7e1b-7c3d-8f00-123456789abc":   true,
		"0190A5C4-7E1B-7C3D-8F00-123456789ABC":   true,
		"0190a5c47e1b7c3d8f00123456789abc":       false,
		"{0190a5c4-7e1b-7c3d-8f00-123456789abc}": false,
		"0190a5c4-7e1b-7c3d-8f00-123456789abg":   false,
		"0190a5c4_7e1b-7c3d-8f00-123456789abc":   false,
		"abc":                                    false,
		"":                                       false,
	} {
		if got := validID(id); got != want {
			t.Errorf("validID(%q) = %v", id, got)
		}
	}
}

func TestPageLimit(t *testing.T) {
	for in, want := range map[int]int{-5: 50, 0: 50, 1: 1, 50: 50, 200: 200, 201: 200} {
		if got := (Page{Limit: in}).Size(); got != want {
			t.Errorf("Page{Limit: %d}.Size() = %d, want %d", in, got, want)
		}
	}
}
