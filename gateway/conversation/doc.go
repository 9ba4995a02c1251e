// Package conversation runs chat turns with server-side history, for the WebSocket
// protocol and for /v1/chat/completions with a conversation_id.
//
// A turn is stored before generation starts (the caller's new messages and an
// in-progress assistant message, in one transaction: [Turns.Begin]) and ended when
// generation ends ([Turn.Finish]): complete, cancelled or failed, always with the text
// generated so far, its finish reason and token counts. The prompt of a turn is the
// conversation's history fitted to the model's context ([Fit]): the oldest turns are
// dropped first, the system prompt is always kept.
//
// [Turns] holds the final messages of the conversations a gateway served last (bounded,
// least recently used out first): a turn reads from the store only the messages after
// those it holds. Final messages never change and a conversation's messages are stored
// one turn at a time in seq order, so what is held stays true whatever other gateways do.
package conversation
