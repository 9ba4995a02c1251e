// Package pull downloads GGUF model files into a models directory: by URL, or by
// Hugging Face name (hf:org/repo/path/file.gguf[@revision], the resolve-URL layout
// of the Hub or of a mirror such as HF_ENDPOINT names). A download is resumable (a
// .part file and its validator survive an interruption, and a dropped connection is
// resumed at once with a Range request), checked against a SHA-256 given or
// published by the server (Hugging Face's X-Linked-Etag), and written in place only
// whole and checked.
package pull

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultHFEndpoint is the Hugging Face Hub.
const DefaultHFEndpoint = "https://huggingface.co"

// SkipVerify, as the SHA-256 asked for, accepts a file no checksum is known for.
const SkipVerify = "none"

// Options configures a Pull.
type Options struct {
	// Dir is the models directory. Required.
	Dir string
	// HFEndpoint is the Hub (or a mirror) hf: names resolve against. Default
	// DefaultHFEndpoint.
	HFEndpoint string
	// HFToken, when set, is sent to the Hub (never to where it redirects).
	HFToken string
	// SHA256 is the file's checksum (hex), SkipVerify, or "": the one the server
	// publishes, which must then exist.
	SHA256 string
	// Client defaults to an http.Client without timeout (downloads are long; ctx
	// ends them).
	Client *http.Client
	// Progress, when set, is called as bytes arrive: done of total (total ≤ 0:
	// unknown).
	Progress func(done, total int64)
	// Retries bounds the resumptions after a dropped connection without progress
	// in between. Default 5.
	Retries int
	// MaxBytes bounds a file (a server may send without end). Default 1 TiB; the
	// free space of Dir, less a reserve, bounds it too.
	MaxBytes int64
	// Stall ends a download that receives nothing for that long (it resumes, as
	// after a dropped connection). Default 60s.
	Stall time.Duration
	// Force replaces a file of the same name and another content.
	Force bool
}

// keepFree is the space a download leaves free in the models directory (the
// project's Postgres may share the disk).
const keepFree = 1 << 30

// Result is a finished pull.
type Result struct {
	Path    string // where the file is
	Name    string // its name in the models directory
	Bytes   int64
	SHA256  string
	Resumed bool // part of it was there from an earlier, interrupted pull
}

// Shown is the source as it may be shown: without credentials or query (a signed or
// tokened URL's secrets).
func (s Source) Shown() string {
	u, err := url.Parse(s.URL)
	if err != nil {
		return s.Name
	}
	return redact(u)
}

// Source is what a pull names: the URL to get and the file's name.
type Source struct {
	URL  string
	Name string
	// HF: the source is a Hugging Face name (its token may be sent).
	HF bool
}

var (
	hfRepoPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	// fileName is a models directory entry: a plain name ending in .gguf.
	fileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*\.gguf$`)
)

// Resolve turns src (an http(s) URL, or hf:org/repo/path/file.gguf[@revision]) into
// the URL to download and the file's name in the models directory.
func Resolve(src, hfEndpoint string) (Source, error) {
	if hfEndpoint == "" {
		hfEndpoint = DefaultHFEndpoint
	}
	if rest, ok := strings.CutPrefix(src, "hf:"); ok {
		rev := "main"
		if i := strings.LastIndexByte(rest, '@'); i >= 0 {
			rest, rev = rest[:i], rest[i+1:]
			if !hfRepoPart.MatchString(rev) {
				return Source{}, fmt.Errorf("%q: the revision after @ must be a branch, tag or commit", src)
			}
		}
		parts := strings.Split(rest, "/")
		if len(parts) < 3 {
			return Source{}, fmt.Errorf("%q: want hf:ORG/REPO/FILE.gguf (a path in the repository, optionally @REVISION)", src)
		}
		for _, p := range parts {
			if !hfRepoPart.MatchString(p) || p == ".." {
				return Source{}, fmt.Errorf("%q: %q is not a valid name in a Hugging Face path", src, p)
			}
		}
		base, err := url.Parse(hfEndpoint)
		if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
			return Source{}, fmt.Errorf("the Hugging Face endpoint %q is not an http(s) URL", hfEndpoint)
		}
		name := parts[len(parts)-1]
		if !fileName.MatchString(name) {
			return Source{}, fmt.Errorf("%q: the file must be a .gguf file with a plain name", src)
		}
		u := strings.TrimRight(base.String(), "/") + "/" + parts[0] + "/" + parts[1] + "/resolve/" + url.PathEscape(rev) + "/" + strings.Join(parts[2:], "/")
		return Source{URL: u, Name: name, HF: true}, nil
	}
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Source{}, fmt.Errorf("%q: want an http(s) URL or hf:ORG/REPO/FILE.gguf", src)
	}
	if u.User != nil {
		return Source{}, fmt.Errorf("%q: credentials in the URL are not sent; use a URL without them", redact(u))
	}
	name := path.Base(u.Path)
	if !fileName.MatchString(name) {
		return Source{}, fmt.Errorf("%q: the URL must end in a .gguf file name (letters, digits, . _ + -)", redact(u))
	}
	return Source{URL: u.String(), Name: name}, nil
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	return c.String()
}

// partState is what survives an interrupted pull beside its .part file: where it
// came from and the validator of what was received, so that a resumption asks for
// the rest of the same file (If-Range), never of another.
type partState struct {
	URL       string `json:"url"`
	Validator string `json:"validator"` // ETag or Last-Modified
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"` // published, when known
}

