package main

import (
	"fmt"

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
// turn.
func applyTemplate(tmpl string, msgs []sdk.Message) (string, error) {
	chat := make([]llama.ChatMessage, len(msgs))
	size := 256
	for i, m := range msgs {
		chat[i] = llama.NewChatMessage(m.Role, m.Content)
		size += len(m.Role) + len(m.Content) + 32
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
	return string(buf[:n]), nil
}
