package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"strings"
	"time"

	"github.com/hybridgroup/yzma/pkg/llama"
	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/exec"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

func init() {
	gonja.SetLoggerOutput(io.Discard) // its errors are returned; no log of its own
}

// chatTemplate renders chat messages into a prompt ending with the assistant's turn:
// a Jinja template rendered here as Hugging Face's transformers renders it (the
// model's own tokenizer.chat_template, or the chat_template option's text), or a
// template llama.cpp knows by name ("chatml", "llama3", …) — the option's name, or
// llama.cpp's match for a model's own template that does not parse here. See
// docs/tools.md §1.
type chatTemplate struct {
	name  string         // llama.cpp's
	jinja *exec.Template // or a Jinja template's
	// bos and eos are the vocabulary's BOS and EOS tokens as text; addsBOS says the
	// tokenizer adds BOS itself (a BOS the template writes is then dropped).
	bos, eos string
	addsBOS  bool
	// now is the clock of strftime_now.
	now func() time.Time
	// tools is how the model writes tool calls; genericTools says the template does
	// not render tools (they are described in a system message, toolsPrompt).
	tools        toolSyntax
	genericTools bool
}

// isJinja reports whether a chat_template option is a Jinja template's text rather
// than a name.
func isJinja(s string) bool { return strings.Contains(s, "{%") || strings.Contains(s, "{{") }

// newChatTemplate picks the template for a model: the option's (a name or Jinja
// text), else the model's own (tokenizer.chat_template), else ChatML. own says the
// model's own is used; fallback, when not "", says why the model's own is rendered by
// llama.cpp's built-in match rather than as Jinja.
func newChatTemplate(model llama.Model, option string) (t chatTemplate, own bool, fallback string, err error) {
	vocab := llama.ModelGetVocab(model)
	t.bos, t.eos = tokenText(vocab, llama.VocabBOS(vocab)), tokenText(vocab, llama.VocabEOS(vocab))
	t.addsBOS = llama.VocabGetAddBOS(vocab)
	t.now = time.Now
	t.tools, t.genericTools = genericSyntax, true
	switch {
	case isJinja(option):
		t.tools, t.genericTools = toolSyntaxOf(option)
		t.jinja, err = compileJinja(option)
		return t, false, "", err
	case option != "":
		t.name = option
		return t, false, "", nil
	}
	src := llama.ModelChatTemplate(model, "")
	if src == "" {
		t.name = "chatml"
		return t, false, "", nil
	}
	if t.jinja, err = compileJinja(src); err != nil {
		t.jinja, t.name = nil, src // llama.cpp's heuristics find the family
		return t, true, err.Error(), nil
	}
	t.tools, t.genericTools = toolSyntaxOf(src)
	return t, true, "", nil
}

// check renders a user's message and a conversation: a template that cannot is
// unusable (some templates refuse system messages: a conversation without one then).
func (t chatTemplate) check() error {
	if _, err := t.apply([]sdk.Message{{Role: "user", Content: "x"}}); err != nil {
		return err
	}
	conv := []sdk.Message{{Role: "user", Content: "x"}, {Role: "assistant", Content: "y"}, {Role: "user", Content: "z"}}
	if _, err := t.apply(append([]sdk.Message{{Role: "system", Content: "s"}}, conv...)); err != nil {
		_, err = t.apply(conv)
		return err
	}
	return nil
}

// tokenText is token id's text ("" for none).
func tokenText(vocab llama.Vocab, id llama.Token) string {
	if id < 0 {
		return ""
	}
	buf := make([]byte, 64)
	n := llama.TokenToPiece(vocab, id, buf, 0, true)
	if n < 0 || int(n) > len(buf) {
		return ""
	}
	return string(buf[:n])
}

// errRaised is what a template's raise_exception says.
var errRaised = errors.New("the chat template refuses these messages")

// maxRendered bounds a rendered prompt (a template can repeat text): far more than
// any context holds.
const maxRendered = 16 << 20

var macroRE = regexp.MustCompile(`\{%-?\s*macro\s+([A-Za-z_][A-Za-z0-9_]*)\s*\(`)

