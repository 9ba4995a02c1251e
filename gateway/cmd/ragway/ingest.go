package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ragway/ragway/gateway/api"
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
	size int64  // as the walk found it; the upload measures the open file again
}

// skippedPath is a path ingest did not upload, and why.
type skippedPath struct {
	path   string
	reason string
	// err: it could not be read (a dangling link, a loop, an unreadable
	// directory, a missing argument), rather than left out by rule.
	err bool
}

// ingestOutcome is what became of one file.
type ingestOutcome int

const (
	outIndexed ingestOutcome = iota
	outDuplicate
	outFailed
)

// ingestResult is what became of one file.
type ingestResult struct {
	file    ingestFile
	outcome ingestOutcome
	sent    int64 // bytes of the file sent to the gateway (0 if refused before)
	chunks  int
	docID   string // the new document, or the existing one of a duplicate
	err     error  // outFailed: why, for humans
}

// ingestSummary counts the results of a run and keeps what went wrong.
type ingestSummary struct {
	indexed, duplicates, failed int
	bytes                       int64 // of the files sent
	chunks                      int
	elapsed                     time.Duration
	skips                       []skippedPath  // in the order of the walk
	failures                    []ingestResult // in the order they ended
}

func (s *ingestSummary) add(r ingestResult) {
	s.bytes += r.sent
	switch r.outcome {
	case outIndexed:
		s.indexed++
		s.chunks += r.chunks
	case outDuplicate:
		s.duplicates++
	default:
		s.failed++
		s.failures = append(s.failures, r)
	}
}

// skippedForError is the number of paths skipped because they could not be read.
func (s *ingestSummary) skippedForError() int {
	n := 0
	for _, sk := range s.skips {
		if sk.err {
			n++
		}
	}
	return n
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
		s.indexed, plural(s.duplicates, "duplicate", "duplicates"), s.failed, len(s.skips),
		plural(s.chunks, "chunk", "chunks"), formatBytes(s.bytes), formatElapsed(s.elapsed), rate)
}

// writeDetails writes a line for every file that failed (by path) and every path
// skipped (in the order of the walk), with the reason.
func (s ingestSummary) writeDetails(w io.Writer) {
	failures := slices.Clone(s.failures)
	slices.SortStableFunc(failures, func(a, b ingestResult) int { return strings.Compare(a.file.path, b.file.path) })
	for _, r := range failures {
		fmt.Fprintln(w, resultLine(shown(r)))
	}
	for _, sk := range s.skips {
		fmt.Fprintf(w, "skipped %s: %s\n", quotePath(sk.path), sk.reason)
	}
}

// exitError is the error the run ends with: nil unless a file failed or a path was
// skipped for an error (see ingestHelp).
func (s ingestSummary) exitError(files int) error {
	var parts []string
	if s.failed > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d files failed", s.failed, files))
	}
	switch n := s.skippedForError(); n {
	case 0:
	case 1:
		parts = append(parts, "1 path skipped for an error")
	default:
		parts = append(parts, fmt.Sprintf("%d paths skipped for an error", n))
	}
	if len(parts) == 0 {
		return nil
	}
	return errors.New("ingest: " + strings.Join(parts, ", "))
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

// ingestHelp follows the flags in `ragway ingest -h`.
var ingestHelp = `
Uploads the files named and, in the directories named (recursively), every file
whose extension ingest knows (` + knownExtensions() + `).
Hidden files and directories (a name starting with ".") are skipped, as are files
of other types and, in directories, anything not a regular file (pipes, sockets,
devices).

Symbolic links are followed, to files and to directories. Each file and each
directory is uploaded or walked once however many links lead to it, and a link to
a directory that contains it (a loop) is not followed.

Files are streamed, so memory stays small whatever their size. A file whose upload
would be larger than --max-bytes is not sent: it fails at once.

A path that cannot be read (a dangling or looping link, an unreadable directory, a
missing argument) is skipped, and the walk goes on. At the end, stdout has the
summary line, then a line for every file that failed and every path skipped, with
the reason. Names are printed quoted (Go syntax), so that newlines, tabs and bytes
that are not UTF-8 in them stay visible. The name sent to the gateway is the file's
base name, as UTF-8 with each control character, line or paragraph separator and
byte that is not UTF-8 replaced by U+FFFD.

Exit status: 0 if every file was indexed or was already there (a duplicate) and no
path was skipped for an error; 1 if a file failed, a path was skipped for an error
(a path skipped by rule, hidden or of another type, does not count), or the
gateway could not be used (unreachable, key refused, no such knowledge base).
`

