package store_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/store"
)

func contents(ms []store.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Role+":"+m.Content)
	}
	return out
}

func TestConversationCRUD(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	c, err := s.CreateConversation(ctx(t), u.ID, store.NewConversation{Title: "t", Model: "m", SystemPrompt: "sp"})
	if err != nil {
		t.Fatal(err)
	}
	if c.ID == "" || c.UserID != u.ID || c.Title != "t" || c.Model != "m" || c.SystemPrompt != "sp" ||
		c.CreatedAt.IsZero() || !c.UpdatedAt.Equal(c.CreatedAt) {
		t.Fatalf("CreateConversation = %+v", c)
	}
	got, err := s.GetConversation(ctx(t), u.ID, c.ID)
	if err != nil || got != c {
		t.Errorf("GetConversation = %+v, %v; want %+v", got, err, c)
	}
	if msgs, err := s.ListMessages(ctx(t), u.ID, c.ID); err != nil || len(msgs) != 0 {
		t.Errorf("ListMessages of an empty conversation = %v, %v", msgs, err)
	}
	_, err = s.CreateConversation(ctx(t), "00000000-0000-0000-0000-000000000000", store.NewConversation{})
	wantErr(t, "CreateConversation of an unknown user", err, store.ErrNotFound)

	// Delete cascades to the messages.
	turn(t, s, u.ID, c.ID, userTurn("hello"))
	if n := count(t, s, `SELECT count(*) FROM messages WHERE conversation_id = $1`, c.ID); n != 2 {
		t.Fatalf("%d messages after a turn", n)
	}
	if err := s.DeleteConversation(ctx(t), u.ID, c.ID); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, `SELECT count(*) FROM messages WHERE conversation_id = $1`, c.ID); n != 0 {
		t.Errorf("%d messages left after deleting their conversation", n)
	}
	_, err = s.GetConversation(ctx(t), u.ID, c.ID)
	wantErr(t, "GetConversation of a deleted conversation", err, store.ErrNotFound)
	_, err = s.ListMessages(ctx(t), u.ID, c.ID)
	wantErr(t, "ListMessages of a deleted conversation", err, store.ErrNotFound)
	wantErr(t, "deleting twice", s.DeleteConversation(ctx(t), u.ID, c.ID), store.ErrNotFound)
}