// selfRecursiveMacro returns the name of a macro whose body calls it ("" if none).
func selfRecursiveMacro(src string) string {
	for _, m := range macroRE.FindAllStringSubmatchIndex(src, -1) {
		name := src[m[2]:m[3]]
		body := src[m[1]:]
		if end := strings.Index(body, "endmacro"); end >= 0 {
			body = body[:end]
		}
		if regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\s*\(`).MatchString(body) {
			return name
		}
	}
	return ""
}

// apply renders msgs with the generation prompt, and the tools the model may call
// (none: nil).
func (t chatTemplate) apply(msgs []sdk.Message, tools ...sdk.Tool) (string, error) {
	if len(tools) > 0 && t.genericTools {
		msgs = withToolsPrompt(msgs, tools)
		tools = nil
	}
	if t.jinja == nil || t.genericTools && hasToolCalls(msgs) {
		// A template that does not render tool calls gets them as text.
		msgs = callsAsText(msgs)
	}
	if t.jinja == nil {
		return applyTemplate(t.name, msgs)
	}
	if t.tools.withID && hasToolCalls(msgs) {
		msgs = mistralIDs(msgs)
	}
	list := make(messageList, len(msgs))
	for i, m := range msgs {
		d := orderedDictOf("role", m.Role, "content", m.Content)
		add := func(k string, v any) {
			d.Pairs = append(d.Pairs, &exec.Pair{Key: exec.AsValue(k), Value: exec.AsValue(v)})
		}
		if m.Name != "" {
			add("name", m.Name)
		}
		if m.ToolCallID != "" {
			add("tool_call_id", m.ToolCallID)
		}
		if len(m.ToolCalls) > 0 {
			calls := make([]any, len(m.ToolCalls))
			for j, c := range m.ToolCalls {
				args, err := jsonValue([]byte(c.Arguments))
				if err != nil {
					return "", fmt.Errorf("messages[%d].tool_calls[%d].arguments is not JSON: %w", i, j, err)
				}
				calls[j] = orderedDictOf("id", c.ID, "type", "function", "function", orderedDictOf("name", c.Name, "arguments", args))
			}
			add("tool_calls", calls)
		}
		list[i] = d
	}
	vars := map[string]any{"messages": list, "add_generation_prompt": true}
	if len(tools) > 0 {
		tv, err := toolValues(tools)
		if err != nil {
			return "", err
		}
		vars["tools"] = tv
	}
	return t.render(vars)
}

// mistralIDs gives the calls and results of msgs the ids a Mistral template takes
// (9 letters and digits; mistralID), a result keeping its call's.
func mistralIDs(msgs []sdk.Message) []sdk.Message {
	out := append([]sdk.Message(nil), msgs...)
	for i := range out {
		if len(out[i].ToolCalls) > 0 {
			out[i].ToolCalls = append([]sdk.ToolCall(nil), out[i].ToolCalls...)
			for j := range out[i].ToolCalls {
				out[i].ToolCalls[j].ID = mistralID(out[i].ToolCalls[j].ID)
			}
		}
		if out[i].ToolCallID != "" {
			out[i].ToolCallID = mistralID(out[i].ToolCallID)
		}
	}
	return out
}

// withToolsPrompt puts the description of tools in msgs' system message (a new one
// first when there is none).
func withToolsPrompt(msgs []sdk.Message, tools []sdk.Tool) []sdk.Message {
	prompt := toolsPrompt(tools)
	out := append([]sdk.Message(nil), msgs...)
	if len(out) > 0 && out[0].Role == "system" {
		out[0].Content += "\n\n" + prompt
		return out
	}
	return append([]sdk.Message{{Role: "system", Content: prompt}}, out...)
}

func hasToolCalls(msgs []sdk.Message) bool {
	for _, m := range msgs {
		if len(m.ToolCalls) > 0 {
			return true
		}
	}
	return false
}

// callsAsText writes an assistant message's tool calls as its text, in the generic
// syntax, for a template that does not render tool calls.
func callsAsText(msgs []sdk.Message) []sdk.Message {
	if !hasToolCalls(msgs) {
		return msgs
	}
	out := append([]sdk.Message(nil), msgs...)
	for i, m := range out {
		if len(m.ToolCalls) == 0 {
			continue
		}
		var b strings.Builder
		b.WriteString(m.Content)
		b.WriteString(genericSyntax.prefix)
		for j, c := range m.ToolCalls {
			if j > 0 {
				b.WriteString(genericSyntax.sep)
			}
			fmt.Fprintf(&b, `{"name":%s,"arguments":%s}`, jsonText(c.Name), c.Arguments)
		}
		b.WriteString(genericSyntax.suffix)
		out[i].Content, out[i].ToolCalls = b.String(), nil
	}
	return out
}

// render renders the Jinja template with vars (messages, tools, add_generation_prompt
// and any other) and the variables every template gets: bos_token, eos_token,
// raise_exception, strftime_now. A template that panics (gonja does, on some
// operations of odd values) fails the request, not the process.
func (t chatTemplate) render(vars map[string]any) (out string, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("the chat template failed on these messages: %v", r)
		}
	}()
	all := map[string]any{
		"bos_token": t.bos,
		"eos_token": t.eos,
		"raise_exception": func(msg string) (string, error) {
			return "", fmt.Errorf("%w: %s", errRaised, msg)
		},
		"strftime_now": func(format string) string { return strftime(t.now(), format) },
	}
	maps.Copy(all, vars)
	var b limitedBuilder
	err = t.jinja.Execute(&b, exec.NewContext(all))
	out = b.String()
	if b.over {
		return "", fmt.Errorf("the chat template renders more than %d bytes for these messages", maxRendered)
	}
	if err != nil {
		if i := strings.Index(err.Error(), errRaised.Error()); i >= 0 {
			return "", errors.New(err.Error()[i:])
		}
		return "", fmt.Errorf("the chat template failed on these messages: %w", err)
	}
	if t.addsBOS && t.bos != "" {
		out = strings.TrimPrefix(out, t.bos) // the tokenizer adds it: not twice
	}
	return out, nil
}

// messageList is the messages a template sees. Its items are indexed as Python
// does: gonja v2.9.1 gives None for messages[-n] when there are n messages (an
// off-by-one in its negative indexes), so messages[-1] of a one-message chat would
// be nothing.
type messageList []any

// GetItem implements gonja's exec.ItemGetter.
func (l messageList) GetItem(key any) (*exec.Value, bool) {
	i, ok := key.(int)
	if !ok {
		return exec.AsValue(nil), false
	}
	if i < 0 {
		i += len(l)
	}
	if i < 0 || i >= len(l) {
		return exec.AsValue(nil), false
	}
	return exec.AsValue(l[i]), true
}

// limitedBuilder is a strings.Builder that keeps at most maxRendered bytes.
type limitedBuilder struct {
	strings.Builder
	over bool
}

func (b *limitedBuilder) Write(p []byte) (int, error) {
	if b.Len()+len(p) > maxRendered {
		b.over = true
		return 0, errors.New("too long")
	}
	return b.Builder.Write(p)
}

// applyTemplate renders messages with a template llama.cpp knows into a prompt
// ending with the assistant's turn. llama.cpp takes the messages as C strings, which
// cannot hold NUL: each NUL of a role or content goes through the template as a
// marker that occurs nowhere else and comes back as NUL in the prompt (see
// tokenize.go for what NUL then becomes).
func applyTemplate(tmpl string, msgs []sdk.Message) (string, error) {
	texts := []string{tmpl}
	hasNUL := false
	for _, m := range msgs {
		texts = append(texts, m.Role, m.Content)
		hasNUL = hasNUL || strings.Contains(m.Role, "\x00") || strings.Contains(m.Content, "\x00")
	}
	marker := ""
	if hasNUL {
		marker = nulMarker(texts...)
	}
	chat := make([]llama.ChatMessage, len(msgs))
	size := 256
	for i, m := range msgs {
		role, content := m.Role, m.Content
		if hasNUL {
			role, content = strings.ReplaceAll(role, "\x00", marker), strings.ReplaceAll(content, "\x00", marker)
		}
		chat[i] = llama.NewChatMessage(role, content)
		size += len(role) + len(content) + 32
	}
	buf := make([]byte, size)
	n := llama.ChatApplyTemplate(tmpl, chat, true, buf)
	if int(n) > len(buf) {
		buf = make([]byte, n)
		n = llama.ChatApplyTemplate(tmpl, chat, true, buf)
	}
	if n < 0 {
		return "", fmt.Errorf("llama.cpp does not support this chat template; set the chat_template option to a supported one (e.g. %q) or to a Jinja template's text", "chatml")
	}
	out := string(buf[:n])
	if hasNUL {
		out = strings.ReplaceAll(out, marker, "\x00")
	}
	return out, nil
}
