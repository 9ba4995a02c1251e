package main

import (
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
func evalCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("eval", "--kb NAME --qa FILE [--misses N] [--url URL] [--api-key KEY]")
	kb := c.fs.String("kb", "", "the knowledge base (name or id); required")
	qa := c.fs.String("qa", "", "the question file (JSON Lines: q, expect or docs, kind); required")
	misses := c.fs.Int("misses", 20, "how many missed questions to list")
	gwURL := c.fs.String("url", "", "the gateway's URL (default $RAGWAY_URL, else "+defaultURL+")")
	apiKey := c.fs.String("api-key", "", "an API key with the chat scope (default $RAGWAY_API_KEY)")
	pos, err := c.parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	if err := c.wantArgs(pos, 0, stderr); err != nil {
		return err
	}
	if *kb == "" || *qa == "" {
		c.printUsage(stderr)
		return fmt.Errorf("eval: --kb and --qa are required")
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
	judged, err := evaluate.Run(ctx, qs, func(ctx context.Context, q string) ([]evaluate.Hit, error) {
		body, _ := json.Marshal(map[string]any{"query": q, "top_k": 10})
		var out struct {
			Data []struct {
				DocumentID string `json:"document_id"`
				Title      string `json:"title"`
				Text       string `json:"text"`
			} `json:"data"`
		}
		if err := cl.do(ctx, http.MethodPost, "/v1/knowledge-bases/"+url.PathEscape(*kb)+"/search", body, &out); err != nil {
			return nil, err
		}
		hits := make([]evaluate.Hit, len(out.Data))
		for k, h := range out.Data {
			hits[k] = evaluate.Hit{DocumentID: h.DocumentID, Title: h.Title, Text: h.Text}
		}
		return hits, nil
	}, 4)
	if err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	fmt.Fprintf(stdout, "knowledge base %s, %d questions from %s\n\n", printable(*kb), len(qs), *qa)
	evaluate.Summarize(judged).Write(stdout, *misses)
	return nil
}