func TestTurns(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	c := conversation(t, s, u.ID)
	sp := "be brief"

	// Turn 1: a system prompt and a user message.
	long := "  What is   the\tcapital of France, and — while we are at it — of Ünterwalden,\n Switzerland? "
	t1 := turn(t, s, u.ID, c.ID, store.Turn{
		Model:        "m1",
		SystemPrompt: &sp,
		Messages:     []store.NewMessage{{Role: store.RoleUser, Content: long}},
	})
	if len(t1.MessageIDs) != 1 || t1.AssistantMessageID == "" || slices.Contains(t1.MessageIDs, t1.AssistantMessageID) {
		t.Fatalf("turn 1 ids: %v, assistant %q", t1.MessageIDs, t1.AssistantMessageID)
	}
	if got := contents(t1.History); !slices.Equal(got, []string{"user:" + long}) {
		t.Errorf("turn 1 history %q", got)
	}
	if h := t1.History[0]; h.ID != t1.MessageIDs[0] || h.Status != store.StatusComplete || h.ConversationID != c.ID ||
		h.Model != "" || h.CompletedAt.IsZero() {
		t.Errorf("turn 1 user message %+v", h)
	}
	tc := t1.Conversation
	if tc.SystemPrompt != sp || tc.Model != "m1" || !tc.UpdatedAt.After(c.UpdatedAt) {
		t.Errorf("conversation after turn 1: %+v (before: %+v)", tc, c)
	}
	wantTitle := "What is the capital of France, and — while we are at it —…"
	if tc.Title != wantTitle || utf8.RuneCountInString(tc.Title) > 60 {
		t.Errorf("title %q (%d characters), want %q", tc.Title, utf8.RuneCountInString(tc.Title), wantTitle)
	}

	// The assistant message is in progress until finished.
	msgs, err := s.ListMessages(ctx(t), u.ID, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	a1 := msgs[len(msgs)-1]
	if a1.ID != t1.AssistantMessageID || a1.Role != store.RoleAssistant || a1.Status != store.StatusInProgress ||
		a1.Model != "m1" || a1.Content != "" || !a1.CompletedAt.IsZero() {
		t.Fatalf("in-progress assistant message %+v", a1)
	}
	sources := json.RawMessage(`[{"document_id":"d1","score":0.5}]`)
	fin, err := s.FinishMessage(ctx(t), u.ID, a1.ID, store.Finish{
		Status: store.StatusComplete, Content: "Paris.", FinishReason: "stop",
		PromptTokens: 12, CompletionTokens: 3, Sources: sources,
	})
	if err != nil {
		t.Fatal(err)
	}
	if fin.ID != a1.ID || fin.Status != store.StatusComplete || fin.Content != "Paris." || fin.FinishReason != "stop" ||
		fin.Error != "" || fin.PromptTokens != 12 || fin.CompletionTokens != 3 || fin.CompletedAt.IsZero() || fin.Seq != a1.Seq {
		t.Errorf("FinishMessage = %+v", fin)
	}
	var gotSources, wantSources any
	if err := json.Unmarshal(fin.Sources, &gotSources); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(sources, &wantSources)
	if fmt.Sprint(gotSources) != fmt.Sprint(wantSources) {
		t.Errorf("sources %s, want %s", fin.Sources, sources)
	}
	// updated_at is when the last turn started (BeginTurn), not when it ended.
	after, _ := s.GetConversation(ctx(t), u.ID, c.ID)
	if !after.UpdatedAt.Equal(tc.UpdatedAt) {
		t.Errorf("FinishMessage moved updated_at to %v (turn start: %v)", after.UpdatedAt, tc.UpdatedAt)
	}
	_, err = s.FinishMessage(ctx(t), u.ID, a1.ID, store.Finish{Status: store.StatusComplete})
	wantErr(t, "finishing a finished message", err, store.ErrNotFound)
	_, err = s.FinishMessage(ctx(t), u.ID, t1.MessageIDs[0], store.Finish{Status: store.StatusComplete})
	wantErr(t, "finishing a user message", err, store.ErrNotFound)

	// Turn 2: nil SystemPrompt keeps it; the title stays.
	t2 := turn(t, s, u.ID, c.ID, store.Turn{Model: "m2", Messages: []store.NewMessage{{Role: store.RoleUser, Content: "And Spain?"}}})
	if got, want := contents(t2.History), []string{"user:" + long, "assistant:Paris.", "user:And Spain?"}; !slices.Equal(got, want) {
		t.Errorf("turn 2 history %q, want %q", got, want)
	}
	if t2.Conversation.Title != wantTitle || t2.Conversation.SystemPrompt != sp || t2.Conversation.Model != "m2" {
		t.Errorf("conversation after turn 2: %+v", t2.Conversation)
	}

	// Turn 3 while turn 2's answer is still in progress: history leaves it out. Several
	// messages, a new system prompt.
	sp2 := "be verbose"
	t3 := turn(t, s, u.ID, c.ID, store.Turn{Model: "m3", SystemPrompt: &sp2, Messages: []store.NewMessage{
		{Role: store.RoleAssistant, Content: "(earlier answer)", ToolCalls: []store.ToolCall{{ID: "c1", Name: "weather", Arguments: "{}"}}},
		{Role: store.RoleTool, ToolCallID: "c1", Content: `{"temp": 21}`},
		{Role: store.RoleUser, Content: "Thanks"},
	}})
	if len(t3.MessageIDs) != 3 {
		t.Fatalf("turn 3 ids %v", t3.MessageIDs)
	}
	want3 := []string{"user:" + long, "assistant:Paris.", "user:And Spain?", "assistant:(earlier answer)", `tool:{"temp": 21}`, "user:Thanks"}
	if got := contents(t3.History); !slices.Equal(got, want3) {
		t.Errorf("turn 3 history %q, want %q", got, want3)
	}
	for i, id := range t3.MessageIDs {
		if t3.History[3+i].ID != id {
			t.Errorf("turn 3 message %d: id %s, history has %s", i, id, t3.History[3+i].ID)
		}
	}
	if t3.Conversation.SystemPrompt != sp2 {
		t.Errorf("system prompt %q, want %q", t3.Conversation.SystemPrompt, sp2)
	}

	// Cancel turn 2's answer, fail turn 3's.
	if m, err := s.FinishMessage(ctx(t), u.ID, t2.AssistantMessageID, store.Finish{Status: store.StatusCancelled, Content: "Mad"}); err != nil || m.Status != store.StatusCancelled || m.Sources != nil {
		t.Errorf("cancelling: %+v, %v", m, err)
	}
	if m, err := s.FinishMessage(ctx(t), u.ID, t3.AssistantMessageID, store.Finish{Status: store.StatusFailed, Error: "backend down"}); err != nil || m.Error != "backend down" {
		t.Errorf("failing: %+v, %v", m, err)
	}
	_, err = s.FinishMessage(ctx(t), u.ID, t3.AssistantMessageID, store.Finish{Status: store.StatusInProgress})
	wantErr(t, "FinishMessage with status in_progress", err, store.ErrInvalid)
	_, err = s.FinishMessage(ctx(t), u.ID, t3.AssistantMessageID, store.Finish{Status: "done"})
	wantErr(t, "FinishMessage with an unknown status", err, store.ErrInvalid)

	// An empty system prompt clears it.
	empty := ""
	t4 := turn(t, s, u.ID, c.ID, store.Turn{Model: "m4", SystemPrompt: &empty})
	if t4.Conversation.SystemPrompt != "" || len(t4.MessageIDs) != 0 {
		t.Errorf("turn 4: %+v", t4)
	}
	if got := len(t4.History); got != len(want3)+2 {
		t.Errorf("turn 4 history has %d messages, want %d", got, len(want3)+2)
	}

	// Every message, in order, seqs increasing.
	all, err := s.ListMessages(ctx(t), u.ID, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantAll := []string{"user:" + long, "assistant:Paris.", "user:And Spain?", "assistant:Mad",
		"assistant:(earlier answer)", `tool:{"temp": 21}`, "user:Thanks", "assistant:", "assistant:"}
	if got := contents(all); !slices.Equal(got, wantAll) {
		t.Errorf("ListMessages %q, want %q", got, wantAll)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Seq <= all[i-1].Seq {
			t.Errorf("seq %d after %d", all[i].Seq, all[i-1].Seq)
		}
	}
	if last := all[len(all)-1]; last.ID != t4.AssistantMessageID || last.Status != store.StatusInProgress {
		t.Errorf("last message %+v", last)
	}

	// A bad role stores nothing of the turn.
	before := len(all)
	_, err = s.BeginTurn(ctx(t), u.ID, c.ID, store.Turn{Model: "m", Messages: []store.NewMessage{
		{Role: store.RoleUser, Content: "ok"}, {Role: "developer", Content: "no"},
	}})
	wantErr(t, "BeginTurn with role developer", err, store.ErrInvalid)
	if all, _ := s.ListMessages(ctx(t), u.ID, c.ID); len(all) != before {
		t.Errorf("a rejected turn stored %d messages", len(all)-before)
	}
}

func TestTitleOnlyFromUserText(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	c := conversation(t, s, u.ID)
	ts := turn(t, s, u.ID, c.ID, store.Turn{Messages: []store.NewMessage{{Role: store.RoleSystem, Content: "sys"}, {Role: store.RoleUser, Content: " \n "}}})
	if ts.Conversation.Title != "" {
		t.Errorf("title %q from no user text", ts.Conversation.Title)
	}
	ts = turn(t, s, u.ID, c.ID, userTurn(strings.Repeat("é", 100)))
	if want := strings.Repeat("é", 59) + "…"; ts.Conversation.Title != want {
		t.Errorf("title %q, want %q", ts.Conversation.Title, want)
	}
	titled, err := s.CreateConversation(ctx(t), u.ID, store.NewConversation{Title: "mine"})
	if err != nil {
		t.Fatal(err)
	}
	if ts := turn(t, s, u.ID, titled.ID, userTurn("hello")); ts.Conversation.Title != "mine" {
		t.Errorf("a turn retitled %q as %q", "mine", ts.Conversation.Title)
	}
}

// TestConcurrentTurns: turns of one conversation take turns; each one's history holds
// every turn committed before it.
func TestConcurrentTurns(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	c := conversation(t, s, u.ID)
	const n = 8
	results := make([]store.TurnStarted, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ts, err := s.BeginTurn(ctx(t), u.ID, c.ID, userTurn(fmt.Sprint("message ", i)))
			if err != nil {
				t.Error(err)
			}
			results[i] = ts
		}()
	}
	wg.Wait()
	var sizes []int
	for i, r := range results {
		sizes = append(sizes, len(r.History))
		if len(r.History) == 0 || r.History[len(r.History)-1].Content != fmt.Sprint("message ", i) {
			t.Errorf("turn %d: history %q does not end with its message", i, contents(r.History))
		}
	}
	slices.Sort(sizes)
	for i, size := range sizes {
		if size != i+1 {
			t.Fatalf("history sizes %v, want 1 to %d: a turn missed one committed before it", sizes, n)
		}
	}
}

func TestBeginTurnInANewConversation(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	sp := "be brief"
	ts := turn(t, s, u.ID, "", store.Turn{Model: "m", SystemPrompt: &sp, Messages: []store.NewMessage{{Role: store.RoleUser, Content: "first words"}}})
	c := ts.Conversation
	if c.ID == "" || c.UserID != u.ID || c.Title != "first words" || c.Model != "m" || c.SystemPrompt != sp {
		t.Fatalf("new conversation %+v", c)
	}
	got, err := s.GetConversation(ctx(t), u.ID, c.ID)
	if err != nil || got.ID != c.ID {
		t.Fatalf("GetConversation of the new conversation: %+v, %v", got, err)
	}
	if h := contents(ts.History); !slices.Equal(h, []string{"user:first words"}) {
		t.Fatalf("history %q", h)
	}
	// A user that does not exist owns nothing: no conversation is made for it.
	_, err = s.BeginTurn(ctx(t), "00000000-0000-4000-8000-000000000000", "", userTurn("x"))
	wantErr(t, "BeginTurn of an unknown user", err, store.ErrNotFound)
}

func TestBeginTurnBudgetDropsOnlyWhatCannotFit(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	c := conversation(t, s, u.ID)
	long := strings.Repeat("x", 400) // at least 100 + 8 tokens however it is counted
	for i := range 4 {
		ts := turn(t, s, u.ID, c.ID, userTurn(fmt.Sprintf("%d %s", i, long)))
		if _, err := s.FinishMessage(ctx(t), u.ID, ts.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: long}); err != nil {
			t.Fatal(err)
		}
	}
	// 8 earlier messages of ≥ 108 tokens each and the new one of ≥ 9: with a budget of
	// 350, the newest 3 earlier messages fit (333), the 4th is returned too (a message
	// is dropped only when those newer than it already fill the budget: the caller's
	// count decides about it), the oldest 4 cannot fit.
	ts := turn(t, s, u.ID, c.ID, store.Turn{Model: "m", Budget: 350, Messages: []store.NewMessage{{Role: store.RoleUser, Content: "last"}}})
	if len(ts.History) != 5 || ts.History[4].Content != "last" || !strings.HasPrefix(ts.History[0].Content, "2 ") ||
		ts.History[0].Seq >= ts.History[1].Seq {
		t.Fatalf("history with budget 350: %d messages %q", len(ts.History), contents(ts.History))
	}
	// Without a budget, everything.
	ts = turn(t, s, u.ID, c.ID, userTurn("again"))
	if len(ts.History) != 10 {
		t.Fatalf("history without budget: %d messages, want 10", len(ts.History))
	}
	// The new messages are returned whatever the budget.
	ts = turn(t, s, u.ID, c.ID, store.Turn{Model: "m", Budget: 1, Messages: []store.NewMessage{{Role: store.RoleUser, Content: long}}})
	if len(ts.History) != 1 || ts.History[0].Content != long {
		t.Fatalf("history with budget 1: %q", contents(ts.History))
	}
}