// ingestCmd runs `ragway ingest`: it walks the PATH arguments (ingestFiles), finds
// or creates the knowledge base, uploads the files n at once, and prints the
// summary; see ingestHelp for the rules and the exit status.
func ingestCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("ingest", "--kb NAME [--create] [--url URL] [--api-key KEY] [--concurrency N] [--max-bytes N] PATH...")
	kb := c.fs.String("kb", "", "the knowledge base (name or id) to add the files to; required")
	create := c.fs.Bool("create", false, "create the knowledge base if it does not exist")
	gwURL := c.fs.String("url", "", "the gateway's URL (default $RAGWAY_URL, else "+defaultURL+")")
	apiKey := c.fs.String("api-key", "", "an API key with the ingest scope (default $RAGWAY_API_KEY)")
	concurrency := c.fs.Int("concurrency", 2, "files uploaded at once")
	maxBytes := c.fs.Int64("max-bytes", api.DefaultMaxBodyBytes,
		"the gateway's server.max_body_bytes: a file whose upload (the file and the form around it)\n"+
			"is larger is not sent, and fails. The default is the gateway's default; 0 sends every\n"+
			"file and lets the gateway refuse")
	pos, err := c.parse(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, ingestHelp)
	}
	if err != nil {
		return err
	}
	if err := c.required("kb", kb, stderr); err != nil {
		return err
	}
	switch {
	case len(pos) == 0:
		c.printUsage(stderr)
		return errors.New("ingest: missing argument (PATH...: files or directories to upload)")
	case *concurrency < 1 || *concurrency > 64:
		return fmt.Errorf("ingest: --concurrency %d: want 1 to 64", *concurrency)
	case *maxBytes < 0:
		return fmt.Errorf("ingest: --max-bytes %d: want the gateway's limit in bytes, or 0 for none", *maxBytes)
	}
	base, err := gatewayURL(*gwURL, os.Getenv("RAGWAY_URL"))
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	key := *apiKey
	if key == "" {
		key = os.Getenv("RAGWAY_API_KEY")
	}

	files, skips := ingestFiles(pos)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl := &apiClient{base: base, key: key, cmd: "ingest", needs: "ingest", http: &http.Client{}, maxBytes: *maxBytes}
	kbID, err := cl.knowledgeBase(ctx, *kb, *create)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	sum := ingestSummary{skips: skips}
	if len(files) == 0 {
		fmt.Fprintf(stdout, "no files to upload (%d skipped)\n", len(skips))
		sum.writeDetails(stdout)
		return sum.exitError(0)
	}

	start := time.Now()
	var total int64
	for _, f := range files {
		total += f.size
	}
	rep := newReporter(stderr, len(files), total)
	// The reporter is given the files as shown: quoted.
	fatal := uploadAll(ctx, cl, kbID, files, *concurrency, func(r ingestResult) {
		sum.add(r)
		rep.done(shown(r))
	}, func(f ingestFile) { rep.started(shownFile(f)) })
	rep.finish()
	sum.elapsed = time.Since(start)
	fmt.Fprintln(stdout, sum.String())
	sum.writeDetails(stdout)
	switch {
	case fatal != nil:
		return fmt.Errorf("ingest: %w", fatal)
	case ctx.Err() != nil:
		return errors.New("ingest: interrupted")
	}
	return sum.exitError(len(files))
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

// ingestFiles lists the files under paths, and the paths it leaves out with the
// reason. A file named is uploaded whatever its name; directories are walked (see
// ingestHelp for the rules). Nothing aborts the walk: a path that cannot be read is
// skipped for an error and the walk goes on.
func ingestFiles(paths []string) (files []ingestFile, skips []skippedPath) {
	w := &walker{fileAt: make(map[string]string), dirAt: make(map[string]string)}
	for _, p := range paths {
		w.root(p)
	}
	return w.files, w.skips
}

// walker walks the PATH arguments. Files and directories are known by their real
// path (absolute, without symbolic links), so that each is taken once.
type walker struct {
	files  []ingestFile
	skips  []skippedPath
	fileAt map[string]string // a file's real path → the path it was taken as
	dirAt  map[string]string // a directory's real path → the path it was walked as
}

