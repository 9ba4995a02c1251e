package sdk

import (
	"reflect"
	"strings"
	"testing"
)

func TestToolCallJoiner(t *testing.T) {
	var j ToolCallJoiner
	if j.Calls() != nil || j.Len() != 0 {
		t.Fatal("the zero joiner has calls")
	}
	j.Add([]ToolCallDelta{{Index: 0, ID: "a", Name: "f", Arguments: `{"x":`}, {Index: 1, ID: "b", Name: "g"}})
	j.Add([]ToolCallDelta{{Index: 0, ID: "a", Arguments: "1}"}, {Index: 1, Arguments: "{}"}, {Index: -1, Arguments: "lost"}, {Index: MaxToolCalls, Arguments: "lost"}})
	want := []ToolCall{{ID: "a", Name: "f", Arguments: `{"x":1}`}, {ID: "b", Name: "g", Arguments: "{}"}}
	if got := j.Calls(); !reflect.DeepEqual(got, want) || j.Len() != 2 {
		t.Fatalf("calls %+v, want %+v", got, want)
	}
	// Arguments cut into a byte each join whole (in linear time: a builder per call).
	var k ToolCallJoiner
	long := strings.Repeat("x", 1<<16)
	for i := range len(long) {
		k.Add([]ToolCallDelta{{Index: 0, Arguments: long[i : i+1]}})
	}
	if got := k.Calls()[0].Arguments; got != long {
		t.Fatalf("arguments of %d bytes", len(got))
	}
}
