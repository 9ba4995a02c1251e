package main

import (
	"context"
	"flag"
	"io"
	"os"

	"github.com/ragway/ragway/gateway/ingest"
)

// ingestExtract is the child side of ingest.Isolated: it extracts the document on
// stdin and writes the result as JSON on stdout.
func ingestExtract(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingest-extract", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "document", "the document's name")
	format := fs.String("format", "", "its format (text, markdown, html, pdf)")
	maxBytes := fs.Int64("max-bytes", 0, "largest document accepted")
	maxText := fs.Int64("max-text-bytes", 0, "most text extracted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return ingest.Serve(context.Background(), *name, ingest.Format(*format),
		ingest.Options{MaxBytes: *maxBytes, MaxTextBytes: *maxText}, os.Stdin, stdout)
}