func (w *walker) skip(path string, isErr bool, format string, args ...any) {
	w.skips = append(w.skips, skippedPath{path: path, reason: fmt.Sprintf(format, args...), err: isErr})
}

// root takes a PATH argument.
func (w *walker) root(path string) {
	fi, err := os.Stat(path)
	if err != nil {
		w.skip(path, true, "%s", statReason(path, err))
		return
	}
	real, err := realPath(path)
	if err != nil {
		w.skip(path, true, "%s", statReason(path, err))
		return
	}
	switch {
	case fi.IsDir():
		if prev, ok := w.dirAt[real]; ok {
			if prev != path {
				w.skip(path, false, "the same directory as %s", quotePath(prev))
			}
			return
		}
		w.dirAt[real] = path
		w.dir(path, real)
	case fi.Mode().IsRegular():
		w.file(path, real, fi.Size())
	default:
		w.skip(path, true, "not a regular file or a directory (%s)", fileKind(fi.Mode()))
	}
}

// dir walks the directory path, whose real path is real.
func (w *walker) dir(path, real string) {
	entries, err := os.ReadDir(path)
	if err != nil {
		w.skip(path, true, "cannot read the directory: %s", reason(err))
		// What was read before the error is taken.
	}
	for _, e := range entries {
		name := e.Name()
		p, rp := filepath.Join(path, name), filepath.Join(real, name)
		if strings.HasPrefix(name, ".") {
			if e.IsDir() {
				w.skip(p, false, "a hidden directory, not entered")
			} else {
				w.skip(p, false, "hidden")
			}
			continue
		}
		t := e.Type()
		switch {
		case t&fs.ModeSymlink != 0:
			fi, err := os.Stat(p)
			if err != nil {
				w.skip(p, true, "%s", statReason(p, err))
				continue
			}
			target, err := filepath.EvalSymlinks(rp)
			if err != nil {
				w.skip(p, true, "%s", statReason(p, err))
				continue
			}
			switch {
			case fi.IsDir():
				w.enter(p, target, real)
			case !fi.Mode().IsRegular():
				w.skip(p, false, "not a regular file (%s)", fileKind(fi.Mode()))
			case knownType(name):
				w.file(p, target, fi.Size())
			default:
				w.skip(p, false, "not a type ingest uploads")
			}
		case t.IsDir():
			w.enter(p, rp, real)
		case !t.IsRegular():
			w.skip(p, false, "not a regular file (%s)", fileKind(t))
		case !knownType(name):
			w.skip(p, false, "not a type ingest uploads")
		default:
			fi, err := e.Info()
			if err != nil {
				w.skip(p, true, "%s", statReason(p, err))
				continue
			}
			w.file(p, rp, fi.Size())
		}
	}
}

// enter walks the directory path (real path target) found in the directory whose
// real path is parent, unless that would loop or walk it twice.
func (w *walker) enter(path, target, parent string) {
	if within(parent, target) {
		w.skip(path, false, "a link to a directory that contains it (a loop)")
		return
	}
	if prev, ok := w.dirAt[target]; ok {
		w.skip(path, false, "the same directory as %s", quotePath(prev))
		return
	}
	w.dirAt[target] = path
	w.dir(path, target)
}

// file takes the file path, whose real path is real.
func (w *walker) file(path, real string, size int64) {
	if prev, ok := w.fileAt[real]; ok {
		if prev != path { // the same argument twice is taken once, silently
			w.skip(path, false, "the same file as %s", quotePath(prev))
		}
		return
	}
	w.fileAt[real] = path
	w.files = append(w.files, ingestFile{path: path, size: size})
}

// realPath is path made absolute, without symbolic links.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}

// within reports whether path is dir or inside it (both clean and absolute).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// knownType reports whether ingest uploads files named name from directories.
func knownType(name string) bool {
	_, ok := ingestTypes[strings.ToLower(filepath.Ext(name))]
	return ok
}

// fileKind names what a file that is not regular nor a directory is.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "an irregular file"
}

