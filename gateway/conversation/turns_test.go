package conversation_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/tokens"
	"github.com/ragway/ragway/internal/pgtest"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// recorder counts what the turns read from the store.
type recorder struct {
	conversation.Store
	mu            sync.Mutex
	begins, after int // turns begun; of them, with Turn.After > 0
	rows          int // history rows read
}

func (r *recorder) BeginTurn(ctx context.Context, userID, conversationID string, t store.Turn) (store.TurnStarted, error) {
	ts, err := r.Store.BeginTurn(ctx, userID, conversationID, t)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.begins++
	if t.After > 0 {
		r.after++
	}
	r.rows += len(ts.History)
	return ts, err
}

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(pgtest.Database(t), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// newUser makes user name.
func newUser(t *testing.T, s *store.Store, name string) store.User {
	t.Helper()
	u, err := s.EnsureUser(testCtx(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// ask begins userID's turn of one user message on g, in conversation conv ("": a new
// one), waiting while Postgres is unavailable (recovering from a crash).
func ask(t *testing.T, g *conversation.Turns, userID, conv, text string) *conversation.Turn {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		turn, err := g.Begin(testCtx(t), conversation.Request{UserID: userID, ConversationID: conv, Model: "m",
			Messages: []sdk.Message{{Role: store.RoleUser, Content: text}}})
		if err == nil {
			return turn
		}
		if !errors.Is(err, store.ErrUnavailable) || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// answer ends turn, complete, with text.
func answer(t *testing.T, turn *conversation.Turn, text string) {
	t.Helper()
	turn.Observe(sdk.Event{Text: text})
	if _, err := turn.Finish(conversation.Outcome{Status: store.StatusComplete}); err != nil {
		t.Error(err)
	}
}

// wantPrompt fails the test unless turn's prompt is the one the whole stored history
// of its conversation makes: every message not in progress, fitted to budget.
func wantPrompt(t *testing.T, s *store.Store, userID string, turn *conversation.Turn, budget int) {
	t.Helper()
	msgs, err := s.ListMessages(testCtx(t), userID, turn.Conversation.ID)
	if err != nil {
		t.Fatal(err)
	}
	msgs = slices.DeleteFunc(msgs, func(m store.Message) bool { return m.Status == store.StatusInProgress })
	want := conversation.Fit(turn.Conversation.SystemPrompt, msgs, budget)
	if !reflect.DeepEqual(turn.Prompt, want) {
		t.Fatalf("prompt of %d messages, want %d:\n got %s\nwant %s", len(turn.Prompt), len(want), brief(turn.Prompt), brief(want))
	}
}

func brief(msgs []sdk.Message) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "[%s %.12q] ", m.Role, m.Content)
	}
	return b.String()
}

// Two gateways (two Turns on one database) take random turns in one conversation:
// answers end in any order (or never, or are failed by FailInterrupted), prompts of
// several budgets, system prompt changes, the conversation deleted now and then.
// Every prompt must be the stored history, as if read whole; and most turns must read
// only what their gateway did not hold.
func TestTurnsPromptIsTheStoredHistory(t *testing.T) {
	s := openStore(t)
	u := newUser(t, s, "alice")
	rec := &recorder{Store: s}
	gateways := []*conversation.Turns{conversation.NewTurns(rec), conversation.NewTurns(rec)}
	rng := rand.New(rand.NewPCG(5, 7))
	words := strings.Fields("the gateway stores every turn of a conversation and its answer in Postgres 数据库 对话")
	text := func() string {
		n := 1 + rng.IntN(40)
		w := make([]string, n)
		for i := range w {
			w[i] = words[rng.IntN(len(words))]
		}
		return strings.Join(w, " ")
	}
	var (
		conv    string
		open    []*conversation.Turn
		deletes int
	)
	finish := func(turn *conversation.Turn) {
		turn.Observe(sdk.Event{Text: text(), Tokens: 1 + rng.IntN(30)})
		status := []string{store.StatusComplete, store.StatusComplete, store.StatusCancelled, store.StatusFailed}[rng.IntN(4)]
		if _, err := turn.Finish(conversation.Outcome{Status: status}); err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
	}
	for step := range 400 {
		switch r := rng.IntN(100); {
		case r < 2 && conv != "":
			if err := s.DeleteConversation(testCtx(t), u.ID, conv); err != nil {
				t.Fatal(err)
			}
			for _, g := range gateways {
				_, err := g.Begin(testCtx(t), conversation.Request{UserID: u.ID, ConversationID: conv, Model: "m",
					Messages: []sdk.Message{{Role: store.RoleUser, Content: "still there?"}}})
				if !errors.Is(err, store.ErrNotFound) {
					t.Fatalf("step %d: a turn of a deleted conversation: %v, want ErrNotFound", step, err)
				}
			}
			conv, open = "", nil
			deletes++
			continue
		case r < 4:
			if _, err := s.FailInterrupted(testCtx(t), 0); err != nil {
				t.Fatal(err)
			}
		}
		// End some of the answers in progress, in any order.
		for len(open) > 0 && rng.IntN(3) > 0 {
			i := rng.IntN(len(open))
			finish(open[i])
			open = slices.Delete(open, i, i+1)
		}
		req := conversation.Request{UserID: u.ID, ConversationID: conv, Model: "m",
			ContextLength: []int{0, 0, 300, 1200}[rng.IntN(4)], MaxTokens: []int{0, 20, 100}[rng.IntN(3)]}
		if rng.IntN(4) == 0 {
			req.Context = text() // retrieved sources
		}
		if rng.IntN(10) == 0 {
			req.Messages = append(req.Messages, sdk.Message{Role: store.RoleSystem, Content: text()})
		}
		req.Messages = append(req.Messages, sdk.Message{Role: store.RoleUser, Content: text()})
		turn, err := gateways[rng.IntN(len(gateways))].Begin(testCtx(t), req)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		wantPrompt(t, s, u.ID, turn, req.HistoryBudget())
		conv = turn.Conversation.ID
		if rng.IntN(4) > 0 {
			finish(turn)
		} else {
			open = append(open, turn)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	t.Logf("%d turns (%d deletes): %d read after what their gateway held; %d history rows read, %.1f a turn",
		rec.begins, deletes, rec.after, rec.rows, float64(rec.rows)/float64(rec.begins))
	if rec.after < rec.begins/2 {
		t.Errorf("%d of %d turns read after what their gateway held, want at least half", rec.after, rec.begins)
	}
}

// A long conversation on one gateway: each turn reads only the turn before it.
func TestTurnsReadOnlyWhatIsNew(t *testing.T) {
	s := openStore(t)
	u := newUser(t, s, "bob")
	rec := &recorder{Store: s}
	turns := conversation.NewTurns(rec)
	var conv string
	for i := range 30 {
		turn := ask(t, turns, u.ID, conv, fmt.Sprintf("question %d", i))
		conv = turn.Conversation.ID
		if len(turn.Prompt) != 2*i+1 {
			t.Fatalf("turn %d: prompt of %d messages, want %d", i, len(turn.Prompt), 2*i+1)
		}
		wantPrompt(t, s, u.ID, turn, 0)
		answer(t, turn, fmt.Sprintf("answer %d", i))
	}
	// Each turn reads its own user message only: the answer before it is held
	// since it ended.
	if rec.after != 29 || rec.rows != 30 {
		t.Errorf("30 turns: %d read after what was held, %d history rows read; want 29 and 30", rec.after, rec.rows)
	}
	// Another gateway starts from the whole history, then reads only what is new.
	other := &recorder{Store: s}
	wantPrompt(t, s, u.ID, ask(t, conversation.NewTurns(other), u.ID, conv, "from elsewhere"), 0)
	if other.rows != 61 {
		t.Errorf("a gateway new to the conversation read %d history rows, want 61", other.rows)
	}
	// Bob's conversation is not Carol's, held or not.
	carol := newUser(t, s, "carol")
	_, err := turns.Begin(testCtx(t), conversation.Request{UserID: carol.ID, ConversationID: conv, Model: "m",
		Messages: []sdk.Message{{Role: store.RoleUser, Content: "let me in"}}})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("another user's turn in a held conversation: %v, want ErrNotFound", err)
	}
}

// Turns of one conversation race on two gateways; whatever they held meanwhile, a
// turn afterwards on either gateway has the whole stored history for its prompt.
func TestTurnsRacingKeepTheHistoryWhole(t *testing.T) {
	s := openStore(t)
	u := newUser(t, s, "dave")
	gateways := []*conversation.Turns{conversation.NewTurns(s), conversation.NewTurns(s)}
	first := ask(t, gateways[0], u.ID, "", "hello")
	answer(t, first, "hi")
	conv := first.Conversation.ID
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 15 {
				// Not ask: t.Fatal is for the test's goroutine.
				turn, err := gateways[(w+i)%2].Begin(testCtx(t), conversation.Request{UserID: u.ID, ConversationID: conv, Model: "m",
					Messages: []sdk.Message{{Role: store.RoleUser, Content: fmt.Sprintf("worker %d question %d", w, i)}}})
				if err != nil {
					t.Error(err)
					return
				}
				if last := turn.Prompt[len(turn.Prompt)-1]; last.Content != fmt.Sprintf("worker %d question %d", w, i) {
					t.Errorf("worker %d turn %d: the prompt ends with %q", w, i, last.Content)
				}
				answer(t, turn, fmt.Sprintf("answer %d.%d", w, i))
			}
		})
	}
	wg.Wait()
	for i, g := range gateways {
		turn := ask(t, g, u.ID, conv, "and now?")
		wantPrompt(t, s, u.ID, turn, 0)
		if want := 2 + 2*6*15 + 2*i + 1; len(turn.Prompt) != want {
			t.Errorf("gateway %d: the last prompt has %d messages, want %d", i, len(turn.Prompt), want)
		}
		answer(t, turn, "later")
	}
}

