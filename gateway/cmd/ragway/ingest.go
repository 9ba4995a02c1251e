package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// defaultURL is the gateway ingest talks to without --url or RAGWAY_URL.
const defaultURL = "http://127.0.0.1:8080"

// ingestTypes are the extensions ingest uploads from a directory, with the content
// type it sends (those the gateway's ingest package knows; it decides by extension).
var ingestTypes = map[string]string{
	".txt":      "text/plain",
	".text":     "text/plain",
	".md":       "text/markdown",
	".markdown": "text/markdown",
	".mdx":      "text/markdown",
	".html":     "text/html",
	".htm":      "text/html",
	".xhtml":    "application/xhtml+xml",
	".pdf":      "application/pdf",
}

// ingestFile is a file to upload.
type ingestFile struct {
	path string // as found: a PATH argument, or joined to it
	size int64
}

// ingestOutcome is what became of one file.
type ingestOutcome int

const (
	outIndexed ingestOutcome = iota
	outDuplicate
	outFailed
)

type ingestResult struct {
	file    ingestFile
	outcome ingestOutcome
	chunks  int
	docID   string // the new document, or the existing one of a duplicate
	err     error  // outFailed: why
}

// ingestSummary counts the results of a run.
type ingestSummary struct {
	indexed, duplicates, failed, skipped int
	bytes                                int64 // of the files uploaded
	chunks                               int
	elapsed                              time.Duration
}

func (s *ingestSummary) add(r ingestResult) {
	s.bytes += r.file.size
	switch r.outcome {
	case outIndexed:
		s.indexed++
		s.chunks += r.chunks
	case outDuplicate:
		s.duplicates++
	default:
		s.failed++
	}
}

// String is the summary line: "3 indexed, 1 duplicate, 1 failed, 2 skipped: 24
// chunks from 1.2 MB in 3.4s (0.35 MB/s)".
func (s ingestSummary) String() string {
	plural := func(n int, one, many string) string {
		if n == 1 {
			return fmt.Sprintf("%d %s", n, one)
		}
		return fmt.Sprintf("%d %s", n, many)
	}
	rate := 0.0
	if secs := s.elapsed.Seconds(); secs > 0 {
		rate = float64(s.bytes) / 1e6 / secs
	}
	return fmt.Sprintf("%d indexed, %s, %d failed, %d skipped: %s from %s in %s (%.2f MB/s)",
		s.indexed, plural(s.duplicates, "duplicate", "duplicates"), s.failed, s.skipped,
		plural(s.chunks, "chunk", "chunks"), formatBytes(s.bytes), formatElapsed(s.elapsed), rate)
}

// formatBytes formats n in B, kB, MB or GB (decimal units, as MB/s).
func formatBytes(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000*1000:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	case n < 1000*1000*1000:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}

func formatElapsed(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// ingestCmd runs `ragway ingest`.
func ingestCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("ingest", "--kb NAME [--create] [--url URL] [--api-key KEY] [--concurrency N] PATH...")
	kb := c.fs.String("kb", "", "the knowledge base (name or id) to add the files to; required")
	create := c.fs.Bool("create", false, "create the knowledge base if it does not exist")
	gwURL := c.fs.String("url", "", "the gateway's URL (default $RAGWAY_URL, else "+defaultURL+")")
	apiKey := c.fs.String("api-key", "", "an API key with the ingest scope (default $RAGWAY_API_KEY)")
	concurrency := c.fs.Int("concurrency", 2, "files uploaded at once")
	pos, err := c.parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	*kb = strings.TrimSpace(*kb)
	switch {
	case *kb == "":
		c.printUsage(stderr)
		return errors.New("ingest: --kb is required")
	case len(pos) == 0:
		c.printUsage(stderr)
		return errors.New("ingest: missing argument (PATH...: files or directories to upload)")
	case *concurrency < 1 || *concurrency > 64:
		return fmt.Errorf("ingest: --concurrency %d: want 1 to 64", *concurrency)
	}
	base, err := gatewayURL(*gwURL, os.Getenv("RAGWAY_URL"))
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	key := *apiKey
	if key == "" {
		key = os.Getenv("RAGWAY_API_KEY")
	}

	files, skipped, err := ingestFiles(pos)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl := &ingestClient{base: base, key: key, http: &http.Client{}}
	kbID, err := cl.knowledgeBase(ctx, *kb, *create)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if len(files) == 0 {
		fmt.Fprintf(stdout, "no files to upload (%d skipped: hidden, or not %s)\n", skipped, knownExtensions())
		return nil
	}

	start := time.Now()
	var total int64
	for _, f := range files {
		total += f.size
	}
	rep := newReporter(stderr, len(files), total)
	sum := ingestSummary{skipped: skipped}
	fatal := uploadAll(ctx, cl, kbID, files, *concurrency, func(r ingestResult) {
		sum.add(r)
		rep.done(r)
	}, rep.started)
	rep.finish()
	sum.elapsed = time.Since(start)
	fmt.Fprintln(stdout, sum.String())
	switch {
	case fatal != nil:
		return fmt.Errorf("ingest: %w", fatal)
	case ctx.Err() != nil:
		return errors.New("ingest: interrupted")
	case sum.failed > 0:
		return fmt.Errorf("ingest: %d of %d files failed", sum.failed, len(files))
	}
	return nil
}