// statReason says why path could not be looked at (err from os.Stat or the like),
// for humans: a link that dangles or loops is named as such, and the path is not
// repeated (the caller prints it).
func statReason(path string, err error) string {
	if li, lerr := os.Lstat(path); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
		switch {
		case errors.Is(err, syscall.ELOOP):
			return "a symbolic link loop"
		case errors.Is(err, fs.ErrNotExist):
			if target, rerr := os.Readlink(path); rerr == nil {
				return fmt.Sprintf("a dangling symbolic link (to %s, which does not exist)", quotePath(target))
			}
			return "a dangling symbolic link"
		}
		return "cannot follow the symbolic link: " + reason(err)
	}
	return reason(err)
}

// reason is err without the operation and the path a *fs.PathError or
// *os.LinkError carries: "permission denied", "no such file or directory".
func reason(err error) string {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &le):
		err = le.Err
	}
	if errors.Is(err, syscall.ELOOP) {
		return "a symbolic link loop"
	}
	return printable(err.Error())
}

// uploadAll uploads files with n at once, calling started before and done after
// each. An error that will fail every upload (the key is refused, the gateway is
// unreachable) stops it: that error is returned, and the files not yet started are
// not uploaded.
func uploadAll(ctx context.Context, cl *apiClient, kbID string, files []ingestFile, n int,
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

// apiClient talks to the gateway's API: ingest's knowledge-base calls, and the
// models, reload and eval commands'.
type apiClient struct {
	base string
	key  string
	// cmd and needs name the command and the scope its calls need, for the message of
	// a 403.
	cmd, needs string
	http       *http.Client
	maxBytes   int64 // the largest upload body sent (0: no limit)
}

// apiError is the gateway's OpenAI-shaped error body.
type apiError struct {
	Error struct {
		Message string `json:"message"`
		Code    string `json:"code"`
	} `json:"error"`
}

// kbPath is the path of knowledge base kb (a name or an id) and below it: each
// segment is escaped, so that a name with spaces, "/", "?", "%" or any other
// character stays one segment.
func kbPath(kb string, below ...string) string {
	p := "/v1/knowledge-bases/" + url.PathEscape(kb)
	for _, s := range below {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// do sends a request with a body of length bytes (none if body is nil; a body
// that is an io.Closer is closed) and returns the status and the answer, or a
// fatalError for what no retry or other file fixes (unreachable gateway, refused
// key). Other errors are for humans: they name no internals.
func (c *apiClient) do(ctx context.Context, method, path, contentType string, body io.Reader, length int64) (int, apiError, []byte, error) {
	var ae apiError
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		if cl, ok := body.(io.Closer); ok {
			cl.Close()
		}
		return 0, ae, nil, err
	}
	if body != nil {
		req.ContentLength = length
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, ae, nil, c.requestError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return 0, ae, nil, c.requestError(ctx, err)
	}
	if resp.StatusCode >= 400 {
		if json.Unmarshal(data, &ae) != nil || ae.Error.Message == "" {
			ae.Error.Message = strings.TrimSpace(fmt.Sprintf("%s %s", resp.Status, truncate(string(data), 200)))
		}
		ae.Error.Message = printable(ae.Error.Message)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		what := "no API key was given: set RAGWAY_API_KEY or --api-key"
		if c.key != "" {
			what = "check RAGWAY_API_KEY (or --api-key)"
		}
		return resp.StatusCode, ae, data, &fatalError{fmt.Sprintf("the gateway refused the API key (%s): %s", ae.Error.Message, what)}
	case http.StatusForbidden:
		return resp.StatusCode, ae, data, &fatalError{fmt.Sprintf("the API key may not do this (%s): check RAGWAY_API_KEY; %s needs a key with the %s scope (ragway keys create --scopes %s)", ae.Error.Message, c.cmd, c.needs, scopesFor(c.needs))}
	}
	return resp.StatusCode, ae, data, nil
}

// scopesFor is the --scopes of a key for a command that needs scope.
func scopesFor(scope string) string {
	if scope == "chat" {
		return scope
	}
	return "chat," + scope
}

// requestError says for humans why a request got no answer.
func (c *apiClient) requestError(ctx context.Context, err error) error {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, errFileGrew):
		return errFileGrew
	case errors.Is(err, errFileShrank):
		return errFileShrank
	case ctx.Err() != nil:
		return errors.New("interrupted")
	case errors.Is(err, syscall.ECONNREFUSED):
		return &fatalError{fmt.Sprintf("the gateway is not reachable at %s (connection refused): is it running (ragway serve)? --url or RAGWAY_URL names it", c.base)}
	case errors.As(err, &dnsErr):
		return &fatalError{fmt.Sprintf("the gateway is not reachable at %s: the host %s is not known", c.base, printable(dnsErr.Name))}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("the gateway closed the connection before answering (it does so when an upload is larger than its limit, server.max_body_bytes: see --max-bytes)")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("no answer from the gateway at %s: %s", c.base, printable(err.Error()))
}

// knowledgeBase returns the id of the caller's knowledge base kb (a name or an id),
// creating it first if create is set.
func (c *apiClient) knowledgeBase(ctx context.Context, kb string, create bool) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if create {
		body, _ := json.Marshal(map[string]string{"name": kb})
		code, ae, data, err := c.do(ctx, http.MethodPost, "/v1/knowledge-bases", "application/json", bytes.NewReader(body), int64(len(body)))
		switch {
		case err != nil:
			return "", err
		case code == http.StatusCreated || code == http.StatusOK:
			if err := json.Unmarshal(data, &out); err != nil || out.ID == "" {
				return "", fmt.Errorf("cannot create the knowledge base %s: unexpected answer %s", quotePath(kb), printable(truncate(string(data), 200)))
			}
			return out.ID, nil
		case code != http.StatusConflict:
			return "", fmt.Errorf("cannot create the knowledge base %s: %s", quotePath(kb), ae.Error.Message)
		}
		// 409: it exists.
	}
	code, ae, data, err := c.do(ctx, http.MethodGet, kbPath(kb), "", nil, 0)
	switch {
	case err != nil:
		return "", err
	case code == http.StatusNotFound:
		return "", fmt.Errorf("you have no knowledge base %s (--create makes it)", quotePath(kb))
	case code != http.StatusOK:
		return "", fmt.Errorf("knowledge base %s: %s", quotePath(kb), ae.Error.Message)
	}
	if err := json.Unmarshal(data, &out); err != nil || out.ID == "" {
		return "", fmt.Errorf("knowledge base %s: unexpected answer %s", quotePath(kb), printable(truncate(string(data), 200)))
	}
	return out.ID, nil
}