func TestFailInterrupted(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	c := conversation(t, s, u.ID)
	old := turn(t, s, u.ID, c.ID, userTurn("old"))
	if _, err := s.DB().ExecContext(ctx(t), `UPDATE messages SET created_at = now() - interval '1 hour', content = 'partial' WHERE id = $1`, old.AssistantMessageID); err != nil {
		t.Fatal(err)
	}
	fresh := turn(t, s, u.ID, c.ID, userTurn("fresh"))
	n, err := s.FailInterrupted(ctx(t), 10*time.Minute)
	if err != nil || n != 1 {
		t.Fatalf("FailInterrupted = %d, %v; want 1", n, err)
	}
	msgs, err := s.ListMessages(ctx(t), u.ID, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		switch m.ID {
		case old.AssistantMessageID:
			if m.Status != store.StatusFailed || m.Content != "partial" || m.FinishReason != "error" || m.Error != store.Interrupted || m.CompletedAt.IsZero() {
				t.Errorf("interrupted answer %+v", m)
			}
		case fresh.AssistantMessageID:
			if m.Status != store.StatusInProgress {
				t.Errorf("an answer in progress for a moment was touched: %+v", m)
			}
		}
	}
}

// A turn that names the last message its caller holds reads only what follows it,
// untrimmed; when that message does not stand there (another id at that seq, or none),
// the history is read from the start, trimmed for the budget.
func TestBeginTurnAfterWhatIsHeld(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	first := turn(t, s, u.ID, "", userTurn("q1"))
	conv := first.Conversation.ID
	a1, err := s.FinishMessage(ctx(t), u.ID, first.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: strings.Repeat("long answer ", 50)})
	if err != nil {
		t.Fatal(err)
	}
	tr := userTurn("q2")
	tr.After, tr.AfterID, tr.Budget = a1.Seq, a1.ID, 20
	st := turn(t, s, u.ID, conv, tr)
	if st.After != a1.Seq || len(st.History) != 1 || st.History[0].Content != "q2" {
		t.Fatalf("after the answer held: after %d, %d messages; want after %d, q2 only", st.After, len(st.History), a1.Seq)
	}
	if st.Pending != 0 {
		t.Errorf("pending %d with no other answer in progress", st.Pending)
	}
	for name, tr := range map[string]store.Turn{
		"another id at that seq": {After: a1.Seq, AfterID: first.MessageIDs[0]},
		"no message at that seq": {After: a1.Seq + 1000, AfterID: a1.ID},
		"not a uuid":             {After: a1.Seq, AfterID: "a1"},
	} {
		tr.Model, tr.Messages, tr.Budget = "m1", []store.NewMessage{{Role: store.RoleUser, Content: "q3"}}, 0
		st := turn(t, s, u.ID, conv, tr)
		// q1, a1, q2 (its answer in progress: pending), q3 …
		if st.After != 0 || st.History[0].Content != "q1" || st.Pending == 0 {
			t.Errorf("%s: after %d, history from %q, pending %d; want the history from the start, and q2's answer pending", name, st.After, st.History[0].Content, st.Pending)
		}
	}
	// Read from the start, the budget trims: a1 cannot fit 20 tokens.
	tr = userTurn("q4")
	tr.After, tr.AfterID, tr.Budget = 1<<40, a1.ID, 20
	st = turn(t, s, u.ID, conv, tr)
	if st.After != 0 || slices.ContainsFunc(st.History, func(m store.Message) bool { return m.ID == a1.ID }) {
		t.Errorf("read from the start with a budget of 20: %d messages, a1 among them", len(st.History))
	}
}

