package tokens

import (
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestEstimate(t *testing.T) {
	for _, c := range []struct {
		text string
		min  int
	}{
		{"", 0},
		{"hello world", 3},
		{"数据库连接失败时网关返回503", 13}, // one per CJK rune at least
	} {
		if got := Estimate(c.text); got < c.min {
			t.Errorf("Estimate(%q) = %d, want ≥ %d", c.text, got, c.min)
		}
	}
}

func TestOf(t *testing.T) {
	for _, c := range []struct {
		e    sdk.Event
		want int
	}{
		{sdk.Event{}, 0},
		{sdk.Event{Text: "hi"}, 1},
		{sdk.Event{Text: "hi there", Tokens: 2}, 2},
		{sdk.Event{Tokens: 3}, 3},
	} {
		if got := Of(c.e); got != c.want {
			t.Errorf("Of(%+v) = %d, want %d", c.e, got, c.want)
		}
	}
}
