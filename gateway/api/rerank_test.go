package api_test

import (
	"context"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

type rerankResp struct {
	ID      string         `json:"id"`
	Model   string         `json:"model"`
	Usage   map[string]int `json:"usage"`
	Results []struct {
		Index    int     `json:"index"`
		Score    float64 `json:"relevance_score"`
		Document *struct {
			Text string `json:"text"`
		} `json:"document"`
	} `json:"results"`
}

func TestRerank(t *testing.T) {
	s := start(t, apitest.New(apitest.ReadyModel("chat"), apitest.EmbeddingModel("embed"), apitest.RerankModel("rank")), api.Options{})
	var got sdk.RerankRequest
	s.fake.SetRerank(func(ctx context.Context, model string, req sdk.RerankRequest) (sdk.RerankResponse, error) {
		got = req
		return apitest.OverlapRerank(ctx, model, req)
	})
	var out rerankResp
	decodeJSON(t, s.post(t, "/v1/rerank", `{"model":"rank","query":"postgres down","documents":["keys are hashed",{"text":"when postgres is down"},"postgres restarts"]}`), 200, &out)
	if got.Query != "postgres down" || len(got.Documents) != 3 || got.Documents[1] != "when postgres is down" {
		t.Fatalf("backend request %+v", got)
	}
	if out.Model != "rank" || !strings.HasPrefix(out.ID, "rerank-") || out.Usage["prompt_tokens"] == 0 || out.Usage["total_tokens"] != out.Usage["prompt_tokens"] {
		t.Fatalf("response %+v", out)
	}
	// Most relevant first, with the request's index and text.
	if len(out.Results) != 3 || out.Results[0].Index != 1 || out.Results[0].Score != 2 || out.Results[1].Index != 2 ||
		out.Results[2].Index != 0 || out.Results[0].Document == nil || out.Results[0].Document.Text != "when postgres is down" {
		t.Fatalf("results %+v", out.Results)
	}
	out = rerankResp{}
	decodeJSON(t, s.post(t, "/v1/rerank", `{"model":"rank","query":"postgres","documents":["a","postgres","b"],"top_n":1,"return_documents":false}`), 200, &out)
	if len(out.Results) != 1 || out.Results[0].Index != 1 || out.Results[0].Document != nil {
		t.Fatalf("top_n 1 without documents: %+v", out.Results)
	}

	for _, tc := range []struct {
		body, code, param string
	}{
		{`{"model":"chat","query":"q","documents":["a"]}`, "invalid_value", "model"},
		{`{"model":"embed","query":"q","documents":["a"]}`, "invalid_value", "model"},
		{`{"model":"rank","documents":["a"]}`, "missing_required_parameter", "query"},
		{`{"model":"rank","query":"","documents":["a"]}`, "invalid_value", "query"},
		{`{"model":"rank","query":"q"}`, "missing_required_parameter", "documents"},
		{`{"model":"rank","query":"q","documents":[]}`, "invalid_value", "documents"},
		{`{"model":"rank","query":"q","documents":"a"}`, "invalid_type", "documents"},
		{`{"model":"rank","query":"q","documents":["a",""]}`, "invalid_value", "documents[1]"},
		{`{"model":"rank","query":"q","documents":["a",3]}`, "invalid_type", "documents[1]"},
		{`{"model":"rank","query":"q","documents":[{"txt":"a"}]}`, "unknown_parameter", "documents[0].txt"},
		{`{"model":"rank","query":"q","documents":[{}]}`, "missing_required_parameter", "documents[0].text"},
		{`{"model":"rank","query":"q","documents":["a"],"top_n":0}`, "invalid_value", "top_n"},
		{`{"model":"rank","query":"q","documents":["a"],"truncate_prompt_tokens":10}`, "unknown_parameter", "truncate_prompt_tokens"},
		{`{"model":"rank","query":"q","documents":[` + strings.Repeat(`"a",`, api.MaxRerankDocuments) + `"a"]}`, "invalid_value", "documents"},
	} {
		checkError(t, s.post(t, "/v1/rerank", tc.body), 400, "invalid_request_error", tc.code, tc.param)
	}
	checkError(t, s.post(t, "/v1/chat/completions", `{"model":"rank","messages":[{"role":"user","content":"hi"}]}`), 400, "invalid_request_error", "invalid_value", "model")

	s.fake.SetRerank(func(context.Context, string, sdk.RerankRequest) (sdk.RerankResponse, error) {
		return sdk.RerankResponse{Scores: []float32{1}}, nil
	})
	checkError(t, s.post(t, "/v1/rerank", `{"model":"rank","query":"q","documents":["a","b"]}`), 502, "server_error", "backend_error", "")
}
