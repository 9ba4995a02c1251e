package main

import (
	"io"
	"os"

	"github.com/ragway/ragway/gateway/ingest"
)

// ingestExtract is the child side of ingest.Isolated: it extracts the document on
// stdin and writes the result as JSON on stdout.
func ingestExtract(args []string, stdout, stderr io.Writer) error {
	return ingest.ServeCommand(args, os.Stdin, stdout, stderr)
}
