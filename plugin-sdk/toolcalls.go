package sdk

import "strings"

// MaxToolCalls bounds the tool calls of one answer: a delta whose Index is at least
// this is not a call anyone assembles.
const MaxToolCalls = 128

// ToolCallJoiner joins the tool-call deltas of one answer into its calls, in linear
// time however finely the arguments are cut. The zero value is ready to use.
type ToolCallJoiner struct {
	calls []ToolCall
	args  []*strings.Builder
}

// Add joins deltas: a call's first delta gives its ID and Name (later ones may repeat
// them), every delta may add a fragment of its Arguments. A delta whose Index is
// negative or at least MaxToolCalls is dropped; calls missing before an Index are
// empty.
func (j *ToolCallJoiner) Add(deltas []ToolCallDelta) {
	for _, d := range deltas {
		if d.Index < 0 || d.Index >= MaxToolCalls {
			continue
		}
		for d.Index >= len(j.calls) {
			j.calls = append(j.calls, ToolCall{})
			j.args = append(j.args, new(strings.Builder))
		}
		c := &j.calls[d.Index]
		if d.ID != "" {
			c.ID = d.ID
		}
		if d.Name != "" {
			c.Name = d.Name
		}
		j.args[d.Index].WriteString(d.Arguments)
	}
}

// Len is the number of calls so far.
func (j *ToolCallJoiner) Len() int { return len(j.calls) }

// Calls returns the calls joined so far (nil for none).
func (j *ToolCallJoiner) Calls() []ToolCall {
	if len(j.calls) == 0 {
		return nil
	}
	out := make([]ToolCall, len(j.calls))
	for i, c := range j.calls {
		c.Arguments = j.args[i].String()
		out[i] = c
	}
	return out
}