// Retrieved sources the prompt carries take their room from the history's budget: the
// oldest turns give way, and history and sources together fit.
func TestTurnsFitTheHistoryBesideTheContext(t *testing.T) {
	s := openStore(t)
	u := newUser(t, s, "erin")
	turns := conversation.NewTurns(s)
	sentence := strings.Repeat("a sentence of the conversation so far ", 3) // ~40 tokens
	var conv string
	for i := range 6 {
		turn := ask(t, turns, u.ID, conv, fmt.Sprint(i, sentence))
		conv = turn.Conversation.ID
		answer(t, turn, sentence)
	}
	const contextLength, maxTokens = 1024, 256
	budget := conversation.Budget(contextLength, maxTokens)      // history and sources
	sources := strings.Repeat("retrieved text of a source ", 60) // ~540 tokens
	size := func(msgs []sdk.Message) (n int) {
		for _, m := range msgs {
			n += tokens.Estimate(m.Content) + 8
		}
		return n
	}
	var prompts [2][]sdk.Message
	for i, context := range []string{"", sources} {
		turn, err := turns.Begin(testCtx(t), conversation.Request{UserID: u.ID, ConversationID: conv, Model: "m",
			Messages:      []sdk.Message{{Role: store.RoleUser, Content: "and now?"}},
			ContextLength: contextLength, MaxTokens: maxTokens, Context: context})
		if err != nil {
			t.Fatal(err)
		}
		prompts[i] = turn.Prompt
		if got := size(turn.Prompt) + tokens.Estimate(context) + 8; context != "" && got > budget {
			t.Errorf("history and sources take %d tokens, budget %d", got, budget)
		}
		answer(t, turn, "")
	}
	if len(prompts[1]) >= len(prompts[0]) || len(prompts[1]) < 2 {
		t.Errorf("history of %d messages beside the sources, %d without: want fewer, and the last question", len(prompts[1]), len(prompts[0]))
	}
	if last := prompts[1][len(prompts[1])-1]; last.Content != "and now?" {
		t.Errorf("the prompt ends with %q", last.Content)
	}
}

