package main

import (
	"bytes"
	"context"
	"testing"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// A reader that does not read must not block the batching loop: send never
// blocks, deltas merge, and the final event arrives once the reader reads.
func TestSlowReaderNeverBlocksTheLoop(t *testing.T) {
	e := &engine{}
	r := &genRequest{ctx: context.Background(), events: make(chan sdk.Event, 2)}
	for range 100 { // would block on the third send if send blocked
		e.send(r, sdk.Event{Text: "x", Tokens: 1})
	}
	e.send(r, sdk.Event{FinishReason: sdk.FinishStop, Usage: &sdk.Usage{CompletionTokens: 100}})
	e.end(r)
	if len(e.draining) != 1 {
		t.Fatalf("draining = %d, want the unread request", len(e.draining))
	}
	var text string
	tokens, finals := 0, 0
	for {
		select {
		case ev, ok := <-r.events:
			if !ok {
				if text != string(bytes.Repeat([]byte("x"), 100)) || tokens != 100 || finals != 1 {
					t.Fatalf("got %d bytes, %d tokens, %d finals", len(text), tokens, finals)
				}
				if len(e.draining) != 0 {
					t.Fatalf("request still draining after its channel closed")
				}
				return
			}
			text += ev.Text
			tokens += ev.Tokens
			if ev.Final() {
				finals++
			}
		default:
			e.flushAll() // the loop's next iteration
		}
	}
}
