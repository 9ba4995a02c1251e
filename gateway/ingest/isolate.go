package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"time"
)

// PDF parsing runs third-party code over untrusted bytes: a malicious file can make it
// loop or overflow its stack, which no recover catches. Isolated runs the extraction
// of such formats in a child process (the ragway binary's hidden `ingest-extract`
// command, Serve), under a deadline: a crash or a hang fails that one document.

// isolatedTimeout bounds one isolated extraction.
const isolatedTimeout = 2 * time.Minute

// result is what the child writes on stdout.
type result struct {
	Extracted
	Error string `json:"error,omitempty"`
	// Kind names the sentinel Error wraps: "format", "text", "pdf", "size".
	Kind string `json:"kind,omitempty"`
}

var kinds = map[string]error{"format": ErrUnsupportedFormat, "text": ErrInvalidText, "pdf": ErrInvalidPDF, "size": ErrTooLarge}

// Isolated extracts data in a child process running `exe ingest-extract` when f is
// PDF, and in this process otherwise.
func (o Options) Isolated(ctx context.Context, exe, name string, f Format, data []byte) (Extracted, error) {
	if f != PDF {
		return o.Extract(ctx, name, f, data)
	}
	timeout := o.IsolatedTimeout
	if timeout <= 0 {
		timeout = isolatedTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "ingest-extract", "-name", name, "-format", string(f),
		"-max-bytes", fmt.Sprint(o.MaxBytes), "-max-text-bytes", fmt.Sprint(o.MaxTextBytes))
	cmd.Stdin = bytes.NewReader(data)
	var out bytes.Buffer
	cmd.Stdout = &out // stderr is discarded
	// The outcome is read from stdout: how the child failed (a signal, its stderr)
	// is not the client's business, what it could not parse is. A child that did not
	// start at all is the server's fault, not the file's.
	runErr := cmd.Run()
	var exit *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exit) && ctx.Err() == nil {
		return Extracted{}, fmt.Errorf("start the PDF extractor: %w", runErr)
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		if ctx.Err() != nil {
			return Extracted{}, fmt.Errorf("%w: %q: extraction did not finish within %s", ErrInvalidPDF, name, timeout)
		}
		return Extracted{}, fmt.Errorf("%w: %q: the file could not be parsed", ErrInvalidPDF, name)
	}
	if r.Error != "" {
		if sentinel, ok := kinds[r.Kind]; ok {
			return Extracted{}, fmt.Errorf("%w: %s", sentinel, r.Error)
		}
		return Extracted{}, fmt.Errorf("the PDF extractor failed: %s", r.Error) // the server's fault: no sentinel
	}
	return r.Extracted, nil
}

// ServeCommand is the child process of Isolated: args are what Isolated passes after
// "ingest-extract" (the document's name, format and limits); the document comes on
// stdin, the result goes to stdout (Serve).
func ServeCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ingest-extract", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "document", "the document's name")
	format := fs.String("format", "", "its format (text, markdown, html, pdf)")
	maxBytes := fs.Int64("max-bytes", 0, "largest document accepted")
	maxText := fs.Int64("max-text-bytes", 0, "most text extracted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return Serve(context.Background(), *name, Format(*format), Options{MaxBytes: *maxBytes, MaxTextBytes: *maxText}, stdin, stdout)
}

// Serve is the child side of Isolated: it extracts stdin and writes the result as
// JSON on stdout.
func Serve(ctx context.Context, name string, f Format, o Options, stdin io.Reader, stdout io.Writer) error {
	data, err := ReadAll(stdin, o.withDefaults().MaxBytes)
	var r result
	if err == nil {
		r.Extracted, err = o.Extract(ctx, name, f, data)
	}
	if err != nil {
		r.Error = err.Error()
		for k, s := range kinds {
			if errors.Is(err, s) {
				r.Kind = k
			}
		}
		// The sentinel's own text is added back by Isolated.
		for _, s := range kinds {
			if errors.Is(err, s) {
				r.Error = trimSentinel(r.Error, s)
			}
		}
	}
	return json.NewEncoder(stdout).Encode(r)
}

// trimSentinel drops the "sentinel: " prefix the error message starts with.
func trimSentinel(msg string, s error) string {
	p := s.Error() + ": "
	if len(msg) >= len(p) && msg[:len(p)] == p {
		return msg[len(p):]
	}
	return msg
}
