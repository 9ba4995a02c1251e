package store_test

import (
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/store"
)

// TestUsageTotals: usage since a time, summed per user and model, the most tokens
// first, at most the limit; older rows are not counted.
func TestUsageTotals(t *testing.T) {
	s := open(t)
	ann, ben := user(t, s, "ann"), user(t, s, "ben")
	before := time.Now().Add(-time.Second)
	rows := []store.Usage{
		{UserID: ann.ID, Model: "small", Route: "chat", PromptTokens: 10, CompletionTokens: 5},
		{UserID: ann.ID, Model: "small", Route: "chat", PromptTokens: 10, CompletionTokens: 5},
		{UserID: ann.ID, Model: "big", Route: "chat", PromptTokens: 100, CompletionTokens: 1},
		{UserID: ben.ID, Model: "small", Route: "embeddings", PromptTokens: 40},
	}
	if err := s.RecordUsage(ctx(t), rows...); err != nil {
		t.Fatal(err)
	}
	got, err := s.UsageTotals(ctx(t), before, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.UsageTotal{
		{UserName: "ann", Model: "big", Requests: 1, PromptTokens: 100, CompletionTokens: 1},
		{UserName: "ben", Model: "small", Requests: 1, PromptTokens: 40},
		{UserName: "ann", Model: "small", Requests: 2, PromptTokens: 20, CompletionTokens: 10},
	}
	if len(got) != len(want) {
		t.Fatalf("totals %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("totals[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got, _ := s.UsageTotals(ctx(t), before, 1); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("limit 1: %+v", got)
	}
	if got, _ := s.UsageTotals(ctx(t), time.Now().Add(time.Minute), 10); len(got) != 0 {
		t.Fatalf("since a later time: %+v", got)
	}
}

// TestListUsers: users by name, a page at a time, with their unrevoked keys and live
// sessions counted.
func TestListUsers(t *testing.T) {
	s := open(t)
	for _, n := range []string{"cy", "ab", "bo"} {
		user(t, s, n)
	}
	p1, err := s.ListUsers(ctx(t), store.Page{Limit: 2})
	if err != nil || len(p1) != 2 || p1[0].Name != "ab" || p1[1].Name != "bo" {
		t.Fatalf("page 1: %+v %v", p1, err)
	}
	p2, err := s.ListUsers(ctx(t), store.Page{Limit: 2, After: "bo"})
	if err != nil || len(p2) != 1 || p2[0].Name != "cy" || p2[0].Keys != 0 || p2[0].Sessions != 0 || !p2[0].LastUsedAt.IsZero() {
		t.Fatalf("page 2: %+v %v", p2, err)
	}
}
