package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"

	"github.com/ragway/ragway/gateway/evaluate"
)

// evalCmd runs `ragway eval --kb NAME --qa FILE`: every question of the file through
// the gateway's search (the path chats retrieve by), judged, and the figures printed.
// --compare runs the questions a second time, with other retrieval settings or over
// another knowledge base (one holding the same documents chunked otherwise), and
// prints both side by side.
func evalCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("eval", "--kb NAME --qa FILE [--retrieval JSON] [--compare JSON] [--compare-kb NAME] [--misses N] [--url URL] [--api-key KEY]")
	kb := c.fs.String("kb", "", "the knowledge base (name or id); required")
	qa := c.fs.String("qa", "", "the question file (JSON Lines: q, expect or docs, kind); required")
	retrieval := c.fs.String("retrieval", "", `retrieval settings of the searches, over the knowledge base's (JSON: {"fusion": "weighted", "dense_weight": 0.7})`)
	compare := c.fs.String("compare", "", "run again with these retrieval settings instead (JSON), and print both")
	compareKB := c.fs.String("compare-kb", "", "run again over this knowledge base instead (the same documents chunked otherwise), and print both")
	misses := c.fs.Int("misses", 20, "how many missed questions to list")
	gwURL := c.fs.String("url", "", "the gateway's URL (default $RAGWAY_URL, else "+defaultURL+")")
	apiKey := c.fs.String("api-key", "", "an API key with the chat scope (default $RAGWAY_API_KEY)")
	if err := c.parseFlags(args, stdout, stderr); err != nil {
		return err
	}
	if *kb == "" || *qa == "" {
		c.printUsage(stderr)
		return fmt.Errorf("eval: --kb and --qa are required")
	}
	type run struct {
		name, kb, flag string // flag: what set its settings, for messages
		retrieval      json.RawMessage
	}
	runs := []run{{name: "A", kb: *kb, flag: "--retrieval"}}
	settings := func(flag, value string) (json.RawMessage, error) {
		if !json.Valid([]byte(value)) {
			return nil, fmt.Errorf(`eval: %s is not JSON: give an object such as '{"fusion": "weighted"}'`, flag)
		}
		return json.RawMessage(value), nil
	}
	var err error
	if *retrieval != "" {
		if runs[0].retrieval, err = settings("--retrieval", *retrieval); err != nil {
			return err
		}
	}
	if *compare != "" || *compareKB != "" {
		b := run{name: "B", kb: cmp.Or(*compareKB, *kb), flag: "--compare", retrieval: runs[0].retrieval}
		if *compare != "" {
			if b.retrieval, err = settings("--compare", *compare); err != nil {
				return err
			}
		}
		runs = append(runs, b)
	}
	f, err := os.Open(*qa)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	qs, err := evaluate.ReadQuestions(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("eval: %s: %w", *qa, err)
	}
	cl, err := newAdminClient(*gwURL, *apiKey, "eval", "chat")
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	search := func(r run) evaluate.SearchFunc {
		return func(ctx context.Context, q string) ([]evaluate.Hit, error) {
			req := map[string]any{"query": q, "top_k": 10}
			if r.retrieval != nil {
				req["retrieval"] = r.retrieval
			}
			body, _ := json.Marshal(req)
			var out struct {
				Data []struct {
					DocumentID string `json:"document_id"`
					Title      string `json:"title"`
					Text       string `json:"text"`
				} `json:"data"`
			}
			if err := cl.do(ctx, http.MethodPost, "/v1/knowledge-bases/"+url.PathEscape(r.kb)+"/search", body, &out); err != nil {
				return nil, err
			}
			hits := make([]evaluate.Hit, len(out.Data))
			for k, h := range out.Data {
				hits[k] = evaluate.Hit{DocumentID: h.DocumentID, Title: h.Title, Text: h.Text}
			}
			return hits, nil
		}
	}
	// Each run's knowledge base and settings are tried once before any run: a
	// setting the gateway refuses is said at once, as the flag's, not as a question's.
	for _, r := range runs {
		if _, err := search(r)(ctx, qs[0].Q); err != nil {
			if r.retrieval != nil {
				return fmt.Errorf("eval: %s (knowledge base %s): %w", r.flag, printable(r.kb), err)
			}
			return fmt.Errorf("eval: knowledge base %s: %w", printable(r.kb), err)
		}
	}
	reports := make([]evaluate.Report, len(runs))
	for i, r := range runs {
		judged, err := evaluate.Run(ctx, qs, search(r), 4)
		if err != nil {
			if len(runs) > 1 {
				return fmt.Errorf("eval: run %s: %w", r.name, err)
			}
			return fmt.Errorf("eval: %w", err)
		}
		reports[i] = evaluate.Summarize(judged)
	}
	if len(runs) == 1 {
		fmt.Fprintf(stdout, "knowledge base %s, %d questions from %s\n\n", printable(*kb), len(qs), *qa)
		reports[0].Write(stdout, *misses)
		return nil
	}
	fmt.Fprintf(stdout, "%d questions from %s\n", len(qs), *qa)
	for _, r := range runs {
		settings := "its own retrieval settings"
		if r.retrieval != nil {
			settings = "retrieval " + printable(string(r.retrieval))
		}
		fmt.Fprintf(stdout, "%s: knowledge base %s, %s\n", r.name, printable(r.kb), settings)
	}
	fmt.Fprintln(stdout)
	evaluate.WriteCompared(stdout, reports[0], reports[1], *misses)
	return nil
}
