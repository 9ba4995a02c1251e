package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/metrics"
)

// checkAnswer fails unless an answer to hostile input is a success or a client error
// in the OpenAI shape: never a server error.
func checkAnswer(t *testing.T, status int, body []byte) {
	t.Helper()
	switch {
	case status >= 500:
		t.Fatalf("status %d: %s", status, body)
	case status >= 400:
		var e struct {
			Error *struct {
				Message string `json:"message"`
				Type    string `json:"type"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Message == "" || e.Error.Type == "" {
			t.Fatalf("status %d without the error shape: %s", status, body)
		}
	}
}

// FuzzChatRequest sends any body to /v1/chat/completions and /v1/completions: each
// answer is a success or a 4xx in the OpenAI shape. Under plain `go test` it runs
// the seeds only; task test runs it for a few seconds.
func FuzzChatRequest(f *testing.F) {
	for _, s := range []string{
		`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"chat","messages":[{"role":"user","content":[{"type":"text","text":"x\u0000"}]}],"n":2,"stop":["a"]}`,
		`{"model":"chat","messages":[{"role":"system","content":"s"},{"role":"user","content":"q"}],"temperature":1e400}`,
		`{"model":"chat","prompt":["a","b"],"max_tokens":-1,"logprobs":3}`,
		`{"model":"embed","messages":[]}`,
		"{\"model\":\"chat\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}",
		`[]`, `null`, `{"model":{"x":1}}`,
	} {
		f.Add([]byte(s), false)
	}
	app := api.New(apitest.New(apitest.ReadyModel("chat", "default"), apitest.EmbeddingModel("embed")),
		api.Options{Logger: quietLogger(), Metrics: metrics.New(), Gate: apitest.Gate{}})
	f.Fuzz(func(t *testing.T, body []byte, completions bool) {
		path := "/v1/chat/completions"
		if completions {
			path = "/v1/completions"
		}
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apitest.Key)
		resp, err := app.Test(req, -1)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		checkAnswer(t, resp.StatusCode, b)
	})
}

// FuzzDocumentUpload sends any body, as a multipart form or as JSON, to the upload
// route of a real knowledge base (real Postgres, indexed before the answer): each
// answer is a success or a 4xx in the OpenAI shape.
func FuzzDocumentUpload(f *testing.F) {
	ct, form := upload(f, "notes.md", "Notes", "# Notes\n\nThe sea is wide.\n")
	f.Add(form, true)
	_, form = upload(f, "a\x00b.txt", "t\xff", "text")
	f.Add(form, true)
	_, form = upload(f, "x.pdf", "", "%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>")
	f.Add(form, true)
	f.Add([]byte(`{"text":"Plain text.","title":"T","format":"markdown"}`), false)
	f.Add([]byte(`{"text":"<html><title>\u0000</title><p>x</p>","format":"html"}`), false)
	f.Add([]byte(`{"text":null}`), false)
	boundary := ct[strings.Index(ct, "boundary=")+len("boundary="):]
	s := startReal(f, api.Options{})
	key := s.key(f, "fuzz", "ingest")
	if code, b := s.send(f, "POST", "/v1/knowledge-bases", key, "application/json", []byte(`{"name":"docs"}`)); code != 201 {
		f.Fatalf("create: %d %s", code, b)
	}
	f.Fuzz(func(t *testing.T, body []byte, multipartForm bool) {
		ct := "application/json"
		if multipartForm {
			ct = "multipart/form-data; boundary=" + boundary
		}
		code, b := s.send(t, "POST", "/v1/knowledge-bases/docs/documents?wait=true", key, ct, body)
		checkAnswer(t, code, b)
	})
}
