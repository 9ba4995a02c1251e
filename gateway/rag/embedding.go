package rag

import (
	"context"
	"fmt"

	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// EmbeddingModel is the embedding model as indexing and retrieval use it: it embeds
// texts and counts their tokens against its limit per input. *ModelEmbedder
// implements it over the gateway's workers.
type EmbeddingModel interface {
	// Embed returns one vector per text, in order. With truncate, a text over the
	// model's limit is cut to the limit (its start is kept) before it is embedded;
	// without, such a text is an error.
	Embed(ctx context.Context, texts []string, truncate bool) ([][]float32, error)
	// Tokenize returns the number of tokens of each text as the model counts them
	// for embedding, and the most tokens one text may have (0: the model does not
	// say). A model that cannot count answers an error wrapping sdk.ErrUnsupported.
	Tokenize(ctx context.Context, texts []string) (counts []int, limit int, err error)
}

// Models is what ModelEmbedder needs of the workers (*workers.Manager implements
// it).
type Models interface {
	Embed(ctx context.Context, model string, req sdk.EmbedRequest) (sdk.EmbedResponse, error)
	Tokenize(ctx context.Context, model string, req sdk.TokenizeRequest) (sdk.TokenizeResponse, error)
	Model(name string) (workers.ModelStatus, bool)
}

// ModelEmbedder is the embedding model Name (rag.embedding_model) served by Models.
type ModelEmbedder struct {
	Models Models
	Name   string
}

var _ EmbeddingModel = (*ModelEmbedder)(nil)

// NewModelEmbedder returns the embedding model name served by models.
func NewModelEmbedder(models Models, name string) *ModelEmbedder {
	return &ModelEmbedder{Models: models, Name: name}
}

// Embed implements EmbeddingModel.
func (m *ModelEmbedder) Embed(ctx context.Context, texts []string, truncate bool) ([][]float32, error) {
	resp, err := m.Models.Embed(ctx, m.Name, sdk.EmbedRequest{Input: texts, Truncate: truncate})
	if err != nil {
		return nil, err
	}
	if len(resp.Embeddings) != len(texts) {
		return nil, fmt.Errorf("embedding model %q returned %d vectors for %d texts", m.Name, len(resp.Embeddings), len(texts))
	}
	return resp.Embeddings, nil
}

// Tokenize implements EmbeddingModel. The limit is the one the model's replicas
// reported when they loaded (workers.ModelStatus.MaxInputTokens); a replica has
// loaded by the time the counts come back.
func (m *ModelEmbedder) Tokenize(ctx context.Context, texts []string) ([]int, int, error) {
	resp, err := m.Models.Tokenize(ctx, m.Name, sdk.TokenizeRequest{Input: texts})
	if err != nil {
		return nil, 0, err
	}
	if len(resp.Counts) != len(texts) {
		return nil, 0, fmt.Errorf("embedding model %q returned %d token counts for %d texts", m.Name, len(resp.Counts), len(texts))
	}
	st, _ := m.Models.Model(m.Name)
	return resp.Counts, st.MaxInputTokens, nil
}
