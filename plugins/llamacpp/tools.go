package main

// Tool calls: the syntax a model family writes them in, the prompt that tells a model
// its tools, the grammar that makes a required (or named) call always valid, and the
// parsing of a model's answer into calls. See docs/tools.md.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/santhosh-tekuri/jsonschema/v6"

	sdk "github.com/ragway/ragway/plugin-sdk"
	"github.com/ragway/ragway/plugin-sdk/gbnf"
)

// toolSyntax is how a model family writes its tool calls.
type toolSyntax struct {
	name string
	// prefix opens the calls ("" for none), sep separates two calls, suffix closes
	// them; each call is an object {name, argsKey: {...}} (with an id of 9 letters
	// and digits when withID).
	prefix, sep, suffix string
	// callOpen and callClose wrap each call (Hermes's <tool_call> tags).
	callOpen, callClose string
	argsKey             string
	withID              bool
	// single: the family calls one tool at a time.
	single bool
}

var (
	// Hermes and Qwen: <tool_call>{"name": …, "arguments": …}</tool_call>, one per call.
	hermesSyntax = toolSyntax{name: "hermes", sep: "\n", callOpen: "<tool_call>\n", callClose: "\n</tool_call>", argsKey: "arguments"}
	// Llama 3.x: a JSON object {"name": …, "parameters": …}, one call.
	llama3Syntax = toolSyntax{name: "llama3", argsKey: "parameters", single: true}
	// Mistral: [TOOL_CALLS][{"name": …, "arguments": …, "id": …}, …].
	mistralSyntax = toolSyntax{name: "mistral", prefix: "[TOOL_CALLS][", sep: ",", suffix: "]", argsKey: "arguments", withID: true}
	// Any other template (one that does not render tools): the tools are described in
	// a system message, and the answer is {"tool_calls": [{"name": …, "arguments": …}]}.
	genericSyntax = toolSyntax{name: "generic", prefix: `{"tool_calls":[`, sep: ",", suffix: "]}", argsKey: "arguments"}
)

// toolSyntaxOf picks the syntax of a template's family from its text; generic says
// the template does not render tools (they are described in a system message).
func toolSyntaxOf(src string) (s toolSyntax, generic bool) {
	switch {
	case !strings.Contains(src, "tools"):
		return genericSyntax, true
	case strings.Contains(src, "<tool_call>"):
		return hermesSyntax, false
	case strings.Contains(src, "[TOOL_CALLS]"):
		return mistralSyntax, false
	case strings.Contains(src, "<|python_tag|>") || strings.Contains(src, `"parameters": `):
		return llama3Syntax, false
	}
	return genericSyntax, true
}

// maxParallelCalls bounds the calls of one constrained answer: a model that would
// call tools without end stops there.
const maxParallelCalls = 16

// callGrammar is the grammar of an answer that calls tools, from any point of its
// lead (what every such answer begins with: the syntax's prefix, a call's opening and
// {"name":"): a call whose lead is written already goes on under after(written).
type callGrammar struct {
	lead string
	// rules are the grammar's rules but root; rest is the rule of what follows the
	// lead (the first call's name and arguments, then the other calls).
	rules, rest string
}

// after is the grammar of the answer's rest once written (a prefix of the lead) is
// written.
func (g callGrammar) after(written string) string {
	root := g.rest
	if lead := g.lead[len(written):]; lead != "" {
		root = gbnf.Literal(lead) + " " + root
	}
	return "root ::= " + root + "\n" + g.rules
}

// toolGrammar is the grammar of an answer that calls tools as choice asks (required:
// any of them; function: that one), each call's arguments valid for its schema.
func toolGrammar(s toolSyntax, tools []sdk.Tool, choice *sdk.ToolChoice, parallel bool) (string, error) {
	g, err := newCallGrammar(s, tools, choice, parallel)
	if err != nil {
		return "", err
	}
	return g.after(""), nil
}

