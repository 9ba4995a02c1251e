package api_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/chat"
)

type groundedResponse struct {
	Sources []struct {
		N          int     `json:"n"`
		DocumentID string  `json:"document_id"`
		Title      string  `json:"title"`
		ChunkID    string  `json:"chunk_id"`
		Score      float64 `json:"score"`
		Snippet    string  `json:"snippet"`
	} `json:"sources"`
	Warning string `json:"warning"`
}

func TestChatWithRAG(t *testing.T) {
	svc, vs := apitest.KnowledgeBase(t)
	s := start(t, newFake(), api.Options{Chat: &chat.Service{RAG: svc}})

	t.Run("sources in the prompt and the response", func(t *testing.T) {
		resp := s.post(t, "/v1/chat/completions", `{"model":"default","rag":{"knowledge_base":"docs"},
			"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"what if postgres is down?"}]}`)
		var out groundedResponse
		decodeJSON(t, resp, 200, &out)
		if len(out.Sources) != 1 || out.Sources[0].N != 1 || out.Sources[0].ChunkID != apitest.ChunkID || out.Sources[0].Title != "Operations guide" ||
			out.Sources[0].DocumentID != apitest.DocumentID || out.Sources[0].Score <= 0 || !strings.Contains(out.Sources[0].Snippet, "503") || out.Warning != "" {
			t.Fatalf("sources %+v warning %q", out.Sources, out.Warning)
		}
		calls := s.fake.Calls()
		msgs := calls[len(calls)-1].Req.Messages
		if len(msgs) != 3 || msgs[1].Role != "system" || !strings.Contains(msgs[1].Content, "[1] Operations guide — Operations guide > Outages") ||
			msgs[2].Content != "what if postgres is down?" {
			t.Fatalf("the backend got %+v", msgs)
		}
	})

	t.Run("a last SSE event carries the sources", func(t *testing.T) {
		resp := s.post(t, "/v1/chat/completions", `{"model":"default","stream":true,"messages":[{"role":"user","content":"postgres down"}]}`,
			"X-Ragway-KB", "docs")
		data := dataEvents(readSSE(t, resp))
		if len(data) < 2 || data[len(data)-1] != "[DONE]" {
			t.Fatalf("events %q", data)
		}
		var ev struct {
			Object string `json:"object"`
			groundedResponse
		}
		if err := json.Unmarshal([]byte(data[len(data)-2]), &ev); err != nil || ev.Object != "chat.completion.sources" || len(ev.Sources) != 1 {
			t.Fatalf("the event before [DONE] is %s (%v)", data[len(data)-2], err)
		}
	})

	t.Run("unknown knowledge base", func(t *testing.T) {
		resp := s.post(t, "/v1/chat/completions", `{"model":"default","rag":{"knowledge_base":"nope"},"messages":[{"role":"user","content":"x"}]}`)
		checkError(t, resp, 404, "invalid_request_error", "not_found", "rag.knowledge_base")
	})

	t.Run("nothing matches: a warning, no sources", func(t *testing.T) {
		resp := s.post(t, "/v1/chat/completions", `{"model":"default","rag":{"knowledge_base":"docs"},"messages":[{"role":"user","content":"bananas"}]}`)
		var out groundedResponse
		decodeJSON(t, resp, 200, &out)
		if len(out.Sources) != 0 || !strings.Contains(out.Warning, "nothing") {
			t.Fatalf("sources %+v warning %q", out.Sources, out.Warning)
		}
	})

	t.Run("the index is down: the answer proceeds and says so", func(t *testing.T) {
		vs.Close()
		resp := s.post(t, "/v1/chat/completions", `{"model":"default","rag":{"knowledge_base":"docs","top_k":2},"messages":[{"role":"user","content":"postgres down"}]}`)
		var out groundedResponse
		decodeJSON(t, resp, 200, &out)
		if len(out.Sources) != 0 || !strings.Contains(out.Warning, "without") {
			t.Fatalf("sources %+v warning %q", out.Sources, out.Warning)
		}
	})
}

func TestChatWithRAGRefused(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	resp := s.post(t, "/v1/chat/completions", `{"model":"default","rag":{"knowledge_base":"docs"},"messages":[{"role":"user","content":"x"}]}`)
	checkError(t, resp, 400, "invalid_request_error", "unsupported", "rag")

	svc, _ := apitest.KnowledgeBase(t)
	s = start(t, newFake(), api.Options{Chat: &chat.Service{RAG: svc}})
	resp = s.post(t, "/v1/chat/completions", `{"model":"default","rag":{"knowledge_base":"docs","top_k":99},"messages":[{"role":"user","content":"x"}]}`)
	checkError(t, resp, 400, "invalid_request_error", "invalid_value", "rag.top_k")
	resp = s.post(t, "/v1/chat/completions", `{"model":"default","rag":{},"messages":[{"role":"user","content":"x"}]}`)
	checkError(t, resp, 400, "invalid_request_error", "missing_required_parameter", "rag.knowledge_base")
}
