package main

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/hybridgroup/yzma/pkg/llama"
	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

func init() {
	gonja.SetLoggerOutput(io.Discard) // its errors are returned; no log of its own
}

// chatTemplate renders chat messages into a prompt ending with the assistant's turn:
// either a template llama.cpp knows (by name — "chatml", "llama3", … — or by its
// Jinja source: the model's own tokenizer.chat_template), or a Jinja template given
// as the chat_template option's text (FastChat's conversation templates, for a model
// whose GGUF has none or a wrong one), rendered by gonja with the variables chat
// templates use: messages, add_generation_prompt, bos_token, eos_token and
// raise_exception.
type chatTemplate struct {
	name  string         // llama.cpp's
	jinja *exec.Template // or the option's Jinja text
	// bos and eos are the vocabulary's BOS and EOS tokens as text; addsBOS says the
	// tokenizer adds BOS itself (a BOS the template writes is then dropped).
	bos, eos string
	addsBOS  bool
}

// isJinja reports whether a chat_template option is a Jinja template's text rather
// than a name.
func isJinja(s string) bool { return strings.Contains(s, "{%") || strings.Contains(s, "{{") }

// newChatTemplate picks the template for a model: the option's (a name or Jinja
// text), else the model's own (tokenizer.chat_template), else ChatML. own says the
// model's own is used.
func newChatTemplate(model llama.Model, option string) (t chatTemplate, own bool, err error) {
	switch {
	case isJinja(option):
		vocab := llama.ModelGetVocab(model)
		t.bos, t.eos = tokenText(vocab, llama.VocabBOS(vocab)), tokenText(vocab, llama.VocabEOS(vocab))
		t.addsBOS = llama.VocabGetAddBOS(vocab)
		if name := selfRecursiveMacro(option); name != "" {
			// A macro that calls itself can recurse until the stack is exhausted,
			// which no recover catches: the process would die.
			return t, false, fmt.Errorf("macro %q calls itself: recursive macros are not supported", name)
		}
		// Templates are one text: include, import and extends find nothing.
		loader, err := loaders.NewMemoryLoader(map[string]string{"/chat_template": option})
		if err != nil {
			return t, false, err
		}
		if t.jinja, err = exec.NewTemplate("/chat_template", gonja.DefaultConfig, loader, gonja.DefaultEnvironment); err != nil {
			return t, false, fmt.Errorf("not a valid Jinja template: %w", err)
		}
		return t, false, nil
	case option != "":
		t.name = option
		return t, false, nil
	}
	if s := llama.ModelChatTemplate(model, ""); s != "" {
		t.name = s
		return t, true, nil
	}
	t.name = "chatml"
	return t, false, nil
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

// apply renders msgs. A template that panics (gonja does, on some operations of odd
// values) fails the request, not the process.
func (t chatTemplate) apply(msgs []sdk.Message) (out string, err error) {
	if t.jinja == nil {
		return applyTemplate(t.name, msgs)
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = "", fmt.Errorf("the chat template failed on these messages: %v", r)
		}
	}()
	list := make(messageList, len(msgs))
	for i, m := range msgs {
		list[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	ctx := exec.NewContext(map[string]any{
		"messages":              list,
		"add_generation_prompt": true,
		"bos_token":             t.bos,
		"eos_token":             t.eos,
		"raise_exception": func(msg string) (string, error) {
			return "", fmt.Errorf("%w: %s", errRaised, msg)
		},
	})
	var b limitedBuilder
	err = t.jinja.Execute(&b, ctx)
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
type messageList []map[string]any

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