func newCallGrammar(s toolSyntax, tools []sdk.Tool, choice *sdk.ToolChoice, parallel bool) (callGrammar, error) {
	var b gbnf.Builder
	opening := s.callOpen + `{"name":"`
	// Each function's call after its opening: its name, its arguments.
	var calls []string
	for _, t := range tools {
		if choice.Mode == sdk.ToolChoiceFunction && t.Name != choice.Name {
			continue
		}
		schema, err := objectSchema(t.Parameters)
		if err != nil {
			return callGrammar{}, fmt.Errorf("tools: function %q: %w", t.Name, err)
		}
		args, err := b.Schema(schema)
		if err != nil {
			return callGrammar{}, fmt.Errorf("tools: function %q: %w", t.Name, err)
		}
		body := gbnf.Literal(strings.TrimPrefix(jsonText(t.Name), `"`)+`,"`+s.argsKey+`":`) + " " + args
		if s.withID {
			body += ` "," ` + gbnf.Literal(`"id":"`) + ` [a-zA-Z0-9]{9} ` + gbnf.Literal(`"`)
		}
		body += " " + gbnf.Literal("}"+s.callClose)
		r, err := b.Rule(body)
		if err != nil {
			return callGrammar{}, err
		}
		calls = append(calls, r)
	}
	if len(calls) == 0 {
		return callGrammar{}, fmt.Errorf("tool_choice: no function %q among the tools", choice.Name)
	}
	named, err := b.Rule(strings.Join(calls, " | "))
	if err != nil {
		return callGrammar{}, err
	}
	body := named
	if parallel && !s.single {
		call, err := b.Rule(gbnf.Literal(opening) + " " + named)
		if err != nil {
			return callGrammar{}, err
		}
		body += fmt.Sprintf(" ( %s %s ){0,%d}", gbnf.Literal(s.sep), call, maxParallelCalls-1)
	}
	if s.suffix != "" {
		body += " " + gbnf.Literal(s.suffix)
	}
	rest, err := b.Rule(body)
	if err != nil {
		return callGrammar{}, err
	}
	rules := strings.TrimPrefix(b.Grammar(rest), "root ::= "+rest+"\n")
	return callGrammar{lead: s.prefix + opening, rules: rules, rest: rest}, nil
}

// lazyCalls is how an answer that may call tools (tool_choice auto) is held to the
// calls' grammar once it is known to be calls: when its text (spaces, a python tag
// and a <think> block aside) begins with the syntax's trigger and is still the lead
// of the calls' grammar, the rest of the answer is decoded under that grammar, so
// its calls always parse and their arguments validate. An answer that strays from
// the lead first (spaces inside, another order) is decoded freely and checked at its
// end (toolOutput).
type lazyCalls struct {
	trigger string
	grammar callGrammar
}

// lazyTrigger is what a syntax's answer of calls begins with, beyond doubt ("" for
// Llama 3's, whose calls begin as a plain JSON answer may: {"name":…).
func lazyTrigger(s toolSyntax) string {
	switch {
	case s.callOpen != "":
		return strings.TrimSpace(s.callOpen)
	case s.prefix != "":
		return strings.TrimSuffix(s.prefix, "[")
	}
	return ""
}

// Lazy decisions.
const (
	lazyWait    = iota // the answer may still become calls
	lazyEngage         // decode the rest under the grammar (lazyCalls.decide's)
	lazyDecline        // decode freely
)

// decide looks at the answer so far: it returns lazyEngage with the grammar of the
// rest, lazyWait, or lazyDecline.
func (l *lazyCalls) decide(answer string) (int, string) {
	start, thinking := answerStart(answer)
	switch {
	case thinking || strings.HasPrefix(l.trigger, start) && len(start) < len(l.trigger):
		return lazyWait, ""
	case strings.HasPrefix(start, l.trigger) && strings.HasPrefix(l.grammar.lead, start):
		return lazyEngage, l.grammar.after(start)
	}
	return lazyDecline, ""
}