// gatewayURL returns the gateway's base URL from --url, else RAGWAY_URL, else the
// default, without a trailing slash or /v1.
func gatewayURL(flagURL, envURL string) (string, error) {
	raw := flagURL
	if raw == "" {
		raw = envURL
	}
	if raw == "" {
		raw = defaultURL
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("bad gateway URL %q: want http(s)://HOST:PORT", raw)
	}
	s := strings.TrimRight(u.String(), "/")
	return strings.TrimSuffix(s, "/v1"), nil
}

func knownExtensions() string {
	exts := make([]string, 0, len(ingestTypes))
	for e := range ingestTypes {
		exts = append(exts, e)
	}
	slices.Sort(exts)
	return strings.Join(exts, " ")
}

// ingestFiles lists the files under paths: a file named is uploaded whatever its
// name; directories are walked, skipping hidden files and directories (a name
// starting with ".") and files whose extension is not one ingest knows, which are
// counted. Symbolic links to files are followed, to directories not.
func ingestFiles(paths []string) (files []ingestFile, skipped int, err error) {
	seen := make(map[string]bool)
	add := func(path string, size int64) {
		if abs, err := filepath.Abs(path); err == nil {
			if seen[abs] {
				return
			}
			seen[abs] = true
		}
		files = append(files, ingestFile{path: path, size: size})
	}
	for _, root := range paths {
		fi, err := os.Stat(root)
		if err != nil {
			return nil, 0, err
		}
		if !fi.IsDir() {
			if !fi.Mode().IsRegular() {
				return nil, 0, fmt.Errorf("%s: not a regular file or a directory", root)
			}
			add(root, fi.Size())
			continue
		}
		err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != root && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				skipped++
				return nil
			}
			if d.IsDir() {
				return nil
			}
			if _, ok := ingestTypes[strings.ToLower(filepath.Ext(path))]; !ok {
				skipped++
				return nil
			}
			fi, err := os.Stat(path) // follows a link
			if err != nil {
				return err
			}
			if !fi.Mode().IsRegular() {
				skipped++
				return nil
			}
			add(path, fi.Size())
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return files, skipped, nil
}

// uploadAll uploads files with n at once, calling started before and done after
// each. An error that will fail every upload (the key is refused, the gateway is
// unreachable) stops it: that error is returned, and the files not yet started are
// not uploaded.
func uploadAll(ctx context.Context, cl *ingestClient, kbID string, files []ingestFile, n int,
	done func(ingestResult), started func(ingestFile)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		fatal error
		wg    sync.WaitGroup
	)
	next := make(chan ingestFile)
	for range min(n, len(files)) {
		wg.Go(func() {
			for f := range next {
				mu.Lock()
				if fatal == nil && ctx.Err() == nil {
					started(f)
				}
				mu.Unlock()
				r := cl.upload(ctx, kbID, f)
				mu.Lock()
				var fe *fatalError
				switch {
				case errors.As(r.err, &fe):
					if fatal == nil {
						fatal = fe
						cancel()
					}
				case fatal == nil && ctx.Err() == nil:
					done(r)
				}
				mu.Unlock()
			}
		})
	}
feed:
	for _, f := range files {
		select {
		case next <- f:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return fatal
}

// fatalError is an error that fails every request, not only one file's.
type fatalError struct{ msg string }

func (e *fatalError) Error() string { return e.msg }

// ingestClient talks to the gateway's knowledge-base API.
type ingestClient struct {
	base string
	key  string
	http *http.Client
}

// apiError is the gateway's OpenAI-shaped error body.
type apiError struct {
	Error struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
}

// do sends a request and returns the status and body, or a fatalError for what no
// retry or other file fixes (unreachable gateway, refused key).
func (c *ingestClient) do(ctx context.Context, method, path, contentType string, body io.Reader) (int, apiError, []byte, error) {
	var ae apiError
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, ae, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return 0, ae, nil, &fatalError{fmt.Sprintf("the gateway is not reachable at %s (connection refused): is it running (ragway serve)? --url or RAGWAY_URL names it", c.base)}
		}
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return 0, ae, nil, &fatalError{fmt.Sprintf("the gateway is not reachable at %s: %v", c.base, err)}
		}
		return 0, ae, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, ae, nil, err
	}
	if resp.StatusCode >= 400 {
		if json.Unmarshal(data, &ae) != nil || ae.Error.Message == "" {
			ae.Error.Message = strings.TrimSpace(fmt.Sprintf("%s %s", resp.Status, truncate(string(data), 200)))
		}
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		what := "no API key was given: set RAGWAY_API_KEY or --api-key"
		if c.key != "" {
			what = "check RAGWAY_API_KEY (or --api-key)"
		}
		return resp.StatusCode, ae, data, &fatalError{fmt.Sprintf("the gateway refused the API key (%s): %s", ae.Error.Message, what)}
	case http.StatusForbidden:
		return resp.StatusCode, ae, data, &fatalError{fmt.Sprintf("the API key may not do this (%s): check RAGWAY_API_KEY; ingest needs a key with the ingest scope (ragway keys create --scopes chat,ingest)", ae.Error.Message)}
	}
	return resp.StatusCode, ae, data, nil
}

