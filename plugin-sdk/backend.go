package sdk

import "context"

// Backend is what a model backend plugin implements and what the host gets
// back from Launch. Every method takes the caller's context: when it is
// cancelled the call must return promptly, and a cancelled Generate must free
// whatever slot it held before returning.
//
// A plugin process serves one model: the host calls Info, then Load once,
// then any number of concurrent Generate, Embed and Health calls.
type Backend interface {
	// Info describes the plugin. It must work before Load.
	Info(ctx context.Context) (Info, error)
	// Load loads the model. Invalid options are reported as ErrInvalidRequest
	// naming the option; a model that cannot be loaded is any other error
	// whose message says why.
	Load(ctx context.Context, req LoadRequest) (ModelInfo, error)
	// Generate produces text for req and calls emit for each event, in
	// order: zero or more delta events, then exactly one final event (one
	// with FinishReason set, carrying Usage). If emit returns an error,
	// Generate stops and returns it. An error returned before the final
	// event means the generation failed.
	Generate(ctx context.Context, req GenerateRequest, emit func(Event) error) error
	// Health reports whether the plugin can serve and how loaded it is.
	Health(ctx context.Context) (Health, error)
}

// Embedder is the optional embedding capability. Plugins that implement it
// should list CapabilityEmbedding in Info. On the host side Embed is always
// present and returns ErrUnsupported when the plugin lacks it.
type Embedder interface {
	Embed(ctx context.Context, req EmbedRequest) (EmbedResponse, error)
}

// Tokenizer is the optional tokenizing capability (API 1.2). Plugins that
// implement it should list CapabilityTokenize in Info. On the host side
// Tokenize is always present and returns ErrUnsupported when the plugin
// lacks it.
type Tokenizer interface {
	// Tokenize counts the tokens of each input as the model's own tokenizer
	// counts them for the model's use: one input of Embed for an embedding
	// model (compare with ModelInfo.MaxInputTokens), a raw prompt for a
	// generation model. An input the model cannot take at all is
	// ErrInvalidRequest naming it.
	Tokenize(ctx context.Context, req TokenizeRequest) (TokenizeResponse, error)
}

// Reranker is the optional reranking capability (API 1.4). Plugins that
// implement it should list CapabilityRerank in Info; the host calls it on a
// model loaded with LoadRequest.Rerank. On the host side Rerank is always
// present and returns ErrUnsupported when the plugin lacks it.
type Reranker interface {
	// Rerank scores how well each document answers the query: one score per
	// document, in order, higher is more relevant. A query-document pair over
	// the model's limit is ErrInvalidRequest naming it unless Truncate is set.
	Rerank(ctx context.Context, req RerankRequest) (RerankResponse, error)
}

// RerankRequest asks for the relevance of each document to the query.
type RerankRequest struct {
	Query     string
	Documents []string
	// Truncate cuts a query-document pair longer than the model's limit to the
	// limit (the document's end goes first) instead of refusing it.
	Truncate bool
}

// RerankResponse holds one relevance score per document, in order. Scores are
// the model's own (a logit for llama.cpp's rank pooling), comparable within one
// response.
type RerankResponse struct {
	Scores       []float32
	PromptTokens int
}

// TokenizeRequest asks for the token count of each input.
type TokenizeRequest struct {
	Input []string
}

// TokenizeResponse holds the token count of each input, in order.
type TokenizeResponse struct {
	Counts []int
}

// Capability names something a plugin can do.
type Capability string

// The capabilities a plugin can report.
const (
	CapabilityChat       Capability = "chat"
	CapabilityCompletion Capability = "completion"
	CapabilityEmbedding  Capability = "embedding"
	CapabilityTokenize   Capability = "tokenize"
	CapabilityRerank     Capability = "rerank"
	// CapabilityStructuredOutput: Generate honours GenerateRequest.ResponseFormat.
	CapabilityStructuredOutput Capability = "structured_output"
	// CapabilityTools: Generate honours GenerateRequest.Tools and ToolChoice.
	CapabilityTools Capability = "tools"
)

