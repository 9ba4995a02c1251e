package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragway/ragway/internal/testbin"
)

// buildNulecho builds the test plugin of testdata/nulecho (answers with NUL in them)
// and returns the models YAML serving it as model "nul".
func buildNulecho(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ragway-nulecho")
	cmd := exec.Command("go", "build", "-o", bin, "./e2e/testdata/nulecho")
	cmd.Dir = testbin.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build nulecho: %v\n%s", err, out)
	}
	return fmt.Sprintf("  - {name: nul, backend: nulecho, command: %q, replicas: 1, max_concurrency: 4}\n%s", bin, echoModels)
}

// TestModelEmittingNULKeepsItsAnswer: a real plugin whose answer holds NUL characters
// (to a question that holds none) has its answer stored, and the client reads the same
// text the conversation keeps, over HTTP, SSE and WebSocket: NUL becomes U+FFFD.
func TestModelEmittingNULKeepsItsAnswer(t *testing.T) {
	g := startGateway(t, buildNulecho(t))
	const question, want = `say a\0b and \0`, "say a\ufffdb and \ufffd"
	answer := func(id string) storedMessage {
		t.Helper()
		c := g.conversation(g.Key, id)
		if len(c.Messages) != 2 || c.Messages[0].Content != question {
			t.Fatalf("conversation %s holds %+v", id, c.Messages)
		}
		return c.Messages[1]
	}

	out, _ := postChat(t, g, g.Key, chatInConversation("nul", "new", question, false))
	if got := out.Choices[0].Message.Content; got != want {
		t.Errorf("HTTP: client read %q, want %q", got, want)
	}
	if m := answer(out.ConversationID); m.Content != want || m.Status != "complete" {
		t.Errorf("HTTP: stored %q (%s), want %q complete", m.Content, m.Status, want)
	}

	text, _, h := streamChat(t, g, g.Key, chatInConversation("nul", "new", question, true))
	if text != want {
		t.Errorf("SSE: client read %q, want %q", text, want)
	}
	if m := answer(h.Get("X-Ragway-Conversation-Id")); m.Content != want || m.Status != "complete" {
		t.Errorf("SSE: stored %q (%s), want %q complete", m.Content, m.Status, want)
	}

	c := dialWSKey(t, g, g.Key, "")
	r := runWSChat(t, c, storedChat("w1", "nul", "", question))
	if r.End.Type != "done" || r.Text != want {
		t.Errorf("WebSocket: client read %q, ended by %s; want %q and done", r.Text, r.End.raw, want)
	}
	if m := answer(r.Start.ConversationID); m.Content != want || m.Status != "complete" {
		t.Errorf("WebSocket: stored %q (%s), want %q complete", m.Content, m.Status, want)
	}

	// A NUL the client sends to a chat that is not stored reaches the model; what comes
	// back follows the same rule.
	code, body := g.post("/v1/completions", `{"model":"chat","prompt":"x\u0000y"}`)
	var cmpl struct {
		Choices []struct{ Text string } `json:"choices"`
	}
	decode(t, "completion", code, body, 200, &cmpl)
	if got := cmpl.Choices[0].Text; got != "x\ufffdy" {
		t.Errorf("completions: client read %q, want %q", got, "x\ufffdy")
	}
}