// objectSchema is a function's parameters as a schema of objects: none is any
// object, one without a type is given "object"; another type is refused (a call's
// arguments are an object).
func objectSchema(params []byte) ([]byte, error) {
	if len(bytes.TrimSpace(params)) == 0 {
		return []byte(`{"type":"object"}`), nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(params, &m); err != nil {
		return nil, fmt.Errorf("the parameters are not a JSON Schema object: %w", err)
	}
	if t, ok := m["type"]; ok {
		if string(bytes.TrimSpace(t)) != `"object"` {
			return nil, errors.New(`the parameters' schema must have "type": "object"`)
		}
		return params, nil
	}
	m["type"] = json.RawMessage(`"object"`)
	return json.Marshal(m)
}

func jsonText(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// parseToolCalls reads the calls of an answer written in syntax s, or reports that
// it is not (only) calls. Spaces between the syntax's parts are allowed; Mistral's
// [TOOL_CALLS] may be missing (a control token a client may not see).
func parseToolCalls(s toolSyntax, text string) ([]sdk.ToolCall, bool) {
	rest := strings.TrimPrefix(strings.TrimSpace(text), "<|python_tag|>")
	if s.name == genericSyntax.name {
		return parseGenericCalls(rest)
	}
	cut := func(marker string) bool {
		rest = strings.TrimSpace(rest)
		marker = strings.TrimSpace(marker)
		if marker == "" {
			return true
		}
		r, ok := strings.CutPrefix(rest, marker)
		if ok {
			rest = r
		}
		return ok
	}
	if !cut(s.prefix) {
		if s.withID && strings.HasPrefix(strings.TrimSpace(rest), "[") {
			rest = strings.TrimPrefix(strings.TrimSpace(rest), "[")
		} else {
			return nil, false
		}
	}
	var calls []sdk.ToolCall
	afterSep := false // a separator was read: a call must follow
	for {
		if s.callOpen != "" && !cut(s.callOpen) {
			if afterSep {
				return nil, false
			}
			break
		}
		rest = strings.TrimSpace(rest)
		if !strings.HasPrefix(rest, "{") {
			if afterSep {
				return nil, false
			}
			break
		}
		dec := json.NewDecoder(strings.NewReader(rest))
		var raw map[string]json.RawMessage
		if dec.Decode(&raw) != nil {
			return nil, false
		}
		call, ok := toolCallOf(raw, s.argsKey)
		if !ok {
			return nil, false
		}
		calls = append(calls, call)
		rest = rest[dec.InputOffset():]
		if !cut(s.callClose) {
			return nil, false
		}
		if strings.TrimSpace(s.sep) != "" {
			if !cut(s.sep) {
				break
			}
			afterSep = true
		} else if s.callOpen == "" {
			break
		}
	}
	if !cut(s.suffix) || strings.TrimSpace(rest) != "" || len(calls) == 0 || s.single && len(calls) > 1 {
		return nil, false
	}
	return calls, true
}

// parseGenericCalls reads {"tool_calls": [{"name", "arguments"}, …]} and nothing
// else.
func parseGenericCalls(text string) ([]sdk.ToolCall, bool) {
	dec := json.NewDecoder(strings.NewReader(text))
	var v struct {
		ToolCalls []map[string]json.RawMessage `json:"tool_calls"`
	}
	dec.DisallowUnknownFields()
	if dec.Decode(&v) != nil || strings.TrimSpace(text[dec.InputOffset():]) != "" || len(v.ToolCalls) == 0 {
		return nil, false
	}
	calls := make([]sdk.ToolCall, 0, len(v.ToolCalls))
	for _, raw := range v.ToolCalls {
		c, ok := toolCallOf(raw, "arguments")
		if !ok {
			return nil, false
		}
		calls = append(calls, c)
	}
	return calls, true
}

// toolCallOf reads one call object: its name, its arguments (an object, under
// argsKey or "arguments"), and its id if it has one.
func toolCallOf(raw map[string]json.RawMessage, argsKey string) (sdk.ToolCall, bool) {
	var name string
	if json.Unmarshal(raw["name"], &name) != nil || name == "" {
		return sdk.ToolCall{}, false
	}
	args := raw[argsKey]
	if len(args) == 0 {
		args = raw["arguments"]
	}
	var buf bytes.Buffer
	if len(args) == 0 || json.Compact(&buf, args) != nil || buf.Bytes()[0] != '{' {
		return sdk.ToolCall{}, false
	}
	call := sdk.ToolCall{Name: name, Arguments: buf.String()}
	var id string
	if json.Unmarshal(raw["id"], &id) == nil {
		call.ID = id
	}
	return call, true
}

// newCallID is an id for a call the model did not name: "call_" and 24 letters and
// digits, or, for a syntax whose ids are 9 letters and digits (Mistral's), that.
func newCallID(s toolSyntax) string {
	n, prefix := 24, "call_"
	if s.withID {
		n, prefix = 9, ""
	}
	return prefix + randomAlnum(n)
}

func randomAlnum(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = chars[int(b[i])%len(chars)]
	}
	return string(b)
}

// mistralID is the 9 letters and digits a Mistral template takes for call id: the
// id itself when it is such, else a digest of it (the same id, the same digest).
func mistralID(id string) string {
	if len(id) == 9 && strings.IndexFunc(id, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	}) < 0 {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])[:9]
}