// Info describes a plugin.
type Info struct {
	Name    string
	Version string
	// APIVersion is the semantic version of this contract the plugin was
	// built against. Serve fills it in when empty.
	APIVersion   string
	Capabilities []Capability
	// MaxParallel is how many sequences the plugin generates at once (0:
	// unknown).
	MaxParallel int
}

// Has reports whether the plugin declares capability c.
func (i Info) Has(c Capability) bool {
	for _, x := range i.Capabilities {
		if x == c {
			return true
		}
	}
	return false
}

// LoadRequest asks a plugin to load a model.
type LoadRequest struct {
	// Model is the name clients use for the model.
	Model string
	// Options is the model's options map from the gateway config. Values are
	// JSON-like: string, float64, bool, nil, []any, map[string]any.
	Options map[string]any
	// Embedding is set when the model is used for embeddings.
	Embedding bool
	// Rerank is set when the model is used to rerank (API 1.4).
	Rerank bool
}

// ModelInfo describes a loaded model.
type ModelInfo struct {
	ContextLength   int
	EmbeddingSize   int
	HasChatTemplate bool
	// MaxInputTokens is, for embedding models, the most tokens one input of
	// Embed may have, as Tokenize counts them (0: unknown). A longer input
	// is ErrInvalidRequest unless EmbedRequest.Truncate is set. (API 1.2.)
	// For rerank models it is the most tokens of one query-document pair
	// (API 1.4).
	MaxInputTokens int
}

// Message is one chat message.
type Message struct {
	Role    string
	Content string
	Name    string
	// ToolCalls are an assistant message's calls of tools (api_version 1.5).
	ToolCalls []ToolCall
	// ToolCallID is, for a "tool" message, the id of the call it answers.
	ToolCallID string
}

// ToolCall is a call of a tool: the function's name and its arguments as JSON text.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// Tool is a function the model may call (api_version 1.5).
type Tool struct {
	Name        string
	Description string
	// Parameters is the JSON Schema of its arguments (JSON text; empty: any
	// object).
	Parameters []byte
}

// ToolChoice says whether, and which, tools the model calls.
type ToolChoice struct {
	// Mode is ToolChoiceAuto, ToolChoiceNone, ToolChoiceRequired or
	// ToolChoiceFunction (then Name is the function).
	Mode string
	Name string
}

// Tool choice modes.
const (
	ToolChoiceAuto     = "auto"
	ToolChoiceNone     = "none"
	ToolChoiceRequired = "required"
	ToolChoiceFunction = "function"
)

// ToolCallDelta is a piece of an answer's tool call: the first of a call carries its
// Index, ID and Name, later ones its Index and a fragment of its Arguments.
type ToolCallDelta struct {
	Index     int
	ID        string
	Name      string
	Arguments string
}

// Sampling holds the sampling parameters of a generation. Zero values mean
// "the backend's default", except where pointers distinguish unset from zero.
type Sampling struct {
	// Temperature 0 means greedy decoding.
	Temperature *float64
	TopP        *float64
	TopK        int
	MinP        float64
	// MaxTokens 0 means until a stop condition or the end of the context.
	MaxTokens int
	// Stop sequences end the generation; the matched text is not emitted,
	// and no partial match is ever emitted.
	Stop              []string
	Seed              *int64
	RepetitionPenalty float64
	PresencePenalty   float64
	FrequencyPenalty  float64
	Logprobs          bool
	TopLogprobs       int
	// StopTokenIDs end the generation when sampled (the token is not
	// emitted). IgnoreEOS keeps generating past end-of-generation tokens;
	// MinTokens forbids them before that many tokens. (vLLM's extras, API
	// 1.1: a backend that cannot honour them returns ErrUnsupported.)
	StopTokenIDs []int32
	IgnoreEOS    bool
	MinTokens    int
}