// head is what the server says of the file before the download.
type head struct {
	size      int64
	validator string
	published string // SHA-256 from X-Linked-Etag, when it is one
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Pull downloads src (see Resolve) into opts.Dir and returns what it wrote. An
// existing complete file with the expected checksum is not downloaded again.
func Pull(ctx context.Context, src string, opts Options) (Result, error) {
	s, err := Resolve(src, opts.HFEndpoint)
	if err != nil {
		return Result{}, err
	}
	want := strings.ToLower(strings.TrimSpace(opts.SHA256))
	if want != "" && want != SkipVerify && !hexSHA256.MatchString(want) {
		return Result{}, fmt.Errorf("the SHA-256 must be 64 hex characters (or %q to skip the check), got %q", SkipVerify, opts.SHA256)
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
		}}
	}
	opts.Client = keepTokenHome(opts.Client)
	if opts.Retries <= 0 {
		opts.Retries = 5
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 40
	}
	if opts.Stall <= 0 {
		opts.Stall = 60 * time.Second
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return Result{}, fmt.Errorf("models directory: %w", err)
	}
	final := filepath.Join(opts.Dir, s.Name)
	part, statePath := final+".part", final+".part.json"
	// One pull of a file at a time, whoever pulls it (the CLI, a gateway, another
	// gateway on shared storage): a lock released when its process ends.
	unlock, err := lockFile(final + ".lock")
	if err != nil {
		return Result{}, fmt.Errorf("%s: %w", s.Name, err)
	}
	defer unlock()

	h, err := opts.head(ctx, s)
	if err != nil {
		return Result{}, err
	}
	h.size = max(h.size, 0) // -1: unknown
	if want == "" {
		if h.published == "" {
			return Result{}, fmt.Errorf("%s publishes no SHA-256 for %s: give the checksum (--sha256 HEX), or --sha256 %s to take it unchecked", host(s.URL), s.Name, SkipVerify)
		}
		want = h.published
	} else if h.published != "" && want != SkipVerify && want != h.published {
		return Result{}, fmt.Errorf("%s: the SHA-256 given (%s) is not the one the server publishes (%s): nothing downloaded", s.Name, want, h.published)
	}
	if sum, size, err := fileSHA256(final); err == nil {
		switch {
		case sum == want:
			return Result{Path: final, Name: s.Name, Bytes: size, SHA256: sum}, nil // there already
		case !opts.Force:
			return Result{}, fmt.Errorf("%s exists with another content (SHA-256 %s): pull with --force to replace it", s.Name, sum)
		}
	}
	limit := opts.MaxBytes
	if free, ok := freeSpace(opts.Dir); ok {
		limit = min(limit, free-keepFree)
	}
	if h.size > limit {
		return Result{}, fmt.Errorf("%s is %d bytes: more than %s can take (%d, keeping %d free)", s.Name, h.size, opts.Dir, max(limit, 0), int64(keepFree))
	}

	// What an earlier pull left: kept when it is the same file, else started over.
	var st partState
	have := int64(0)
	if b, err := os.ReadFile(statePath); err == nil && json.Unmarshal(b, &st) == nil && st.URL == s.URL && st.Validator != "" && st.Validator == h.validator {
		if fi, err := os.Stat(part); err == nil {
			have = fi.Size()
		}
	}
	resumed := have > 0
	if !resumed {
		_ = os.Remove(part)
	}
	st = partState{URL: s.URL, Validator: h.validator, Size: h.size, SHA256: h.published}
	if b, err := json.Marshal(st); err == nil {
		if err := os.WriteFile(statePath, b, 0o644); err != nil {
			return Result{}, fmt.Errorf("models directory: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		n, err := opts.fetch(ctx, s, part, have, h, limit)
		if n > have {
			attempt = 0 // progress: the retries count again
		}
		have = n
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("%s: interrupted after %d bytes (pull again to resume): %w", s.Name, have, ctx.Err())
		}
		var perm *permanent
		if errors.As(err, &perm) || attempt >= opts.Retries {
			return Result{}, fmt.Errorf("%s: %w (%d bytes kept: pull again to resume)", s.Name, err, have)
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 500 * time.Millisecond):
		case <-ctx.Done():
		}
		resumed = true
	}
	sum, size, err := fileSHA256(part)
	if err != nil {
		return Result{}, err
	}
	if h.size > 0 && size != h.size {
		return Result{}, fmt.Errorf("%s: got %d bytes, the server said %d", s.Name, size, h.size)
	}
	if want != SkipVerify && sum != want {
		_ = os.Remove(part)
		_ = os.Remove(statePath)
		return Result{}, fmt.Errorf("%s: the SHA-256 of what was downloaded is %s, not %s: the file is refused (and deleted)", s.Name, sum, want)
	}
	if err := os.Rename(part, final); err != nil {
		return Result{}, err
	}
	_ = os.Remove(statePath)
	return Result{Path: final, Name: s.Name, Bytes: size, SHA256: sum, Resumed: resumed}, nil
}

