// Package conversation runs chat turns with server-side history, for the WebSocket
// protocol and for /v1/chat/completions with a conversation_id.
//
// A turn is stored before generation starts (the caller's new messages and an
// in-progress assistant message, in one transaction: [Begin]) and ended when generation
// ends ([Turn.Finish]): complete, cancelled or failed, always with the text generated so
// far, its finish reason and token counts. The prompt of a turn is the conversation's
// history fitted to the model's context ([Fit]): the oldest turns are dropped first, the
// system prompt is always kept.
package conversation