// knowledgeBase returns the id of the caller's knowledge base kb (a name or an id),
// creating it first if create is set.
func (c *ingestClient) knowledgeBase(ctx context.Context, kb string, create bool) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if create {
		body, _ := json.Marshal(map[string]string{"name": kb})
		code, ae, data, err := c.do(ctx, http.MethodPost, "/v1/knowledge-bases", "application/json", bytes.NewReader(body))
		switch {
		case err != nil:
			return "", err
		case code == http.StatusCreated || code == http.StatusOK:
			if err := json.Unmarshal(data, &out); err != nil || out.ID == "" {
				return "", fmt.Errorf("create the knowledge base %s: unexpected answer %s", kb, truncate(string(data), 200))
			}
			return out.ID, nil
		case code != http.StatusConflict:
			return "", fmt.Errorf("create the knowledge base %s: %s", kb, ae.Error.Message)
		}
		// 409: it exists.
	}
	code, ae, data, err := c.do(ctx, http.MethodGet, "/v1/knowledge-bases/"+url.PathEscape(kb), "", nil)
	switch {
	case err != nil:
		return "", err
	case code == http.StatusNotFound:
		return "", fmt.Errorf("you have no knowledge base %s (--create makes it)", kb)
	case code != http.StatusOK:
		return "", fmt.Errorf("knowledge base %s: %s", kb, ae.Error.Message)
	}
	if err := json.Unmarshal(data, &out); err != nil || out.ID == "" {
		return "", fmt.Errorf("knowledge base %s: unexpected answer %s", kb, truncate(string(data), 200))
	}
	return out.ID, nil
}

var duplicateOf = regexp.MustCompile(`document '([^']+)'`)

// upload sends one file and waits for it to be indexed.
func (c *ingestClient) upload(ctx context.Context, kbID string, f ingestFile) ingestResult {
	r := ingestResult{file: f, outcome: outFailed}
	data, err := os.ReadFile(f.path)
	if err != nil {
		r.err = err
		return r
	}
	r.file.size = int64(len(data))
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename="%s"`, quoteEscaper.Replace(filepath.Base(f.path))))
	ct, ok := ingestTypes[strings.ToLower(filepath.Ext(f.path))]
	if !ok {
		ct = "application/octet-stream" // named on the command line: the gateway sniffs it
	}
	h.Set("Content-Type", ct)
	part, err := w.CreatePart(h)
	if err == nil {
		_, err = part.Write(data)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		r.err = err
		return r
	}
	code, ae, resp, err := c.do(ctx, http.MethodPost, "/v1/knowledge-bases/"+url.PathEscape(kbID)+"/documents?wait=true", w.FormDataContentType(), &body)
	if err != nil {
		r.err = err
		return r
	}
	switch {
	case code == http.StatusConflict && ae.Error.Code == "duplicate_document":
		r.outcome = outDuplicate
		if m := duplicateOf.FindStringSubmatch(ae.Error.Message); m != nil {
			r.docID = m[1]
		}
		return r
	case code >= 400:
		r.err = errors.New(ae.Error.Message)
		return r
	}
	var doc struct {
		ID         string `json:"id"`
		Status     string `json:"status"`
		Error      string `json:"error"`
		ChunkCount int    `json:"chunk_count"`
	}
	if err := json.Unmarshal(resp, &doc); err != nil {
		r.err = fmt.Errorf("unexpected answer (%d): %s", code, truncate(string(resp), 200))
		return r
	}
	r.docID, r.chunks = doc.ID, doc.ChunkCount
	switch doc.Status {
	case "indexed":
		r.outcome = outIndexed
	case "failed":
		r.err = fmt.Errorf("not indexed: %s", doc.Error)
	default:
		r.err = fmt.Errorf("document %s is %s, not indexed", doc.ID, doc.Status)
	}
	return r
}

var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// resultLine is the line that reports a file: "indexed docs/a.md (12 chunks)",
// "duplicate docs/b.md (document ID)", "failed docs/c.pdf: MESSAGE".
func resultLine(r ingestResult) string {
	switch r.outcome {
	case outIndexed:
		if r.chunks == 1 {
			return fmt.Sprintf("indexed %s (1 chunk)", r.file.path)
		}
		return fmt.Sprintf("indexed %s (%d chunks)", r.file.path, r.chunks)
	case outDuplicate:
		if r.docID == "" {
			return fmt.Sprintf("duplicate %s (already in the knowledge base)", r.file.path)
		}
		return fmt.Sprintf("duplicate %s (document %s)", r.file.path, r.docID)
	}
	return fmt.Sprintf("failed %s: %v", r.file.path, r.err)
}