// keepTokenHome returns a copy of c that drops the Authorization header on a
// redirect to another host or port (Go's client keeps it for the same host name and
// its subdomains: the Hub's storage is one, and needs no token).
func keepTokenHome(c *http.Client) *http.Client {
	cl := *c
	next := c.CheckRedirect
	cl.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > 0 && req.URL.Host != via[0].URL.Host {
			req.Header.Del("Authorization")
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cl
}

// permanent is an error a retry cannot fix (the server refused the request).
type permanent struct{ error }

func (e *permanent) Unwrap() error { return e.error }

func host(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return raw
}

// request builds a request for s, with the Hub's token when s is on the Hub (Go's
// client drops it on a redirect to another host).
func (o Options) request(ctx context.Context, method string, s Source) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "ragway-pull")
	if s.HF && o.HFToken != "" {
		req.Header.Set("Authorization", "Bearer "+o.HFToken)
	}
	return req, nil
}

// head asks for the file's size, validator and published checksum, without
// following the Hub's redirect to its storage (whose answer lacks them).
func (o Options) head(ctx context.Context, s Source) (head, error) {
	req, err := o.request(ctx, http.MethodHead, s)
	if err != nil {
		return head{}, err
	}
	cl := *o.Client
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// (The first answer only: the token stays with the Hub.)
	resp, err := cl.Do(req)
	if err != nil {
		return head{}, netError(s, err)
	}
	resp.Body.Close()
	redirected := resp.StatusCode >= 300 && resp.StatusCode < 400
	if !redirected && resp.StatusCode != http.StatusOK {
		return head{}, statusError(s, resp.StatusCode)
	}
	var h head
	if v := strings.Trim(resp.Header.Get("X-Linked-Etag"), `"`); hexSHA256.MatchString(strings.ToLower(v)) {
		h.published = strings.ToLower(v)
	}
	h.size, _ = strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64)
	if redirected {
		// The storage's own answer has the size and validator of the bytes.
		req, err := o.request(ctx, http.MethodHead, s)
		if err != nil {
			return head{}, err
		}
		resp, err := o.Client.Do(req)
		if err != nil {
			return head{}, netError(s, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return head{}, statusError(s, resp.StatusCode)
		}
		if h.size <= 0 {
			h.size = resp.ContentLength
		}
		h.validator = validator(resp.Header)
		return h, nil
	}
	if h.size <= 0 {
		h.size = resp.ContentLength
	}
	h.validator = validator(resp.Header)
	return h, nil
}

