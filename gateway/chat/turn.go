package chat

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/conversation"
	"github.com/ragway/ragway/gateway/metrics"
	"github.com/ragway/ragway/gateway/oai"
	"github.com/ragway/ragway/gateway/rag"
	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/tokens"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Backends is what a turn needs of the workers (package workers implements it).
type Backends interface {
	// Generate runs req on model, calling emit with delta events and then one final
	// event; if emit returns an error Generate stops and returns it. adm, when not
	// nil, is admitted once a replica has taken the request, before it is sent: its
	// Admit may change the request, and its error ends Generate; its Key tells the
	// request apart for the poison quarantine (workers.Manager.Generate).
	Generate(ctx context.Context, model string, req sdk.GenerateRequest, adm *workers.Admission, emit func(sdk.Event) error) error
}

// Accountant accounts for the tokens of served turns: the key's tokens-per-minute
// limit and its usage rows (package usage implements it).
type Accountant interface {
	Account(p auth.Principal, route, model string, promptTokens, completionTokens int)
}

// DefaultTimeout bounds a turn when Service.Timeout is not set.
const DefaultTimeout = 10 * time.Minute

// Service runs chat turns for every transport.
type Service struct {
	Backends Backends
	// Turns stores conversations; nil: no stored turns (a gateway without a
	// database).
	Turns *conversation.Turns
	// RAG grounds chats in knowledge bases; nil: no retrieval.
	RAG *rag.Service
	// Usage accounts for every admitted turn's tokens; may be nil.
	Usage Accountant
	// Metrics may be nil.
	Metrics *metrics.Metrics
	// Timeout bounds a turn, from Run to its end (default DefaultTimeout).
	Timeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Stores reports whether the service keeps conversations (stored turns are possible).
func (s *Service) Stores() bool { return s.Turns != nil }

// Grounds reports whether the service can ground chats in knowledge bases.
func (s *Service) Grounds() bool { return s.RAG != nil }

// Request is a chat turn as a transport decoded it.
type Request struct {
	// Principal is the caller: its user owns the conversation and the knowledge
	// base, its key is accounted.
	Principal auth.Principal
	// Route names the transport's route in usage rows.
	Route string
	// Arrived is when the request arrived (the first-token latency's start).
	Arrived time.Time
	// Model is the model that answers, resolved by the transport.
	Model workers.ModelStatus
	// RequestID is passed to the backend (with "-i" for choice i of several).
	RequestID string
	// Messages are a chat's messages: the whole history of a stateless chat, or the
	// new messages of a stored turn. Prompts, instead, are raw completion prompts,
	// each with N choices (choice p*N+k is choice k of prompt p).
	Messages []sdk.Message
	Prompts  []string
	// N is the number of choices (per prompt), at least 1.
	N        int
	Sampling sdk.Sampling
	// Stored makes the turn part of a stored conversation: ConversationID ("" for a
	// new one) gets the messages and then the answer. A stored turn has one choice.
	Stored         bool
	ConversationID string
	// Regenerate, the id of ConversationID's last answer (a stored turn with no
	// messages), answers its question again; the old answer is superseded when the
	// new one completes.
	Regenerate string
	// RAG, when set, grounds the answer in a knowledge base.
	RAG *RAGParams
	// ResponseFormat, when set, is the form every choice's output must have; a
	// model whose backend does not honour it is refused (400).
	ResponseFormat *sdk.ResponseFormat
	// Tools the model may call, and whether and which it calls; a model whose
	// backend does not take tools is refused (400), as are tool calls and results in
	// Messages.
	Tools             []sdk.Tool
	ToolChoice        *sdk.ToolChoice
	ParallelToolCalls *bool
}

// hasToolMessages reports whether msgs hold tool calls or tool results.
func hasToolMessages(msgs []sdk.Message) bool {
	for _, m := range msgs {
		if len(m.ToolCalls) > 0 || m.ToolCallID != "" {
			return true
		}
	}
	return false
}

// Turn is one chat turn: Service.Turn makes it, Run runs it once.
type Turn struct {
	svc *Service
	r   Request
	// reqs are the choices' generation requests; group[i] is the prompt of choice i
	// (prompt tokens count once per prompt).
	reqs  []sdk.GenerateRequest
	group []int

	// mu orders the events: emit is called under it, one event at a time.
	mu        sync.Mutex
	emit      func(Event) error
	emitErr   error // emit failed: the client is gone
	grounding *Grounding
	stored    *conversation.Turn
	started   bool // EventStart was emitted (a replica took the turn)
	firstTok  bool
	finals    []*sdk.Event // each choice's final event (nil: not yet)
	open      int          // choices not finished
	last      int          // the choice whose Finish waits for the stored end
	// prompt[g] is the prompt tokens of prompt g the backend reported (early, with
	// its first events, or in the final usage); generated counts tokens produced.
	prompt    []int
	cached    []int
	generated int
	// ended: the terminal event was emitted.
	ended bool
}

// Turn returns the turn of r, to Run.
func (s *Service) Turn(r Request) *Turn {
	r.N = max(r.N, 1)
	t := &Turn{svc: s, r: r}
	if r.Prompts != nil {
		for p, prompt := range r.Prompts {
			for k := range r.N {
				t.addChoice(sdk.GenerateRequest{Prompt: prompt, Sampling: r.Sampling}, k, p)
			}
		}
	} else {
		for k := range r.N {
			t.addChoice(sdk.GenerateRequest{Messages: r.Messages, Sampling: r.Sampling, ResponseFormat: r.ResponseFormat,
				Tools: r.Tools, ToolChoice: r.ToolChoice, ParallelToolCalls: r.ParallelToolCalls}, k, 0)
		}
	}
	n := len(t.reqs)
	for i := range t.reqs {
		t.reqs[i].RequestID = choiceRequestID(r.RequestID, i, n)
	}
	t.finals, t.open = make([]*sdk.Event, n), n
	t.prompt = make([]int, max(len(r.Prompts), 1))
	t.cached = make([]int, len(t.prompt))
	return t
}

// addChoice adds choice k of prompt p: choices after the first of a prompt with a
// seed get the seed plus k, so that they differ yet repeat.
func (t *Turn) addChoice(req sdk.GenerateRequest, k, p int) {
	if s := req.Sampling.Seed; s != nil && k > 0 {
		seed := *s + int64(k)
		req.Sampling.Seed = &seed
	}
	t.reqs = append(t.reqs, req)
	t.group = append(t.group, p)
}

// choiceRequestID is the RequestID passed to the backend for choice i of n.
func choiceRequestID(id string, i, n int) string {
	if n == 1 {
		return id
	}
	return fmt.Sprintf("%s-%d", id, i)
}

// Usage is the turn's token count so far: the prompt tokens the backends reported
// (they report them once the prompt is evaluated, before the first token) and the
// tokens generated. It is what a transport reports for a turn it ends before Run does.
func (t *Turn) Usage() sdk.Usage {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.usageLocked()
}

func (t *Turn) usageLocked() sdk.Usage {
	var u sdk.Usage
	for g, p := range t.prompt {
		u.PromptTokens += p
		u.CachedTokens += t.cached[g]
	}
	for _, f := range t.finals {
		if f != nil && f.Usage != nil {
			u.CompletionTokens += f.Usage.CompletionTokens
		}
	}
	if u.CompletionTokens == 0 {
		// The backends reported no completion count (a failed or cancelled
		// generation): what they were seen to produce.
		u.CompletionTokens = t.generated
	}
	return u
}

// isFirstOfGroup reports whether choice i is the first of its prompt.
func (t *Turn) isFirstOfGroup(i int) bool { return i == 0 || t.group[i-1] != t.group[i] }

// Run runs the turn: it grounds it in its knowledge base, runs its choices
// concurrently, begins its stored part once a replica took it and ends it before the
// end is told, accounts its tokens, and tells emit what happens, in order, one event
// at a time (see Kind). Run ends with a terminal event unless emit failed; an emit
// error (the client is gone) cancels the turn, as does ctx's end.
func (t *Turn) Run(ctx context.Context, emit func(Event) error) {
	s := t.svc
	t.emit = emit
	defer func() {
		// A panic of the turn itself (not of a backend: generate catches those) is
		// the gateway's fault: the turn ends with a 500, the gateway goes on.
		if r := recover(); r != nil {
			s.log().Error("panic in a chat turn", "model", t.r.Model.Name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			if t.mu.TryLock() { // else the panicking code held it: nothing can be told
				_ = t.emitLocked(Event{Kind: EventError, Err: oai.Internal()})
				t.mu.Unlock()
			}
		}
	}()
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := &t.r
	if r.ResponseFormat != nil && r.Model.Lacks(sdk.CapabilityStructuredOutput) {
		t.fail(oai.Unsupported("response_format", "the model '%s' (backend %s) does not honour 'response_format'", r.Model.Name, r.Model.Backend))
		return
	}
	if (len(r.Tools) > 0 || hasToolMessages(r.Messages)) && r.Model.Lacks(sdk.CapabilityTools) {
		param := "tools"
		if len(r.Tools) == 0 {
			param = "messages"
		}
		t.fail(oai.Unsupported(param, "the model '%s' (backend %s) does not take tools, tool calls or tool results", r.Model.Name, r.Model.Backend))
		return
	}
	if r.Stored && s.Turns == nil {
		t.fail(oai.Unsupported("conversation_id", "this gateway has no database: 'conversation_id' is not available"))
		return
	}
	question := rag.Question(r.Messages)
	switch {
	case r.Regenerate != "":
		// The question answered again is the stored one; a conversation that is not
		// the user's, or an answer it does not have, is told before the turn waits for
		// a replica.
		q, err := s.Turns.Question(gctx, r.Principal.UserID, r.ConversationID, r.Regenerate)
		if err == nil && q == "" {
			err = &store.FieldError{Field: "regenerate", Reason: "the conversation has no question to answer again"}
		}
		if err != nil {
			t.fail(s.beginError(err, r.ConversationID))
			return
		}
		question = q
	case r.Stored:
		// What can be told without the database is told before the turn waits for a
		// replica.
		if err := conversation.CheckTurn(r.Messages); err != nil {
			t.fail(s.beginError(err, r.ConversationID))
			return
		}
	}
	var sourcesPrompt string
	if r.RAG != nil {
		if e := CheckRAG(s.RAG != nil, *r.RAG); e != nil {
			t.fail(e)
			return
		}
		g, err := s.RAG.Ground(gctx, r.Principal.UserID, r.RAG.KnowledgeBase, question, r.RAG.TopK)
		if err != nil {
			t.fail(GroundError(err, r.RAG.KnowledgeBase))
			return
		}
		t.grounding = &g
		sourcesPrompt = rag.Context(g.Sources)
		if !r.Stored {
			for i := range t.reqs {
				t.reqs[i].Messages = rag.Augment(t.reqs[i].Messages, sourcesPrompt)
			}
		}
	}

	var (
		once     sync.Once
		admitErr error
		errMu    sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	adm := &workers.Admission{}
	adm.Admit = func(req *sdk.GenerateRequest) error {
		once.Do(func() { admitErr = t.admit(gctx, req, sourcesPrompt) })
		if admitErr == nil && t.r.Stored {
			req.Messages = t.reqs[0].Messages // the stored turn's prompt
			if adm.Conversation == "" && t.stored != nil {
				// A conversation begun: its next turn goes where this one went.
				adm.Conversation = t.r.Principal.UserID + "/" + t.stored.Conversation.ID
			}
		}
		return admitErr
	}
	if r.Stored {
		// The history Admit adds is the user's conversation's: the same new message in
		// another conversation is another request.
		adm.Key = r.Principal.UserID + "/" + cmp.Or(r.ConversationID, "new") + "/" + r.Regenerate
		if r.ConversationID != "" {
			adm.Conversation = r.Principal.UserID + "/" + strings.ToLower(r.ConversationID)
		}
	}
	runChoice := func(i int) {
		err := t.generate(gctx, i, adm)
		if err == nil {
			err = t.stopped(i)
		}
		if err != nil {
			errMu.Lock()
			if firstErr == nil {
				firstErr = err
				cancel() // the other choices stop
			}
			errMu.Unlock()
		}
	}
	if len(t.reqs) == 1 {
		runChoice(0)
	} else {
		for i := range t.reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					// As Run's own: a choice's goroutine must not end the gateway.
					if r := recover(); r != nil {
						s.log().Error("panic in a chat turn's choice", "model", t.r.Model.Name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
						errMu.Lock()
						if firstErr == nil {
							firstErr = oai.Internal()
							cancel()
						}
						errMu.Unlock()
					}
				}()
				runChoice(i)
			}()
		}
		wg.Wait()
	}
	t.end(ctx, firstErr)
}

// stopped ends choice i whose Generate returned without a final event: it stopped.
func (t *Turn) stopped(i int) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.finals[i] != nil {
		return nil
	}
	return t.onEventLocked(i, sdk.Event{FinishReason: sdk.FinishStop})
}

