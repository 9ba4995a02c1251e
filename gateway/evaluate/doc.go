// Package evaluate measures retrieval on a question file: for each question, the
// hits a search returns are judged against what the question expects (substrings
// of the answer's text, or documents), and the figures — recall@1/5/10, MRR@10 and
// nDCG@10 — are given overall and per kind of question, with the questions missed.
//
// The question file is JSON Lines, one question per line:
//
//	{"q": "how do I …", "expect": ["a substring of the answer"], "kind": "paraphrase"}
//	{"q": "…", "docs": ["document id or title"], "kind": "lexical"}
//
// A hit is relevant when its text contains one of the expected substrings (compared
// without case and with runs of white space as one space) or it belongs to one of
// the expected documents (by id or title). Each expectation counts once: a second
// hit satisfying the same substring adds nothing.
package evaluate