// TestStoredTextWithNULIsRefused: NUL in a text that would be stored is a 400 naming
// the field, with a message that says so and nothing of Postgres's, before any write.
func TestStoredTextWithNULIsRefused(t *testing.T) {
	g := startGateway(t, echoModels)
	for _, c := range []struct{ path, body, param string }{
		{"/v1/chat/completions", `{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"},{"role":"user","content":"a\u0000b"}]}`, "messages[2].content"},
		{"/v1/conversations", `{"title":"t\u0000"}`, "title"},
		{"/v1/knowledge-bases", `{"name":"n\u0000"}`, "name"},
		{"/v1/knowledge-bases", `{"name":"n","description":"\u0000"}`, "description"},
	} {
		code, body := g.post(c.path, c.body)
		e := wantAPIError(t, c.path+" "+c.param, code, body, http.StatusBadRequest, "invalid_value")
		if e.Param != c.param {
			t.Errorf("%s: param %v, want %q", c.path, e.Param, c.param)
		}
		for _, bad := range []string{"UTF8", "store:", "invalid byte sequence", "0x00"} {
			if strings.Contains(e.Message, bad) {
				t.Errorf("%s: message %q carries %q", c.path, e.Message, bad)
			}
		}
	}
	c := dialWSKey(t, g, g.Key, "")
	r := runWSChat(t, c, storedChat("w1", "chat", "", "a\x00b"))
	if r.End.Type != "error" || r.End.Error == nil || r.End.Error.Param != "content" {
		t.Errorf("WebSocket: %s, want an error naming 'content'", r.End.raw)
	}
	if ids := g.conversationIDs(g.Key); len(ids) != 0 {
		t.Errorf("conversations were stored: %v", ids)
	}
	var kbs struct{ Data []json.RawMessage }
	if code, body := g.getJSON("/v1/knowledge-bases", g.Key, &kbs); code != 200 || len(kbs.Data) != 0 {
		t.Errorf("knowledge bases: %d %s", code, body)
	}
}

// TestDeleteKnowledgeBaseDuringUploads deletes knowledge bases while documents are
// uploaded into them, many times: no request gets a 5xx; an upload into a knowledge
// base that is gone gets 404.
func TestDeleteKnowledgeBaseDuringUploads(t *testing.T) {
	g := startGateway(t, echoModels)
	const rounds, uploads = 15, 6
	text := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit. ", 400)
	for round := range rounds {
		kb := fmt.Sprintf("kb%d", round)
		code, body := g.post("/v1/knowledge-bases", `{"name":"`+kb+`"}`)
		decode(t, "create "+kb, code, body, 201, nil)
		var (
			wg      sync.WaitGroup
			started = make(chan struct{}, uploads)
			mu      sync.Mutex
			bad     []string
		)
		note := func(what string, code int, body []byte) {
			mu.Lock()
			bad = append(bad, fmt.Sprintf("round %d: %s: %d %s", round, what, code, body))
			mu.Unlock()
		}
		for i := range uploads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				doc := fmt.Sprintf(`{"title":"d%d","text":%s}`, i, jsonString(fmt.Sprintf("%d %s", i, text)))
				resp, err := g.send("POST", "/v1/knowledge-bases/"+kb+"/documents?wait=true", g.Key, doc)
				started <- struct{}{}
				if err != nil {
					note("upload", 0, []byte(err.Error()))
					return
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				switch resp.StatusCode {
				case 201, 202, 404:
				default:
					note("upload", resp.StatusCode, b)
				}
			}()
		}
		// Delete while the uploads index.
		<-started
		if code, body := g.call("DELETE", "/v1/knowledge-bases/"+kb, g.Key, ""); code != 200 && code != 404 {
			note("delete", code, body)
		}
		wg.Wait()
		for _, b := range bad {
			t.Error(b)
		}
		if t.Failed() {
			return
		}
	}
	if strings.Contains(g.Logs(), "deadlock") {
		t.Errorf("the gateway logged a deadlock:\n%s", g.Logs())
	}
}

// TestUnavailableModelErrorCarriesNoStderr: a model whose plugin keeps dying is a 503
// for its clients that says so in words, without the plugin's exit status or stderr
// (which the operator sees in /readyz and the log).
func TestUnavailableModelErrorCarriesNoStderr(t *testing.T) {
	g := launchGateway(t, echoModels+`
  - {name: broken, backend: echo, options: {fail_load: exit}}
`)
	g.waitFor("broken to be failed", 30*time.Second, func(code int, r readiness) bool {
		for _, m := range r.Models {
			if m.Name == "broken" && len(m.Replicas) == 1 && m.Replicas[0].State == "failed" {
				return true
			}
		}
		return false
	})
	for _, stream := range []bool{false, true} {
		code, body := g.post("/v1/chat/completions", chatBody("broken", "hi", stream))
		e := wantAPIError(t, "chat with a failed model", code, body, http.StatusServiceUnavailable, "model_unavailable")
		for _, bad := range []string{"stderr", "exit", "fail_load", "status 2", "broken\""} {
			if strings.Contains(e.Message, bad) {
				t.Errorf("message %q carries %q", e.Message, bad)
			}
		}
	}
}
