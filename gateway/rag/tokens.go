package rag

import "github.com/ragway/ragway/gateway/conversation"

// EstimateTokens is a conservative estimate of the tokens of s: one per rune beyond
// ASCII, one per three bytes of ASCII. It is the gateway's one rule
// (conversation.EstimateTokens), so chunk sizes and prompt budgets agree.
func EstimateTokens(s string) int { return conversation.EstimateTokens(s) }