// admit runs when a replica took the turn's first choice: a stored turn is begun (its
// history fitted to what the sources leave of the model's context), then the turn
// starts (EventStart, EventSources).
func (t *Turn) admit(ctx context.Context, req *sdk.GenerateRequest, sourcesPrompt string) error {
	r := &t.r
	if err := ctx.Err(); err != nil {
		return err // cancelled as a replica took it: nothing is stored
	}
	if r.Stored {
		// Outside ctx's cancellation: once Postgres holds the turn, its end must be
		// stored too.
		st, err := t.svc.Turns.Begin(context.WithoutCancel(ctx), conversation.Request{
			UserID: r.Principal.UserID, ConversationID: r.ConversationID, Model: r.Model.Name, Messages: req.Messages,
			ContextLength: r.Model.ContextLength, MaxTokens: r.Sampling.MaxTokens, Context: sourcesPrompt,
			Regenerate: r.Regenerate,
		})
		if err != nil {
			return t.svc.beginError(err, r.ConversationID)
		}
		prompt := st.Prompt
		if t.grounding != nil {
			prompt = rag.Augment(prompt, sourcesPrompt)
			if len(t.grounding.Sources) > 0 {
				st.Sources, _ = json.Marshal(t.grounding.Sources)
			}
		}
		t.mu.Lock()
		t.stored = st
		t.reqs[0].Messages = prompt
		t.mu.Unlock()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.started = true
	start := Event{Kind: EventStart}
	if st := t.stored; st != nil {
		start.ConversationID, start.MessageID = st.Conversation.ID, st.MessageID
	}
	if err := t.emitLocked(start); err != nil {
		return err
	}
	if t.grounding != nil {
		return t.emitLocked(Event{Kind: EventSources, Grounding: t.grounding})
	}
	return nil
}

// generate runs choice i. Every event's text is cleaned as it comes out of the
// backend (oai.CleanEmit): what the client reads and what the stored turn keeps are
// the same text. A panic of the backend is an error, not the end of the gateway.
func (t *Turn) generate(ctx context.Context, i int, adm *workers.Admission) (err error) {
	defer func() {
		if r := recover(); r != nil {
			t.svc.log().Error("panic in Generate", "model", t.r.Model.Name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("backend panicked: %v", r)
		}
	}()
	return t.svc.Backends.Generate(ctx, t.r.Model.Name, t.reqs[i], adm, oai.CleanEmit(func(e sdk.Event) error {
		t.mu.Lock()
		defer t.mu.Unlock()
		return t.onEventLocked(i, e)
	}))
}

// onEventLocked handles an event of choice i: its tokens and text are counted and
// kept, and it is passed on as the turn's events. A final event with FinishReason
// error is the choice's error.
func (t *Turn) onEventLocked(i int, e sdk.Event) error {
	if t.finals[i] != nil {
		return nil // nothing of a choice after its end
	}
	t.generated += tokens.Of(e)
	if t.stored != nil {
		t.stored.Observe(e)
	}
	if e.Usage != nil && t.isFirstOfGroup(i) {
		t.prompt[t.group[i]], t.cached[t.group[i]] = e.Usage.PromptTokens, e.Usage.CachedTokens
	}
	if e.Text != "" && !t.firstTok {
		t.firstTok = true
		t.svc.Metrics.ObserveFirstToken(t.r.Model.Name, t.r.Arrived)
	}
	if e.Final() && e.FinishReason == sdk.FinishError {
		return oai.BackendFailed(e.Error)
	}
	if e.Text != "" || len(e.Logprobs) > 0 || len(e.ToolCalls) > 0 {
		if err := t.emitLocked(Event{Kind: EventDelta, Choice: i, Text: e.Text, Logprobs: e.Logprobs, ToolCalls: e.ToolCalls}); err != nil {
			return err
		}
	}
	if !e.Final() {
		return nil
	}
	if e.Usage == nil {
		e.Usage = &sdk.Usage{}
	}
	t.finals[i] = &e
	t.open--
	if t.open == 0 {
		// The last choice's Finish waits for the stored turn's end (Run's end).
		t.last = i
		return nil
	}
	return t.emitLocked(Event{Kind: EventFinish, Choice: i, FinishReason: e.FinishReason, Usage: *e.Usage})
}

// emitLocked passes ev on. Once emit failed (the client is gone, or the transport
// cancelled the turn) only the terminal event is still passed on: a transport may
// still have a client to tell how the turn ended.
func (t *Turn) emitLocked(ev Event) error {
	terminal := ev.Kind == EventDone || ev.Kind == EventError
	if t.ended || t.emitErr != nil && !terminal {
		return t.emitErr
	}
	t.ended = terminal
	err := t.emit(ev)
	if err != nil && t.emitErr == nil {
		t.emitErr = err
	}
	return err
}

// end ends the turn once its choices returned: err is the first choice's error.
// The stored turn is ended, the tokens accounted (for a turn a replica took), and
// then the client is told: the last Finish and Done, or the Error.
func (t *Turn) end(ctx context.Context, err error) {
	s := t.svc
	t.mu.Lock()
	defer t.mu.Unlock()
	finished := t.open == 0
	// Cancelled: the caller went away (ctx) or its client did (emit), before the
	// answer was whole. An answer generated whole is not cancelled by a client that
	// left after it.
	cancelled := !finished && (ctx.Err() != nil || t.emitErr != nil)
	if finished {
		err = nil
	}
	u := t.usageLocked()
	if t.started {
		s.Metrics.AddTokens(t.r.Model.Name, u.PromptTokens, u.CompletionTokens)
		if s.Usage != nil {
			s.Usage.Account(t.r.Principal, t.r.Route, t.r.Model.Name, u.PromptTokens, u.CompletionTokens)
		}
	}
	var notStored *oai.Error
	if t.stored != nil {
		// The turn's usage is stored however it ended: a cancelled or failed answer
		// cost its prompt too.
		final := sdk.Event{Usage: &u}
		if f := t.finals[0]; f != nil {
			final = *f
			final.Usage = &u
		}
		if ferr := t.stored.End(err, final, cancelled, Describe); ferr != nil {
			s.log().Warn("conversation turn not stored", "conversation", t.stored.Conversation.ID, "message", t.stored.MessageID, "error", ferr)
			notStored = NotStored(ferr)
		}
	}
	switch {
	case cancelled && !t.started:
		// Cancelled before a replica took it: nothing was generated or stored.
		_ = t.emitLocked(Event{Kind: EventError, Err: APIError(context.Canceled)})
	case cancelled:
		_ = t.emitLocked(Event{Kind: EventDone, FinishReason: sdk.FinishCancelled, Usage: u, Err: notStored})
	case err != nil:
		e := APIError(err)
		if e.Status >= http.StatusInternalServerError {
			s.log().Warn("chat failed", "model", t.r.Model.Name, "status", e.Status, "error", err)
		}
		_ = t.emitLocked(Event{Kind: EventError, Err: e})
	default:
		f := t.finals[t.last]
		_ = t.emitLocked(Event{Kind: EventFinish, Choice: t.last, FinishReason: f.FinishReason, Usage: *f.Usage})
		_ = t.emitLocked(Event{Kind: EventDone, Usage: u, Err: notStored})
	}
}

// fail ends a turn refused before it reached a backend: only its Error.
func (t *Turn) fail(e *oai.Error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	_ = t.emitLocked(Event{Kind: EventError, Err: e})
}

// beginError maps an error of beginning the stored turn of conversation id.
func (s *Service) beginError(err error, id string) *oai.Error {
	if errors.Is(err, store.ErrNotFound) {
		return oai.NotFound("conversation", id, "conversation_id")
	}
	e := APIError(err)
	if e.Code == oai.CodeInvalidValue && e.Param == "" {
		e.Param = "messages"
	}
	if e.Status >= http.StatusInternalServerError {
		s.log().Warn("conversation turn not started", "conversation", id, "error", err)
	}
	return e
}