// toolsPrompt is the system message that describes tools to a model whose template
// does not render them (the generic syntax).
func toolsPrompt(tools []sdk.Tool) string {
	var b strings.Builder
	b.WriteString("You can call these functions (JSON Schema of their arguments):\n")
	for _, t := range tools {
		params := string(t.Parameters)
		if strings.TrimSpace(params) == "" {
			params = `{"type": "object"}`
		}
		fmt.Fprintf(&b, "- %s: %s\n  arguments: %s\n", t.Name, t.Description, params)
	}
	b.WriteString(`To call functions, answer only with {"tool_calls": [{"name": <function name>, "arguments": <arguments object>}]}.`)
	return b.String()
}

// toolValues are the tools as a template sees them: OpenAI's shape, the parameters
// an ordered dict.
func toolValues(tools []sdk.Tool) ([]any, error) {
	out := make([]any, 0, len(tools))
	for _, t := range tools {
		params := t.Parameters
		if len(bytes.TrimSpace(params)) == 0 {
			params = []byte(`{"type": "object", "properties": {}}`)
		}
		pv, err := jsonValue(params)
		if err != nil {
			return nil, fmt.Errorf("tools: function %q: parameters: %w", t.Name, err)
		}
		fn := orderedDictOf("name", t.Name, "description", t.Description, "parameters", pv)
		out = append(out, orderedDictOf("type", "function", "function", fn))
	}
	return out, nil
}

// orderedDictOf is a template dict of keys and values, in order.
func orderedDictOf(kv ...any) *exec.Dict {
	d := exec.NewDict()
	for i := 0; i+1 < len(kv); i += 2 {
		d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(kv[i]), Value: exec.AsValue(kv[i+1])})
	}
	return d
}

// toolOutput turns a generation's events into what the client gets when tools may be
// called: with a required (or named) call, the whole answer is calls; with auto, an
// answer that opens as the model's calls open (after a <think> block, if any) is
// held until its end and given as calls if it parses as calls of the tools given, as
// text if not (nor if a call's arguments do not validate against its function's
// schema); any other answer streams as text. While an answer is held, its
// prompt usage still goes out at once (an answer cut short is accounted).
type toolOutput struct {
	syntax      toolSyntax
	constrained bool
	names       []string // the tools' names
	// valid reports whether a call's arguments validate against its function's
	// schema (nil: not checked).
	valid    func(sdk.ToolCall) bool
	parallel bool
	emit     func(sdk.Event) error
	// engaged reports whether the engine put the rest of a held answer under the
	// calls' grammar (lazyCalls; nil: never): its calls then stream as they are
	// decoded, as a required answer's do.
	engaged func() bool

	decided bool // auto: whether the answer is text (passing through) or held
	thought int  // how much of what is held is a <think> block known to be open
	holding bool
	calls   *callScanner // constrained: the calls being decoded
	held    strings.Builder
	tokens  int
	lps     []sdk.TokenLogprob
}

