package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ragway/ragway/internal/testbin"
)

// TestNPMOpenAIClient: the npm openai package (pinned in e2e/node, installed by task
// setup:e2e-node) against the gateway: tools non-streamed and streamed (its stream
// helper assembles the calls), a named tool choice and its result fed back,
// response_format json_schema, and responses.create, continued and streamed.
func TestNPMOpenAIClient(t *testing.T) {
	module := filepath.Join(testbin.Root(), ".data", "e2e-node", "node_modules", "openai", "index.mjs")
	if _, err := os.Stat(module); err != nil {
		t.Fatalf("the npm openai package is not installed: task setup:e2e-node installs it (%v)", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: task setup:e2e-node installs it (%v)", err)
	}
	lib, model := llamaFixtures(t)
	g := startGateway(t, fmt.Sprintf(`
  - {name: chat, backend: llamacpp, max_concurrency: 4, options: {model_path: %q, lib_path: %q, threads: 1, parallel: 2, context_length: 1024}}
  - {name: echo, backend: echo}
`, model, lib))
	cmd := exec.Command(node, filepath.Join(testbin.Root(), "e2e", "node", "openai-check.mjs"))
	cmd.Env = append(os.Environ(), "RAGWAY_URL="+g.URL, "RAGWAY_KEY="+g.Key, "OPENAI_MODULE="+(&url.URL{Scheme: "file", Path: module}).String())
	raw, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("openai-check.mjs: %v\n%s", err, stderr)
	}
	type toolCall struct {
		ID       string
		Type     string
		Function struct{ Name, Arguments string }
	}
	var out struct {
		Required, Streamed struct {
			Finish string
			Calls  []toolCall
		}
		Named struct {
			Name, Arguments                 string
			PromptTokens, AfterPromptTokens int
		}
		Structured string
		Responses  struct {
			First struct {
				ID, Text string
				Input    int
			}
			Second struct {
				Text  string
				Input int
			}
			Events       []string
			StreamedText string
		}
		ResponsesTools struct {
			Name, Arguments, CallID, Status string
			Input, AfterInput               int
		}
		Refused struct {
			Status int
			Param  string
		}
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("the script's output %s: %v", raw, err)
	}
	schema := compileSchema(t, weatherParams)
	for what, r := range map[string]struct {
		Finish string
		Calls  []toolCall
	}{"required": out.Required, "streamed": out.Streamed} {
		if r.Finish != "tool_calls" || len(r.Calls) != 1 || r.Calls[0].Function.Name != "get_weather" || r.Calls[0].ID == "" || r.Calls[0].Type != "function" {
			t.Fatalf("%s: %+v", what, r)
		}
		validateJSON(t, schema, what+" call's arguments", r.Calls[0].Function.Arguments)
	}
	validateJSON(t, schema, "the named call's arguments", out.Named.Arguments)
	if rt := out.ResponsesTools; rt.Name != "get_weather" || rt.CallID == "" || rt.AfterInput <= rt.Input || rt.Status == "" {
		t.Fatalf("a stored response's call and its output: %+v", rt)
	}
	validateJSON(t, schema, "the stored response's call's arguments", out.ResponsesTools.Arguments)
	if out.Named.Name != "get_weather" || out.Named.AfterPromptTokens <= out.Named.PromptTokens {
		t.Fatalf("named: %+v", out.Named)
	}
	validateJSON(t, schema, "the structured answer", out.Structured)
	rs := out.Responses
	if rs.First.Text != "tell me about ships" || rs.Second.Text != "and boats" || rs.Second.Input <= rs.First.Input || rs.StreamedText != "one two three" ||
		!slices.Contains(rs.Events, "response.completed") || rs.Events[0] != "response.created" {
		t.Fatalf("responses: %+v", rs)
	}
	if out.Refused.Status != 400 || out.Refused.Param != "tool_choice" {
		t.Fatalf("refused: %+v", out.Refused)
	}
}