// GenerateRequest asks for a generation: either Messages (the plugin applies
// the model's chat template) or a raw Prompt.
type GenerateRequest struct {
	Messages  []Message
	Prompt    string
	Sampling  Sampling
	RequestID string
	// ResponseFormat, when not nil and not ResponseText, is the form the output
	// must have (api_version 1.5). The host sends it only to a plugin with
	// CapabilityStructuredOutput; a plugin that cannot honour a schema answers
	// InvalidRequest.
	ResponseFormat *ResponseFormat
	// Tools the model may call, and whether and which it calls (api_version 1.5;
	// sent only to a plugin with CapabilityTools). ParallelToolCalls nil means
	// true.
	Tools             []Tool
	ToolChoice        *ToolChoice
	ParallelToolCalls *bool
}

// ResponseFormat is the form a generation's output must have.
type ResponseFormat struct {
	// Type is ResponseText, ResponseJSONObject or ResponseJSONSchema.
	Type string
	// Schema is the JSON Schema (JSON text) of ResponseJSONSchema; package gbnf
	// turns it into a grammar.
	Schema []byte
}

// Response format types.
const (
	ResponseText       = "text"
	ResponseJSONObject = "json_object"
	ResponseJSONSchema = "json_schema"
)

// FinishReason says why a generation ended. It is empty on delta events.
type FinishReason string

// The finish reasons.
const (
	FinishStop      FinishReason = "stop"
	FinishLength    FinishReason = "length"
	FinishCancelled FinishReason = "cancelled"
	FinishError     FinishReason = "error"
	// FinishToolCalls: the answer is calls of tools (api_version 1.5).
	FinishToolCalls FinishReason = "tool_calls"
)

// TokenLogprob is the log probability of one generated token and its top
// alternatives.
type TokenLogprob struct {
	Token   string
	Logprob float64
	Top     []TopLogprob
}

// TopLogprob is one alternative token.
type TopLogprob struct {
	Token   string
	Logprob float64
}

// Usage counts tokens of one generation.
type Usage struct {
	PromptTokens     int
	CompletionTokens int
	// CachedTokens are prompt tokens served from a cache.
	CachedTokens int
}

// Event is one step of a generation. Delta events carry Text (the first may
// carry the prompt's Usage); the final event has FinishReason and Usage set (and
// may carry the last Text).
type Event struct {
	Text string
	// Tokens is how many tokens Text came from.
	Tokens   int
	Logprobs []TokenLogprob
	// FinishReason is set on the final event only.
	FinishReason FinishReason
	// Usage is set on the final event. A delta event may carry it early (API
	// 1.3): PromptTokens and CachedTokens once the prompt is evaluated, with the
	// first text, so that a generation cut short (cancelled, its client gone)
	// still reports the prompt it cost. The final event's Usage is the whole.
	Usage *Usage
	// Error says what went wrong when FinishReason is FinishError.
	Error string
	// ToolCalls are pieces of the answer's tool calls (api_version 1.5).
	ToolCalls []ToolCallDelta
}

// Final reports whether e is the last event of a generation.
func (e Event) Final() bool { return e.FinishReason != "" }

// EmbedRequest asks for embeddings of each input.
type EmbedRequest struct {
	Input []string
	// Truncate cuts an input longer than the model's limit
	// (ModelInfo.MaxInputTokens) to the limit, keeping its start, instead of
	// refusing it with ErrInvalidRequest. (API 1.2.)
	Truncate bool
}

// EmbedResponse holds one embedding per input, in order.
type EmbedResponse struct {
	Embeddings   [][]float32
	PromptTokens int
}

// Health is a plugin's liveness and load.
type Health struct {
	OK bool
	// Running is the number of sequences generating now.
	Running int
	// Waiting is the number of requests queued inside the plugin.
	Waiting int
	// Slots is the number of sequence slots.
	Slots   int
	Message string
}