// opening is how an answer of calls starts, spaces aside.
func (o *toolOutput) opening() []string {
	switch {
	case o.syntax.name == genericSyntax.name, o.syntax.prefix == "" && o.syntax.callOpen == "":
		return []string{"{"}
	case o.syntax.withID:
		return []string{strings.TrimSpace(o.syntax.prefix), "[{"}
	}
	return []string{strings.TrimSpace(o.syntax.prefix + o.syntax.callOpen)}
}

// stillThinking reports whether answer is a <think> block not yet closed, looking
// only at what came after *scanned (then moved to the end): a long block is read
// once, not at every token.
func stillThinking(answer string, scanned *int) bool {
	if !strings.HasPrefix(strings.TrimLeft(answer, " \t\r\n"), "<think>") ||
		strings.Contains(answer[max(*scanned-len("</think>"), 0):], "</think>") {
		return false
	}
	*scanned = len(answer)
	return true
}

// answerStart is the held text without leading spaces, a python tag, and a whole
// <think> block; think says a <think> block is still open.
func answerStart(held string) (start string, think bool) {
	start = strings.TrimPrefix(strings.TrimLeft(held, " \t\r\n"), "<|python_tag|>")
	if rest, ok := strings.CutPrefix(start, "<think>"); ok {
		_, after, closed := strings.Cut(rest, "</think>")
		if !closed {
			return "", true
		}
		start = strings.TrimLeft(after, " \t\r\n")
	} else if strings.HasPrefix("<think>", start) && start != "" {
		return "", true // perhaps the start of one
	}
	return start, false
}

// thinkOf splits a held answer into its leading <think> block ("" for none), given
// as text, and the rest's start (answerStart).
func thinkOf(held string) (think, start string) {
	start, _ = answerStart(held)
	if start != strings.TrimSpace(held) {
		if i := strings.Index(held, "</think>"); i >= 0 {
			think = held[:i+len("</think>")]
		}
	}
	return think, start
}

func (o *toolOutput) event(e sdk.Event) error {
	if !o.constrained && o.decided && !o.holding {
		return o.emit(e)
	}
	if o.constrained {
		return o.streamCalls(e)
	}
	o.held.WriteString(e.Text)
	o.tokens += e.Tokens
	o.lps = append(o.lps, e.Logprobs...)
	if e.Usage != nil && !e.Final() {
		// The prompt's cost, told now.
		if err := o.emit(sdk.Event{Usage: e.Usage}); err != nil {
			return err
		}
	}
	if !o.constrained && !o.decided && !stillThinking(o.held.String(), &o.thought) {
		start, thinking := answerStart(o.held.String())
		if !thinking {
			opens, could := false, false
			for _, open := range o.opening() {
				opens = opens || len(start) >= len(open) && strings.HasPrefix(start, open)
				could = could || strings.HasPrefix(open, start)
			}
			switch {
			case opens:
				o.decided, o.holding = true, true
			case !could:
				// Text: what was held goes now, and the rest as it comes.
				o.decided = true
				return o.flush(e)
			}
		}
	}
	if o.holding && o.engaged != nil && o.engaged() {
		return o.stream(e)
	}
	if !e.Final() {
		return nil
	}
	return o.finish(e)
}

// stream turns a held answer whose rest the calls' grammar holds into a required
// one: what came before the calls (a <think> block) goes out as text, the calls so
// far as deltas, and the rest as it is decoded (streamCalls).
func (o *toolOutput) stream(e sdk.Event) error {
	think, start := thinkOf(o.held.String())
	if think != "" {
		if err := o.emit(sdk.Event{Text: think}); err != nil {
			return err
		}
	}
	o.constrained, o.holding = true, false
	rest := sdk.Event{Text: start, Tokens: o.tokens, Logprobs: o.lps, FinishReason: e.FinishReason, Error: e.Error}
	if e.Final() {
		rest.Usage = e.Usage // (the prompt's usage went out already)
	}
	o.held.Reset()
	o.tokens, o.lps = 0, nil
	return o.streamCalls(rest)
}

