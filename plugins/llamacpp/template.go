package main

import (
	"fmt"
	"strings"

	"github.com/hybridgroup/yzma/pkg/llama"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// chatTemplate picks the template for a model: the override from the
// options, else the model's own (tokenizer.chat_template), else ChatML.
// llama.cpp recognises templates by name ("chatml", "llama3", ...; see
// llama.ChatBuiltinTemplates) or by their Jinja source.
func chatTemplate(model llama.Model, override string) (tmpl string, own bool) {
	if override != "" {
		return override, false
	}
	if t := llama.ModelChatTemplate(model, ""); t != "" {
		return t, true
	}
	return "chatml", false
}

// applyTemplate renders messages into a prompt ending with the assistant's
// turn. llama.cpp takes the messages as C strings, which cannot hold NUL:
// each NUL of a role or content goes through the template as a marker that
// occurs nowhere else and comes back as NUL in the prompt (see tokenize.go
// for what NUL then becomes).
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
		return "", fmt.Errorf("llama.cpp does not support this chat template; set the chat_template option to a supported one (e.g. %q)", "chatml")
	}
	out := string(buf[:n])
	if hasNUL {
		out = strings.ReplaceAll(out, marker, "\x00")
	}
	return out, nil
}
