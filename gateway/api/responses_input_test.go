package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// TestResponsesInputNamesItems checks that text refused in an input item is named
// by that item's index, even after function calls of one answer were merged into
// one message.
func TestResponsesInputNamesItems(t *testing.T) {
	call := `{"type":"function_call","call_id":"c%d","name":"f","arguments":"{}"}`
	cases := []struct{ input, param string }{
		{`[{"role":"user","content":"a\u0000b"}]`, "input[0].content"},
		{`[` + fmt.Sprintf(call, 1) + `,` + fmt.Sprintf(call, 2) + `,{"role":"user","content":"a\u0000b"}]`, "input[2].content"},
		{`[` + fmt.Sprintf(call, 1) + `,` + fmt.Sprintf(call, 2) + `,{"type":"function_call_output","call_id":"c1","output":"x\u0000"}]`, "input[2].output"},
		{`[` + fmt.Sprintf(call, 1) + `,{"type":"function_call_output","call_id":"c\u0000","output":"x"}]`, "input[1].call_id"},
		{`[{"role":"user","content":[{"type":"input_text","text":"ok"},{"type":"input_text","text":"\u0000"}]}]`, "input[0].content"},
		// At most sdk.MaxToolCalls calls of one answer: the next is refused.
		{`[` + strings.Repeat(fmt.Sprintf(call, 1)+`,`, sdk.MaxToolCalls) + fmt.Sprintf(call, 2) + `]`, fmt.Sprintf("input[%d]", sdk.MaxToolCalls)},
	}
	for _, tc := range cases {
		_, err := responsesInput(json.RawMessage(tc.input))
		if err == nil || err.Param != tc.param {
			t.Errorf("%s: %+v, want a refusal naming %s", tc.input, err, tc.param)
		}
	}
}
