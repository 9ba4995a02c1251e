package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"path"
	"strings"
	"sync/atomic"

	"github.com/andybalholm/brotli"
	"github.com/gofiber/fiber/v2"
)

//go:embed static
var static embed.FS

// CSP is the Content-Security-Policy of every answer of the site: nothing but this
// origin, no inline script or style, no plugins, no framing, no <base>, forms only
// to this origin; and Trusted Types: HTML reaches the page only as DOMPurify's output
// (its policy, "dompurify", is the only one), so a string written to innerHTML by
// mistake throws instead of running.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; font-src 'self'; " +
	"connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'; " +
	"require-trusted-types-for 'script'; trusted-types dompurify"

// asset is one file, with its compressed forms. Brotli's best compression is slow
// (a third of a second for the site): it is made in the background after start, and
// gzip serves until then.
type asset struct {
	typ       string
	etag      string
	plain, gz []byte
	br        atomic.Pointer[[]byte]
}

// Site serves the website.
type Site struct {
	assets map[string]*asset // by path under static/
}

// New loads the embedded site, compressing each file once.
func New() (*Site, error) {
	s := &Site{assets: map[string]*asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(data)
		a := &asset{typ: contentType(p), etag: `W/"` + hex.EncodeToString(sum[:8]) + `"`, plain: data}
		if compressible(a.typ) {
			var gz bytes.Buffer
			w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
			w.Write(data)
			w.Close()
			a.gz = gz.Bytes()
		}
		s.assets[strings.TrimPrefix(p, "static/")] = a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: load the site: %w", err)
	}
	if s.assets["index.html"] == nil {
		return nil, fmt.Errorf("web: the site has no index.html")
	}
	go func() {
		for _, a := range s.assets {
			if a.gz == nil {
				continue
			}
			var br bytes.Buffer
			bw := brotli.NewWriterLevel(&br, brotli.BestCompression)
			bw.Write(a.plain)
			bw.Close()
			b := br.Bytes()
			a.br.Store(&b)
		}
	}()
	return s, nil
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".js", ".mjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".json", ".webmanifest":
		return "application/json"
	case ".md", ".txt", "":
		return "text/plain; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func compressible(typ string) bool {
	return strings.HasPrefix(typ, "text/") || strings.Contains(typ, "json") || strings.Contains(typ, "svg")
}

// Mount serves the page at / and its assets at /assets/.
func (s *Site) Mount(app *fiber.App) {
	app.Get("/", func(c *fiber.Ctx) error { return s.serve(c, "index.html") })
	app.Get("/assets/*", func(c *fiber.Ctx) error {
		name := c.Params("*")
		if name == "index.html" || strings.Contains(name, "..") {
			return fiber.ErrNotFound
		}
		return s.serve(c, name)
	})
}

// Headers sets the site's security headers on c's answer.
func Headers(c *fiber.Ctx) {
	c.Set("Content-Security-Policy", CSP)
	c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
	c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
	c.Set(fiber.HeaderXFrameOptions, "DENY")
	c.Set("Cross-Origin-Opener-Policy", "same-origin")
	c.Set("Cross-Origin-Resource-Policy", "same-origin")
	c.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
}

func (s *Site) serve(c *fiber.Ctx, name string) error {
	a := s.assets[name]
	if a == nil {
		return fiber.ErrNotFound
	}
	Headers(c)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set(fiber.HeaderETag, a.etag)
	c.Set(fiber.HeaderVary, fiber.HeaderAcceptEncoding)
	if match := c.Get(fiber.HeaderIfNoneMatch); match != "" && match == a.etag {
		return c.SendStatus(fiber.StatusNotModified)
	}
	c.Set(fiber.HeaderContentType, a.typ)
	body := a.plain
	accept := c.Get(fiber.HeaderAcceptEncoding)
	br := a.br.Load()
	switch {
	case br != nil && acceptsEncoding(accept, "br"):
		c.Set(fiber.HeaderContentEncoding, "br")
		body = *br
	case a.gz != nil && acceptsEncoding(accept, "gzip"):
		c.Set(fiber.HeaderContentEncoding, "gzip")
		body = a.gz
	}
	return c.Send(body)
}

// acceptsEncoding reports whether an Accept-Encoding value takes coding (with a
// q-value other than 0).
func acceptsEncoding(header, coding string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), coding) {
			continue
		}
		q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