// Postgres crashes with a turn not yet on disk (turns start without waiting for the
// disk): the turn is lost, and its seqs may be handed out again. What a gateway held
// of that turn is void: its next prompt is the stored history again, whatever another
// gateway stored meanwhile.
func TestTurnsAfterPostgresLostATurn(t *testing.T) {
	c := pgtest.NewCluster(t)
	s, err := store.Open(c.Database(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// WAL not flushed by a commit stays in memory for 10 s.
	if _, err := s.DB().ExecContext(testCtx(t), `ALTER SYSTEM SET wal_writer_delay = '10s'`); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	c.Start()
	u := newUser(t, s, "frank")
	gateways := []*conversation.Turns{conversation.NewTurns(s), conversation.NewTurns(s)}
	first := ask(t, gateways[0], u.ID, "", "q1")
	answer(t, first, "a1") // a synchronous commit: on disk
	conv := first.Conversation.ID
	lost := ask(t, gateways[0], u.ID, conv, "q2, lost in the crash")
	c.Crash()
	c.Start()

	other := ask(t, gateways[1], u.ID, conv, "q from the other gateway") // waits for the recovery
	answer(t, other, "its answer")
	msgs, err := s.ListMessages(testCtx(t), u.ID, conv)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(msgs, func(m store.Message) bool { return m.ID == lost.MessageID }) {
		t.Fatal("the crash did not lose the turn that was not on disk: the test proves nothing")
	}
	t.Logf("after the crash: %d messages stored", len(msgs))
	wantPrompt(t, s, u.ID, ask(t, gateways[0], u.ID, conv, "q3"), 0)
}

// An answer's tool calls, streamed as deltas, are stored whole with it; the next
// turn's prompt gives them back to the model with the tool results, whether the
// history comes from the store or from what the gateway holds. Calls of an answer
// that did not complete are not kept.
func TestToolCallsInTurns(t *testing.T) {
	s := openStore(t)
	u := newUser(t, s, "alice")
	for _, held := range []bool{true, false} {
		g := conversation.NewTurns(s)
		first := ask(t, g, u.ID, "", "weather?")
		conv := first.Conversation.ID
		first.Observe(sdk.Event{Text: "Let me look."})
		first.Observe(sdk.Event{ToolCalls: []sdk.ToolCallDelta{{Index: 0, ID: "call_a", Name: "get_weather"}}})
		first.Observe(sdk.Event{ToolCalls: []sdk.ToolCallDelta{{Index: 0, Arguments: `{"city":`}, {Index: 1, ID: "call_b", Name: "get_time", Arguments: "{}"}}})
		first.Observe(sdk.Event{ToolCalls: []sdk.ToolCallDelta{{Index: 0, Arguments: `"Paris"}`}}})
		if _, err := first.Finish(conversation.Outcome{Status: store.StatusComplete, FinishReason: "tool_calls"}); err != nil {
			t.Fatal(err)
		}
		if !held {
			g = conversation.NewTurns(s) // a gateway that holds nothing: the history from the store
		}
		next, err := g.Begin(testCtx(t), conversation.Request{UserID: u.ID, ConversationID: conv, Model: "m", Messages: []sdk.Message{
			{Role: "tool", ToolCallID: "call_a", Content: "sunny"}, {Role: "tool", ToolCallID: "call_b", Content: "noon"}}})
		if err != nil {
			t.Fatal(err)
		}
		want := []sdk.Message{
			{Role: "user", Content: "weather?"},
			{Role: "assistant", Content: "Let me look.", ToolCalls: []sdk.ToolCall{{ID: "call_a", Name: "get_weather", Arguments: `{"city":"Paris"}`}, {ID: "call_b", Name: "get_time", Arguments: "{}"}}},
			{Role: "tool", ToolCallID: "call_a", Content: "sunny"},
			{Role: "tool", ToolCallID: "call_b", Content: "noon"},
		}
		if !reflect.DeepEqual(next.Prompt, want) {
			t.Fatalf("held %v: prompt\n%+v\nwant\n%+v", held, next.Prompt, want)
		}
		// Cut short: the half-made call is not kept; the text is.
		next.Observe(sdk.Event{Text: "Also", ToolCalls: []sdk.ToolCallDelta{{Index: 0, ID: "call_c", Name: "get_weather", Arguments: `{"ci`}}})
		m, err := next.Finish(conversation.Outcome{Status: store.StatusCancelled, FinishReason: "cancelled"})
		if err != nil || m.ToolCalls != nil || m.Content != "Also" {
			t.Fatalf("a cancelled answer's calls: %+v, %v", m, err)
		}
	}
}