var duplicateOf = regexp.MustCompile(`document '([^']+)'`)

// upload streams one file to the gateway and waits for it to be indexed. The file
// is opened without blocking (a pipe put in its place since the walk is refused,
// not waited on), its size taken from the open file and checked against
// c.maxBytes before anything is sent, and the body's length announced.
func (c *apiClient) upload(ctx context.Context, kbID string, f ingestFile) ingestResult {
	r := ingestResult{file: f, outcome: outFailed}
	file, size, err := openRegular(f.path)
	if err != nil {
		r.err = err
		return r
	}
	r.file.size = size
	head, tail, contentType := multipartFrame(f.path)
	length := int64(len(head)) + size + int64(len(tail))
	if c.maxBytes > 0 && length > c.maxBytes {
		file.Close()
		if size > c.maxBytes {
			r.err = fmt.Errorf("%d bytes: larger than the server's limit of %d bytes (--max-bytes)", size, c.maxBytes)
		} else {
			r.err = fmt.Errorf("%d bytes and the upload's framing: larger than the server's limit of %d bytes (--max-bytes)", size, c.maxBytes)
		}
		return r
	}
	body := &uploadBody{
		Reader: io.MultiReader(bytes.NewReader(head), &exactReader{r: file, n: size}, bytes.NewReader(tail)),
		file:   file,
	}
	code, ae, resp, err := c.do(ctx, http.MethodPost, kbPath(kbID, "documents")+"?wait=true", contentType, body, length)
	if err != nil {
		r.err = err
		return r
	}
	r.sent = size
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
		r.err = fmt.Errorf("unexpected answer (%d): %s", code, printable(truncate(string(resp), 200)))
		return r
	}
	r.docID, r.chunks = printable(doc.ID), doc.ChunkCount
	switch doc.Status {
	case "indexed":
		r.outcome = outIndexed
	case "failed":
		r.err = fmt.Errorf("not indexed: %s", printable(doc.Error))
	default:
		r.err = fmt.Errorf("document %s is %s, not indexed", r.docID, printable(doc.Status))
	}
	return r
}

