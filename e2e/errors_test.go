package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestBadRequests(t *testing.T) {
	g := startGateway(t, echoModels)
	big := `{"model":"chat","messages":[{"role":"user","content":"` + strings.Repeat("x", 5<<20) + `"}]}`
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		param                    string
	}{
		{"invalid JSON", "POST", "/v1/chat/completions", `{"model":`, 400, ""},
		{"messages of wrong type", "POST", "/v1/chat/completions", `{"model":"chat","messages":"hi"}`, 400, "messages"},
		{"no messages", "POST", "/v1/chat/completions", `{"model":"chat","messages":[]}`, 400, "messages"},
		{"unknown model", "POST", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`, 404, "model"},
		{"temperature out of range", "POST", "/v1/chat/completions", `{"model":"chat","temperature":5,"messages":[{"role":"user","content":"hi"}]}`, 400, "temperature"},
		{"n zero", "POST", "/v1/chat/completions", `{"model":"chat","n":0,"messages":[{"role":"user","content":"hi"}]}`, 400, "n"},
		{"bad role", "POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"wizard","content":"hi"}]}`, 400, ""},
		{"completion prompt of tokens", "POST", "/v1/completions", `{"model":"chat","prompt":[1,2,3]}`, 400, "prompt"},
		{"embeddings on a chat model", "POST", "/v1/embeddings", `{"model":"chat","input":"hi"}`, 400, ""},
		{"oversize body", "POST", "/v1/chat/completions", big, 413, ""},
		{"unknown route", "GET", "/v1/nothing", "", 404, ""},
		{"wrong method", "GET", "/v1/chat/completions", "", 405, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, g.URL+c.path, strings.NewReader(c.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+g.Key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e struct {
				Error struct {
					Message string  `json:"message"`
					Type    string  `json:"type"`
					Param   *string `json:"param"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatalf("status %d, body is not the OpenAI error shape: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != c.status || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("status %d error %+v, want %d with message and type", resp.StatusCode, e.Error, c.status)
			}
			if c.param != "" && (e.Error.Param == nil || *e.Error.Param != c.param) {
				t.Fatalf("param = %v, want %q", e.Error.Param, c.param)
			}
		})
	}
	// The gateway is unharmed.
	if code, body := g.post("/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"still here"}]}`); code != 200 || !strings.Contains(string(body), "still here") {
		t.Fatalf("after bad requests: %d %s", code, body)
	}
}
