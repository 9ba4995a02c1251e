package bm25ref

import (
	"strings"
	"testing"
)

func TestTerms(t *testing.T) {
	if got := strings.Join(Terms("The Gateway返回503错误, ok"), " "); got != "the gateway 返回 503 错误 ok" {
		t.Fatalf("Terms = %q", got)
	}
}

func TestWindowsAndSearch(t *testing.T) {
	var ix Index
	long := strings.Repeat("alpha ", 500) + "needle " + strings.Repeat("beta ", 300)
	ix.Add("d1", long)
	ix.Add("d2", "数据库不可用时，网关返回503错误。")
	if len(ix.chunks) != 4 { // 801 tokens in windows of 400 stepping 340: 0, 340, 680 (+ d2)
		t.Fatalf("%d chunks", len(ix.chunks))
	}
	hits := ix.Search("needle", 3)
	if len(hits) != 1 || !strings.Contains(hits[0].Text, "needle") { // token 500: the second window only
		t.Fatalf("needle: %d hits", len(hits))
	}
	if hits := ix.Search("数据库", 1); len(hits) != 1 || hits[0].Doc != "d2" {
		t.Fatalf("数据库: %+v", hits)
	}
}