// flush gives what was held as text with event e's end (if it is the final one).
func (o *toolOutput) flush(e sdk.Event) error {
	out := sdk.Event{Text: o.held.String(), Tokens: o.tokens, Logprobs: o.lps, FinishReason: e.FinishReason, Error: e.Error}
	if e.Final() {
		out.Usage = e.Usage
	}
	o.held.Reset()
	o.tokens, o.lps = 0, nil
	o.holding = false
	return o.emit(out)
}

// finish ends an answer that was held: as calls if it parses as calls of the tools
// given, else as text.
func (o *toolOutput) finish(final sdk.Event) error {
	if final.FinishReason != sdk.FinishStop {
		return o.flush(final)
	}
	held := o.held.String()
	think, _ := thinkOf(held)
	calls, ok := parseToolCalls(o.syntax, strings.TrimPrefix(held, think))
	for _, c := range calls {
		ok = ok && slices.Contains(o.names, c.Name) && (o.valid == nil || o.valid(c))
	}
	if !ok {
		return o.flush(final)
	}
	if !o.parallel {
		calls = calls[:1]
	}
	deltas := make([]sdk.ToolCallDelta, len(calls))
	seen := map[string]bool{}
	for i, c := range calls {
		id := c.ID
		if id == "" || seen[id] || o.syntax.withID && mistralID(id) != id {
			id = newCallID(o.syntax)
		}
		seen[id] = true
		deltas[i] = sdk.ToolCallDelta{Index: i, ID: id, Name: c.Name, Arguments: c.Arguments}
	}
	if err := o.emit(sdk.Event{Text: think, ToolCalls: deltas, Tokens: o.tokens}); err != nil {
		return err
	}
	final.Text, final.Tokens, final.FinishReason = "", 0, sdk.FinishToolCalls
	return o.emit(final)
}

// noLoader loads no schema: a tool's schema is the client's, and what it refers to
// outside itself (a file of this host, a URL) is never read.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, errors.New("references outside the schema are not followed")
}

// argumentsValidator compiles the tools' parameter schemas into a check of a call's
// arguments; a schema that does not compile checks nothing of its calls (the grammar
// of a required call still holds them).
func argumentsValidator(tools []sdk.Tool) func(sdk.ToolCall) bool {
	schemas := map[string]*jsonschema.Schema{}
	for i, t := range tools {
		raw, err := objectSchema(t.Parameters)
		if err != nil {
			continue
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			continue
		}
		c := jsonschema.NewCompiler()
		c.UseLoader(noLoader{}) // (by default it reads files: a client's $ref would)
		url := fmt.Sprintf("tool%d.json", i)
		if c.AddResource(url, doc) != nil {
			continue
		}
		if s, err := c.Compile(url); err == nil {
			schemas[t.Name] = s
		}
	}
	return func(call sdk.ToolCall) bool {
		s := schemas[call.Name]
		if s == nil {
			return true
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(call.Arguments))
		return err == nil && s.Validate(v) == nil
	}
}

// streamCalls passes a required call's pieces on as they are decoded: the grammar
// writes them in a known shape (compact JSON in the family's syntax), so each call's
// name is known when its arguments start, and the arguments go out as they come.
func (o *toolOutput) streamCalls(e sdk.Event) error {
	if o.calls == nil {
		o.calls = &callScanner{syntax: o.syntax}
	}
	deltas := o.calls.push(e.Text)
	if len(deltas) > 0 || e.Tokens > 0 || e.Usage != nil && !e.Final() || len(e.Logprobs) > 0 {
		ev := sdk.Event{ToolCalls: deltas, Tokens: e.Tokens, Logprobs: e.Logprobs}
		if !e.Final() {
			ev.Usage = e.Usage
		}
		if err := o.emit(ev); err != nil {
			return err
		}
	}
	if !e.Final() {
		return nil
	}
	final := sdk.Event{FinishReason: e.FinishReason, Usage: e.Usage, Error: e.Error}
	if e.FinishReason == sdk.FinishStop && o.calls.done() {
		final.FinishReason = sdk.FinishToolCalls
	}
	return o.emit(final)
}

