package oai

import (
	"encoding/json"
	"fmt"
	"strings"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// MaxStop is the most stop sequences a request may carry.
const MaxStop = 4

// SamplingParams are the sampling fields shared by chat completions,
// completions and WebSocket chat params, as they arrive on the wire. Nil
// means "not set". top_k, min_p and repetition_penalty are vLLM extras.
type SamplingParams struct {
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stop                json.RawMessage `json:"stop"`
	Seed                *int64          `json:"seed"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	TopK                *int            `json:"top_k"`
	MinP                *float64        `json:"min_p"`
	RepetitionPenalty   *float64        `json:"repetition_penalty"`
	// vLLM's extras, passed to backends that honour them.
	StopTokenIDs []int32 `json:"stop_token_ids"`
	IgnoreEOS    *bool   `json:"ignore_eos"`
	MinTokens    *int    `json:"min_tokens"`
}

// Sampling validates p and converts it to sdk.Sampling. Parameters are
// named with prefix (e.g. "params.") in errors. max_completion_tokens wins
// over max_tokens when both are set; empty stop strings are dropped.
func (p *SamplingParams) Sampling(prefix string) (sdk.Sampling, *Error) {
	var s sdk.Sampling
	name := func(n string) string { return prefix + n }
	if v := p.Temperature; v != nil {
		if *v < 0 || *v > 2 {
			return s, outOfRange(name("temperature"), *v, "between 0 and 2")
		}
		s.Temperature = ptr(*v)
	}
	if v := p.TopP; v != nil {
		if *v <= 0 || *v > 1 {
			return s, outOfRange(name("top_p"), *v, "greater than 0 and at most 1")
		}
		s.TopP = ptr(*v)
	}
	if v := p.MaxTokens; v != nil {
		if *v < 1 {
			return s, outOfRange(name("max_tokens"), float64(*v), "at least 1")
		}
		s.MaxTokens = *v
	}
	if v := p.MaxCompletionTokens; v != nil {
		if *v < 1 {
			return s, outOfRange(name("max_completion_tokens"), float64(*v), "at least 1")
		}
		s.MaxTokens = *v
	}
	stop, err := Strings(p.Stop, name("stop"), false)
	if err != nil {
		return s, err
	}
	if len(stop) > MaxStop {
		return s, Invalid(name("stop"), CodeInvalidValue, "'%s' may hold at most %d sequences, got %d", name("stop"), MaxStop, len(stop))
	}
	for _, x := range stop {
		if x != "" {
			s.Stop = append(s.Stop, x)
		}
	}
	if v := p.Seed; v != nil {
		s.Seed = ptr(*v)
	}
	for _, id := range p.StopTokenIDs {
		if id < 0 {
			return s, outOfRange(name("stop_token_ids"), float64(id), "a token id (at least 0)")
		}
	}
	s.StopTokenIDs = p.StopTokenIDs
	if v := p.IgnoreEOS; v != nil {
		s.IgnoreEOS = *v
	}
	if v := p.MinTokens; v != nil {
		if *v < 0 {
			return s, outOfRange(name("min_tokens"), float64(*v), "at least 0")
		}
		s.MinTokens = *v
	}
	if v := p.PresencePenalty; v != nil {
		if *v < -2 || *v > 2 {
			return s, outOfRange(name("presence_penalty"), *v, "between -2 and 2")
		}
		s.PresencePenalty = *v
	}
	if v := p.FrequencyPenalty; v != nil {
		if *v < -2 || *v > 2 {
			return s, outOfRange(name("frequency_penalty"), *v, "between -2 and 2")
		}
		s.FrequencyPenalty = *v
	}
	if v := p.TopK; v != nil {
		if *v < -1 {
			return s, outOfRange(name("top_k"), float64(*v), "-1 (disabled), 0 (disabled) or positive")
		}
		s.TopK = max(*v, 0)
	}
	if v := p.MinP; v != nil {
		if *v < 0 || *v > 1 {
			return s, outOfRange(name("min_p"), *v, "between 0 and 1")
		}
		s.MinP = *v
	}
	if v := p.RepetitionPenalty; v != nil {
		if *v <= 0 || *v > 10 {
			return s, outOfRange(name("repetition_penalty"), *v, "greater than 0 and at most 10")
		}
		s.RepetitionPenalty = *v
	}
	return s, nil
}

func ptr[T any](v T) *T { return &v }

func outOfRange(param string, v float64, want string) *Error {
	return Invalid(param, CodeInvalidValue, "invalid value for '%s': %v; it must be %s", param, v, want)
}

// Chat message roles the gateway accepts.
var roles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true}

type wireMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name"`
	ToolCalls  []wireToolCall  `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

type wirePart struct {
	Type string  `json:"type"`
	Text *string `json:"text"`
}

// Messages decodes and validates a chat message list named param: a
// non-empty array of {role, content, name?} with role one of system,
// developer, user, assistant, tool and content a string or an array of
// {"type":"text","text":…} parts (joined with newlines). An assistant
// message may have null content. Other part types are unsupported.
func Messages(raw json.RawMessage, param string) ([]sdk.Message, *Error) {
	if isNull(raw) {
		return nil, Missing(param)
	}
	if firstByte(raw) != '[' {
		return nil, Invalid(param, CodeInvalidType, "invalid type for '%s': expected an array, got %s", param, jsonKind(raw))
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, Invalid(param, CodeInvalidJSON, "invalid '%s': %v", param, err)
	}
	if len(elems) == 0 {
		return nil, Invalid(param, CodeInvalidValue, "'%s' must contain at least one message", param)
	}
	out := make([]sdk.Message, len(elems))
	for i, el := range elems {
		p := fmt.Sprintf("%s[%d]", param, i)
		if firstByte(el) != '{' {
			return nil, Invalid(p, CodeInvalidType, "invalid type for '%s': expected an object, got %s", p, jsonKind(el))
		}
		var m wireMessage
		if err := Decode(el, &m, p); err != nil {
			return nil, err
		}
		if m.Role == "" {
			return nil, Missing(p + ".role")
		}
		if !roles[m.Role] {
			return nil, Invalid(p+".role", CodeInvalidValue, "invalid value for '%s.role': '%s'; supported roles are system, developer, user, assistant and tool", p, m.Role)
		}
		content, err := Content(m.Content, p+".content", m.Role == "assistant")
		if err != nil {
			return nil, err
		}
		out[i] = sdk.Message{Role: m.Role, Content: content, Name: m.Name, ToolCallID: m.ToolCallID}
		switch {
		case len(m.ToolCalls) > 0 && m.Role != "assistant":
			return nil, Invalid(p+".tool_calls", CodeInvalidValue, "only an assistant message has 'tool_calls'")
		case m.ToolCallID != "" && m.Role != "tool":
			return nil, Invalid(p+".tool_call_id", CodeInvalidValue, "only a tool message has 'tool_call_id'")
		case m.Role == "tool" && m.ToolCallID == "":
			return nil, Missing(p + ".tool_call_id")
		}
		if m.ToolCallID != "" {
			if err := CheckText(p+".tool_call_id", m.ToolCallID); err != nil {
				return nil, err
			}
		}
		if len(m.ToolCalls) > 0 {
			if out[i].ToolCalls, err = toolCalls(m.ToolCalls, p+".tool_calls"); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// Content decodes a message content named param: a string or an array of
// text parts. nullable allows null or absent content (as "").
func Content(raw json.RawMessage, param string, nullable bool) (string, *Error) {
	switch firstByte(raw) {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", Invalid(param, CodeInvalidJSON, "invalid string for '%s': %v", param, err)
		}
		return s, nil
	case '[':
		var parts []json.RawMessage
		if err := json.Unmarshal(raw, &parts); err != nil {
			return "", Invalid(param, CodeInvalidJSON, "invalid '%s': %v", param, err)
		}
		var b strings.Builder
		for j, rp := range parts {
			pp := fmt.Sprintf("%s[%d]", param, j)
			if firstByte(rp) != '{' {
				return "", Invalid(pp, CodeInvalidType, "invalid type for '%s': expected an object, got %s", pp, jsonKind(rp))
			}
			var part wirePart
			if err := Decode(rp, &part, pp); err != nil {
				return "", err
			}
			switch part.Type {
			case "text":
			case "":
				return "", Missing(pp + ".type")
			default:
				return "", Unsupported(pp+".type", "content parts of type '%s' are not supported: only 'text' is", part.Type)
			}
			if part.Text == nil {
				return "", Missing(pp + ".text")
			}
			if j > 0 {
				b.WriteByte('\n')
			}
			b.WriteString(*part.Text)
		}
		return b.String(), nil
	}
	if isNull(raw) {
		if nullable {
			return "", nil
		}
		return "", Missing(param)
	}
	return "", Invalid(param, CodeInvalidType, "invalid type for '%s': expected a string or an array of content parts, got %s", param, jsonKind(raw))
}
