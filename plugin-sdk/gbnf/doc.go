// Package gbnf turns a JSON Schema into a GBNF grammar (llama.cpp's grammar format)
// whose every sentence is a JSON text that the schema accepts, for constrained
// decoding of structured output and tool calls.
//
// It covers what OpenAI's strict structured outputs allow: objects with properties
// (kept in the schema's order; required ones always, optional ones in order, none
// besides them), arrays with items and minItems/maxItems, strings with
// minLength/maxLength and the formats date, time, date-time and uuid, integers with
// minimum/maximum (exclusive too), numbers (minimum 0 or none), booleans, null, enum,
// const, anyOf, type lists, and $ref to $defs or definitions (recursion included).
// Numbers have at most 16 digits before the point, 16 after it and a two-digit
// exponent (every one fits a float64); dates leave out February 29th (valid only in
// leap years); strings write U+0080–U+00BF only as \u escapes (see commonRules). Anything else that constrains a value (pattern, oneOf, allOf, not,
// multipleOf, uniqueItems, other formats, …) is refused with an *UnsupportedError
// naming the keyword and where it is, never ignored: a grammar that ignored it could
// produce output the schema rejects.
//
// The output is compact JSON (no whitespace between tokens): a model cannot spend
// its tokens on whitespace, and the text ends when the value does. Sizes are
// bounded (MaxDepth, MaxRules, MaxRepeat, MaxBytes) so that no schema can make a
// grammar that exhausts the memory of the process that compiles it.
//
// So is ambiguity, which costs the process that follows the grammar: llama.cpp keeps
// a parse stack for each way of reading the text so far and checks every candidate
// token against each. An enum is written as a tree of its values' common
// beginnings (one way to read it); anyOf and type-list alternatives that can begin
// alike (same kind of value; for objects, the same first required property's key
// and const values) are refused when one of them contains the schema itself, and
// any grammar read in more than MaxAmbiguity ways at once is refused.
package gbnf