// callScanner reads calls in the shape a call grammar writes them (toolGrammar):
// [prefix] (callOpen {"name":"N","ARGS_KEY":ARGS[,"id":"ID"]} callClose) separated
// by sep, then suffix. It reports a call's id (its own: an id the model writes comes
// after the arguments) and name once its arguments start, then the arguments as they
// come.
type callScanner struct {
	syntax  toolSyntax
	pending string // text not yet consumed
	state   int    // what is expected next (the scan* constants)
	index   int    // the call being read
	name    string
	depth   int  // of the arguments' JSON
	inStr   bool // inside a string of the arguments
	escaped bool
	ended   int // calls read whole
}

const (
	scanPrefix = iota
	scanCallOpen
	scanName
	scanArgs
	scanTail // ,"id":"…"} and callClose
	scanNext // sep, or suffix
	scanDone
)

func (c *callScanner) done() bool {
	return c.state == scanDone || c.ended > 0 && c.state == scanNext && c.syntax.suffix == ""
}

// expect consumes literal from pending; it reports false while pending may still
// become it.
func (c *callScanner) expect(literal string) (ok, wait bool) {
	if strings.HasPrefix(c.pending, literal) {
		c.pending = c.pending[len(literal):]
		return true, false
	}
	return false, strings.HasPrefix(literal, c.pending)
}

func (c *callScanner) push(text string) []sdk.ToolCallDelta {
	c.pending += text
	var out []sdk.ToolCallDelta
	for {
		switch c.state {
		case scanPrefix:
			if ok, _ := c.expect(c.syntax.prefix); !ok {
				return out
			}
			c.state = scanCallOpen
		case scanCallOpen:
			if ok, _ := c.expect(c.syntax.callOpen + `{"name":"`); !ok {
				return out
			}
			c.state = scanName
		case scanName:
			i := strings.Index(c.pending, `","`+c.syntax.argsKey+`":`)
			if i < 0 {
				return out
			}
			c.name = c.pending[:i]
			c.pending = c.pending[i+len(`","`+c.syntax.argsKey+`":`):]
			out = append(out, sdk.ToolCallDelta{Index: c.index, ID: newCallID(c.syntax), Name: c.name})
			c.state, c.depth, c.inStr, c.escaped = scanArgs, 0, false, false
		case scanArgs:
			n := 0
			end := false
			for n < len(c.pending) && !end {
				ch := c.pending[n]
				n++
				switch {
				case c.inStr && c.escaped:
					c.escaped = false
				case c.inStr && ch == '\\':
					c.escaped = true
				case c.inStr && ch == '"':
					c.inStr = false
				case c.inStr:
				case ch == '"':
					c.inStr = true
				case ch == '{' || ch == '[':
					c.depth++
				case ch == '}' || ch == ']':
					c.depth--
					end = c.depth == 0
				}
			}
			if n > 0 {
				out = appendArgs(out, c.index, c.pending[:n])
				c.pending = c.pending[n:]
			}
			if !end {
				return out
			}
			c.state = scanTail
		case scanTail:
			close := strings.Index(c.pending, "}"+c.syntax.callClose)
			if close < 0 {
				return out
			}
			c.pending = c.pending[close+1+len(c.syntax.callClose):]
			c.ended++
			c.index++
			c.state = scanNext
		case scanNext:
			if c.syntax.sep != "" {
				if ok, wait := c.expect(c.syntax.sep); ok {
					c.state = scanCallOpen
					continue
				} else if wait && c.pending != "" {
					return out
				}
			}
			if c.syntax.suffix == "" {
				return out
			}
			if ok, _ := c.expect(c.syntax.suffix); !ok {
				return out
			}
			c.state = scanDone
		case scanDone:
			return out
		}
	}
}

// appendArgs adds a fragment of call index's arguments, joined to the last delta when
// that is of the same call.
func appendArgs(out []sdk.ToolCallDelta, index int, frag string) []sdk.ToolCallDelta {
	if n := len(out); n > 0 && out[n-1].Index == index {
		out[n-1].Arguments += frag
		return out
	}
	return append(out, sdk.ToolCallDelta{Index: index, Arguments: frag})
}
