-- The analyzer rules (rag.Analyzer) are recorded per chunk, not per knowledge base:
-- a gateway of an older version still running beside newer ones writes chunks by the
-- older rules, and those chunks must be found and analysed again. A chunk written
-- without saying (by such a gateway) is of the first rules (1); a gateway writes the
-- rules it used. Chunks of the rules 00011 recorded on their knowledge base keep them.

-- +goose Up
ALTER TABLE chunks ADD COLUMN analyzer smallint NOT NULL DEFAULT 1 CHECK (analyzer >= 1);
UPDATE chunks c SET analyzer = k.analyzer FROM knowledge_bases k WHERE c.kb_id = k.id AND k.analyzer > 1;
CREATE INDEX chunks_analyzer ON chunks (analyzer);
ALTER TABLE knowledge_bases DROP COLUMN analyzer;

-- +goose Down
ALTER TABLE knowledge_bases ADD COLUMN analyzer int NOT NULL DEFAULT 1 CHECK (analyzer >= 1);
DROP INDEX chunks_analyzer;
ALTER TABLE chunks DROP COLUMN analyzer;