// openRegular opens path for reading if it is a regular file, and returns its
// size. It opens without blocking, so that a named pipe (or a device) put at path
// is refused rather than waited on.
func openRegular(path string) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot open the file: %s", statReason(path, err))
	}
	fi, err := f.Stat()
	switch {
	case err != nil:
		f.Close()
		return nil, 0, fmt.Errorf("cannot read the file: %s", reason(err))
	case !fi.Mode().IsRegular():
		f.Close()
		if fi.IsDir() {
			return nil, 0, errors.New("a directory, not a file")
		}
		return nil, 0, fmt.Errorf("not a regular file (%s)", fileKind(fi.Mode()))
	}
	return f, fi.Size(), nil
}

// multipartFrame returns the multipart/form-data body around the file at path (the
// form field "file"), split where the file's bytes go, and the body's content type.
func multipartFrame(path string) (head, tail []byte, contentType string) {
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", `form-data; name="file"; filename="`+quoteEscaper.Replace(sendName(filepath.Base(path)))+`"`)
	ct, ok := ingestTypes[strings.ToLower(filepath.Ext(path))]
	if !ok {
		ct = "application/octet-stream" // named on the command line: the gateway sniffs it
	}
	h.Set("Content-Type", ct)
	if _, err := w.CreatePart(h); err != nil {
		panic(err) // a bytes.Buffer does not fail
	}
	head = bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := w.Close(); err != nil {
		panic(err)
	}
	return head, bytes.Clone(buf.Bytes()), w.FormDataContentType()
}

// quoteEscaper escapes a quoted-string's specials (RFC 7578 4.2; what mime parses).
var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// sendName is the file name sent to the gateway: name as UTF-8 text a header can
// carry, each control character (C0, DEL, C1), line or paragraph separator and byte
// that is not UTF-8 replaced by U+FFFD. Quotes and backslashes are escaped by
// the caller.
func sendName(name string) string {
	var b strings.Builder
	for i, r := range name {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(name[i:]); n == 1 {
				b.WriteRune(utf8.RuneError)
				continue
			}
		}
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}

// uploadBody is a request body that closes the file it streams when the request
// is done with it.
type uploadBody struct {
	io.Reader
	file *os.File
}

func (b *uploadBody) Close() error { return b.file.Close() }

var (
	errFileGrew   = errors.New("the file grew while it was being uploaded; upload it again")
	errFileShrank = errors.New("the file shrank while it was being uploaded; upload it again")
)

// exactReader reads exactly n bytes from r: it fails if r ends before or has more,
// so that the body matches the length announced.
type exactReader struct {
	r io.Reader
	n int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.n <= 0 {
		var one [1]byte
		k, err := e.r.Read(one[:])
		switch {
		case k > 0:
			return 0, errFileGrew
		case err == nil:
			return 0, nil
		case err == io.EOF:
			return 0, io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > e.n {
		p = p[:e.n]
	}
	k, err := e.r.Read(p)
	e.n -= int64(k)
	if err == io.EOF && e.n > 0 {
		return k, errFileShrank
	}
	if err == io.EOF {
		err = nil // the probe above reports the end
	}
	return k, err
}

// truncate cuts s to at most n bytes, at a character boundary, ending it with "…"
// if cut.
func truncate(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// printable is s on one line: control characters, line separators and bytes that
// are not UTF-8 are escaped as Go would quote them; other text is left alone.
func printable(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				fmt.Fprintf(&b, `\x%02x`, s[i])
				continue
			}
		}
		if unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quotePath is how ingest prints a path or a name: quoted in Go syntax, so that
// spaces, newlines, tabs, escape sequences and bytes that are not UTF-8 are
// visible and unambiguous.
func quotePath(p string) string { return strconv.Quote(p) }

// shownFile is f as the reporter shows it: its path quoted.
func shownFile(f ingestFile) ingestFile {
	f.path = quotePath(f.path)
	return f
}

// shown is r as printed: its file's path quoted (see resultLine).
func shown(r ingestResult) ingestResult {
	r.file = shownFile(r.file)
	return r
}

// resultLine is the line that reports a file: "indexed "docs/a.md" (12 chunks)",
// "duplicate "docs/b.md" (document ID)", "failed "docs/c.pdf": MESSAGE". The path is
// printed as it is in r: callers pass shown(r).
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
