-- Retrieval per knowledge base. analyzer names the rules (rag.Analyzer) that made the
-- sparse vectors of a knowledge base's chunks: a gateway that starts with newer rules
-- computes them again from the stored text and then raises it, so that questions and
-- documents always meet on the same terms. Knowledge bases that exist now were made by
-- the first rules (1); new ones by the current rules (the default, raised by the
-- migration that changes them). retrieval holds the knowledge base's own retrieval
-- settings over the gateway's rag block ({} = none): fusion, rrf_k, dense_weight,
-- rerank, rerank_candidates, chunk_tokens, chunk_overlap (gateway/rag.Settings).

-- +goose Up
ALTER TABLE knowledge_bases
    ADD COLUMN analyzer int NOT NULL DEFAULT 1 CHECK (analyzer >= 1),
    ADD COLUMN retrieval jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(retrieval) = 'object');
ALTER TABLE knowledge_bases ALTER COLUMN analyzer SET DEFAULT 2;

-- +goose Down
ALTER TABLE knowledge_bases DROP COLUMN retrieval, DROP COLUMN analyzer;