func validator(hd http.Header) string {
	if v := hd.Get("ETag"); v != "" && !strings.HasPrefix(v, "W/") {
		return v
	}
	return hd.Get("Last-Modified")
}

func statusError(s Source, code int) error {
	switch code {
	case http.StatusNotFound:
		return &permanent{fmt.Errorf("%s: not found (404)", s.Name)}
	case http.StatusUnauthorized, http.StatusForbidden:
		return &permanent{fmt.Errorf("%s: the server refuses it (%d): a gated or private repository needs HF_TOKEN", s.Name, code)}
	}
	return fmt.Errorf("%s: the server answered %d", s.Name, code)
}

// fetch downloads the bytes of s from offset have (a Range request when > 0) and
// appends them to part, up to limit bytes in all; it returns how many bytes part
// holds. A body that sends nothing for o.Stall is cut (and resumed by the caller).
func (o Options) fetch(ctx context.Context, s Source, part string, have int64, h head, limit int64) (int64, error) {
	if h.size > 0 && have == h.size {
		return have, nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(o.Stall, func() { cancel(errStalled) })
	defer stall.Stop()
	req, err := o.request(ctx, http.MethodGet, s)
	if err != nil {
		return have, err
	}
	if have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		if h.validator != "" {
			req.Header.Set("If-Range", h.validator)
		}
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return have, netError(s, err)
	}
	defer resp.Body.Close()
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	switch {
	case resp.StatusCode == http.StatusPartialContent && have > 0:
		if !strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", have)) {
			return have, fmt.Errorf("the server sent another range than asked (%q)", resp.Header.Get("Content-Range"))
		}
	case resp.StatusCode == http.StatusOK:
		// The whole file (a server without ranges, or one whose file changed):
		// from the start.
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		have = 0
	case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0 && h.size <= 0:
		return have, nil // nothing after what is here: the checksum says whether it is whole
	default:
		return have, statusError(s, resp.StatusCode)
	}
	f, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return have, &permanent{err}
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			stall.Reset(o.Stall)
			if h.size > 0 && have+int64(n) > h.size {
				return have, &permanent{fmt.Errorf("the server sent more than the %d bytes it announced", h.size)}
			}
			if have+int64(n) > limit {
				return have, &permanent{fmt.Errorf("the file is larger than %d bytes, the most the models directory takes", limit)}
			}
			if _, err := f.Write(buf[:n]); err != nil {
				return have, &permanent{err}
			}
			have += int64(n)
			if o.Progress != nil {
				o.Progress(have, h.size)
			}
		}
		if err := ctx.Err(); err != nil && !errors.Is(context.Cause(ctx), errStalled) {
			return have, err // asked to stop: at once, whatever the connection still holds
		}
		if rerr == io.EOF {
			if h.size > 0 && have < h.size {
				return have, io.ErrUnexpectedEOF
			}
			return have, f.Sync()
		}
		if rerr != nil {
			if errors.Is(context.Cause(ctx), errStalled) {
				return have, fmt.Errorf("nothing received for %v", o.Stall)
			}
			return have, netError(s, rerr)
		}
	}
}

var errStalled = errors.New("stalled")

// netError says what went wrong reaching s without the URL Go's client quotes (a
// storage redirect's URL carries a signature).
func netError(s Source, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("%s: %w", host(s.URL), err)
}

// lockFile takes an exclusive lock on path (created if needed), released when the
// process ends or unlock is called; a lock held elsewhere is an error at once.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, errors.New("it is being pulled already (by this or another process)")
	}
	// The file stays: removed, a process that opened it meanwhile would lock a file
	// nobody else sees.
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// fileSHA256 returns the SHA-256 and size of the file at p.
func fileSHA256(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// freeSpace returns the bytes free for this user in dir's file system.
func freeSpace(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
