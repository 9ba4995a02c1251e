package api_test

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/workers"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestEmbeddings(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	vecs := [][]float32{{0.5, -1.25, 3e-8, 1e20}, {0, 1, 2, 3}}
	var got sdk.EmbedRequest
	s.fake.SetEmbed(func(_ context.Context, model string, req sdk.EmbedRequest) (sdk.EmbedResponse, error) {
		got = req
		return sdk.EmbedResponse{Embeddings: vecs[:len(req.Input)], PromptTokens: 6}, nil
	})
	type embedResp struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string `json:"object"`
			Index     int    `json:"index"`
			Embedding any    `json:"embedding"`
		} `json:"data"`
		Model string         `json:"model"`
		Usage map[string]int `json:"usage"`
	}
	var out embedResp
	decodeJSON(t, s.post(t, "/v1/embeddings", `{"model":"embed","input":["first","second"],"user":"x"}`), 200, &out)
	if !reflect.DeepEqual(got.Input, []string{"first", "second"}) {
		t.Errorf("backend input %v", got.Input)
	}
	if out.Object != "list" || out.Model != "embed" || len(out.Data) != 2 || out.Usage["prompt_tokens"] != 6 || out.Usage["total_tokens"] != 6 {
		t.Fatalf("%+v", out)
	}
	for i, d := range out.Data {
		if d.Object != "embedding" || d.Index != i {
			t.Errorf("item %+v", d)
		}
		arr := d.Embedding.([]any)
		for k, v := range arr {
			if float32(v.(float64)) != vecs[i][k] {
				t.Errorf("embedding[%d][%d] = %v, want %v", i, k, v, vecs[i][k])
			}
		}
	}

	out = embedResp{}
	decodeJSON(t, s.post(t, "/v1/embeddings", `{"model":"embed","input":"single","encoding_format":"base64"}`), 200, &out)
	raw, err := base64.StdEncoding.DecodeString(out.Data[0].Embedding.(string))
	if err != nil || len(raw) != 16 {
		t.Fatalf("base64 %v: %v", out.Data[0].Embedding, err)
	}
	for k := range 4 {
		if f := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:])); f != vecs[0][k] {
			t.Errorf("base64 float %d = %v, want %v", k, f, vecs[0][k])
		}
	}

	s.fake.SetEmbed(func(context.Context, string, sdk.EmbedRequest) (sdk.EmbedResponse, error) {
		return sdk.EmbedResponse{Embeddings: vecs[:1]}, nil
	})
	checkError(t, s.post(t, "/v1/embeddings", `{"model":"embed","input":["a","b"]}`), 502, "server_error", "backend_error", "")
}

func TestHealthAndReadiness(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	type ready struct {
		Status string `json:"status"`
		Models []struct {
			Name     string `json:"name"`
			Ready    bool   `json:"ready"`
			Replicas []struct {
				ID        int    `json:"id"`
				State     string `json:"state"`
				Pid       int    `json:"pid"`
				Restarts  int    `json:"restarts"`
				LastError string `json:"last_error"`
			} `json:"replicas"`
		} `json:"models"`
	}
	var r ready
	decodeJSON(t, s.do(t, "GET", "/readyz", ""), 200, &r)
	if r.Status != "ready" || len(r.Models) != 2 || !r.Models[0].Ready || r.Models[0].Replicas[0].State != "ready" || r.Models[0].Replicas[0].Pid != 4242 {
		t.Errorf("readyz %+v", r)
	}

	failed := apitest.ReadyModel("chat")
	failed.Replicas = []workers.ReplicaStatus{
		{ID: 0, State: workers.StateFailed, Restarts: 5, LastError: "exit status 1: cannot load model"},
		{ID: 1, State: workers.StateStopped},
	}
	s.fake.SetModels(failed, apitest.EmbeddingModel("embed"))
	r = ready{}
	decodeJSON(t, s.do(t, "GET", "/readyz", ""), 503, &r)
	if r.Status != "unavailable" || r.Models[0].Ready || !r.Models[1].Ready {
		t.Errorf("readyz %+v", r)
	}
	rep := r.Models[0].Replicas[0]
	if rep.State != "failed" || rep.Restarts != 5 || rep.LastError != "exit status 1: cannot load model" {
		t.Errorf("replica %+v", rep)
	}
	var h map[string]string
	decodeJSON(t, s.do(t, "GET", "/healthz", ""), 200, &h)
	if h["status"] != "ok" {
		t.Errorf("healthz %v", h)
	}
}

func TestMetrics(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	s.fake.SetGenerate(apitest.Script([]string{"a", "b"}, sdk.FinishStop, sdk.Usage{PromptTokens: 3, CompletionTokens: 2}))
	readAll(t, s.post(t, "/v1/chat/completions", `{"model":"default","messages":[{"role":"user","content":"x"}]}`))
	readSSE(t, s.post(t, "/v1/chat/completions", `{"model":"chat","stream":true,"messages":[{"role":"user","content":"x"}]}`))
	readAll(t, s.post(t, "/v1/chat/completions", `{"model":"random-name-1","messages":[{"role":"user","content":"x"}]}`))
	resp := s.do(t, "GET", "/metrics", "")
	body := string(readAll(t, resp))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, want := range []string{
		`ragway_requests_total{model="chat",route="/v1/chat/completions",status="200"} 2`,
		`ragway_requests_total{model="",route="/v1/chat/completions",status="404"} 1`,
		`ragway_tokens_total{kind="prompt",model="chat"} 6`,
		`ragway_tokens_total{kind="completion",model="chat"} 4`,
		`ragway_time_to_first_token_seconds_count{model="chat"} 2`,
		`ragway_request_duration_seconds_count{model="chat",route="/v1/chat/completions"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "random-name-1") {
		t.Error("a client-chosen model name became a label value")
	}
}
