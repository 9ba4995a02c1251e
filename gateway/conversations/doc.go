// Package conversations is the service behind the /v1/conversations routes: a user's
// stored conversations as resources, created, listed a page at a time, read with their
// messages and deleted.
//
// A chat turn in a conversation (storing the user's message and the answer, fitting
// the history to the model) is package conversation's, run by the chat core; this
// package only manages what is stored. Deleting a conversation also drops what the
// gateway holds of its history ([Held], conversation.Turns), so that its next turn
// cannot start from it.
//
// Results are this package's own types ([Conversation], [Message]), never the
// store's; errors are the store's classes ([ErrNotFound] among them), wrapped with
// what was being done, which chat.APIError maps to the wire. The package is not HTTP:
// request decoding and validation, and resolving a model's name, are the transport's.
package conversations