// TestRegenerate: a regeneration names the conversation's last answer; its new
// answer's history leaves the old one out; the old one is superseded only when the new
// one completes (one cancelled, failed or interrupted is superseded itself); what a
// caller holds up to a superseded answer is void; and a regeneration of an answer that
// is not the last, is still being written, or is not the conversation's is refused.
func TestRegenerate(t *testing.T) {
	s := open(t)
	u := user(t, s, "alice")
	first := turn(t, s, u.ID, "", userTurn("q1"))
	conv := first.Conversation.ID
	a1, err := s.FinishMessage(ctx(t), u.ID, first.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "a1"})
	if err != nil {
		t.Fatal(err)
	}
	regen := func(answer string) (store.TurnStarted, error) {
		return s.BeginTurn(ctx(t), u.ID, conv, store.Turn{Model: "m1", Regenerate: answer})
	}
	contents := func(ms []store.Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Content)
		}
		return out
	}
	listed := func() []string {
		msgs, err := s.ListMessages(ctx(t), u.ID, conv)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range msgs {
			out = append(out, m.Content+":"+m.Status)
		}
		return out
	}
	var fe *store.FieldError
	var ce *store.ConflictError

	second := turn(t, s, u.ID, conv, userTurn("q2"))
	if _, err := regen(second.AssistantMessageID); !errors.As(err, &ce) || ce.Field != "regenerate" || !strings.Contains(ce.Reason, "still being written") {
		t.Fatalf("regenerating an answer in progress: %v", err)
	}
	a2, err := s.FinishMessage(ctx(t), u.ID, second.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "a2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := regen(a1.ID); !errors.As(err, &ce) || !strings.Contains(ce.Reason, "no longer") {
		t.Fatalf("regenerating an answer that is not the last: %v", err)
	}
	for what, id := range map[string]string{"no such message": "00000000-0000-4000-8000-000000000000", "a question": second.MessageIDs[0], "not an id": "a2"} {
		if _, err := regen(id); !errors.As(err, &fe) || fe.Field != "regenerate" {
			t.Fatalf("regenerating %s: %v", what, err)
		}
	}

	// Cancelled: the regeneration is superseded, the old answer stays.
	r1, err := regen(a2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got := contents(r1.History); !slices.Equal(got, []string{"q1", "a1", "q2"}) || len(r1.MessageIDs) != 0 {
		t.Fatalf("a regeneration's history %q, added %v; want q1 a1 q2 and nothing added", got, r1.MessageIDs)
	}
	if got := listed(); !slices.Equal(got, []string{"q1:complete", "a1:complete", "q2:complete", "a2:complete", ":in_progress"}) {
		t.Fatalf("while regenerating: %q", got)
	}
	m, err := s.FinishMessage(ctx(t), u.ID, r1.AssistantMessageID, store.Finish{Status: store.StatusCancelled, Content: "a2 aga", FinishReason: "cancelled"})
	if err != nil || m.Status != store.StatusSuperseded || m.FinishReason != "cancelled" {
		t.Fatalf("a cancelled regeneration: %+v %v", m, err)
	}
	// Completed: it replaces the old answer (the superseded regeneration is no obstacle).
	r2, err := regen(a2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := s.FinishMessage(ctx(t), u.ID, r2.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "a2 again"}); err != nil || m.Status != store.StatusComplete {
		t.Fatalf("a completed regeneration: %+v %v", m, err)
	}
	if got := listed(); !slices.Equal(got, []string{"q1:complete", "a1:complete", "q2:complete", "a2:superseded", "a2 aga:superseded", "a2 again:complete"}) {
		t.Fatalf("after regenerating: %q", got)
	}

	// Held up to the superseded answer: the history is read from the start, without it.
	tr := userTurn("q3")
	tr.After, tr.AfterID = a2.Seq, a2.ID
	st := turn(t, s, u.ID, conv, tr)
	if got := contents(st.History); st.After != 0 || !slices.Equal(got, []string{"q1", "a1", "q2", "a2 again", "q3"}) {
		t.Fatalf("held up to the superseded answer: after %d, history %q", st.After, got)
	}
	if _, err := s.FinishMessage(ctx(t), u.ID, st.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "a3"}); err != nil {
		t.Fatal(err)
	}
	// Held up to a1 (before them): the rest comes without them.
	tr = userTurn("q4")
	tr.After, tr.AfterID = a1.Seq, a1.ID
	st = turn(t, s, u.ID, conv, tr)
	if got := contents(st.History); st.After != a1.Seq || !slices.Equal(got, []string{"q2", "a2 again", "q3", "a3", "q4"}) {
		t.Fatalf("held up to a1: after %d, history %q", st.After, got)
	}
	a4, err := s.FinishMessage(ctx(t), u.ID, st.AssistantMessageID, store.Finish{Status: store.StatusComplete, Content: "a4"})
	if err != nil {
		t.Fatal(err)
	}
	// A regeneration its gateway never ended is superseded, not failed: the old answer
	// stays the conversation's.
	if _, err := regen(a4.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	if n, err := s.FailInterrupted(ctx(t), time.Millisecond); err != nil || n != 1 {
		t.Fatalf("failing the interrupted regeneration: %d %v", n, err)
	}
	if got := listed(); got[len(got)-2] != "a4:complete" || got[len(got)-1] != ":superseded" {
		t.Fatalf("after an interrupted regeneration: %q", got)
	}

	if q, err := s.QuestionOf(ctx(t), u.ID, conv, a4.ID); err != nil || q != "q4" {
		t.Fatalf("the question of a4: %q %v", q, err)
	}
	if _, err := s.QuestionOf(ctx(t), u.ID, conv, second.MessageIDs[0]); !errors.As(err, &fe) {
		t.Fatalf("the question of a question: %v", err)
	}
	other := user(t, s, "bob")
	if _, err := s.QuestionOf(ctx(t), other.ID, conv, a4.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the question of another user's answer: %v", err)
	}
	_, err = s.BeginTurn(ctx(t), other.ID, conv, store.Turn{Model: "m1", Regenerate: a4.ID})
	wantErr(t, "regenerating another user's answer", err, store.ErrNotFound)
	_, err = s.BeginTurn(ctx(t), u.ID, "", store.Turn{Model: "m1", Regenerate: a4.ID})
	if !errors.As(err, &fe) || fe.Field != "regenerate" {
		t.Fatalf("regenerating without a conversation: %v", err)
	}
	withMsgs := userTurn("q")
	withMsgs.Regenerate = a4.ID
	if _, err = s.BeginTurn(ctx(t), u.ID, conv, withMsgs); !errors.As(err, &fe) || fe.Field != "regenerate" {
		t.Fatalf("regenerating with messages: %v", err)
	}
}
