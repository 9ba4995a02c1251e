package web

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
)

// TestSite: the page and its assets, with the CSP, compressed as asked, revalidated
// by ETag; nothing outside the site.
func TestSite(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	app := fiber.New()
	s.Mount(app)
	get := func(path, enc, etag string) (int, string, string, []byte) {
		req := httptest.NewRequest("GET", path, nil)
		if enc != "" {
			req.Header.Set("Accept-Encoding", enc)
		}
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := app.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 && resp.Header.Get("Content-Security-Policy") != CSP {
			t.Errorf("%s: CSP %q", path, resp.Header.Get("Content-Security-Policy"))
		}
		return resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("ETag"), body
	}
	code, enc, etag, body := get("/", "", "")
	if code != 200 || enc != "" || !strings.Contains(string(body), `<script type="module" src="/assets/app.js">`) || strings.Contains(string(body), "<script>") {
		t.Fatalf("GET /: %d %q %.200s", code, enc, body)
	}
	if code, _, _, _ := get("/", "", etag); code != 304 {
		t.Errorf("revalidation: %d, want 304", code)
	}
	if _, enc, _, _ := get("/assets/app.js", "gzip, deflate", ""); enc != "gzip" {
		t.Errorf("gzip asked: %q", enc)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, enc, _, _ := get("/assets/app.js", "gzip, br", ""); enc == "br" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Brotli never served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, enc, _, _ := get("/assets/app.js", "br;q=0, gzip;q=0", ""); enc != "" {
		t.Errorf("both refused: %q", enc)
	}
	for _, p := range []string{"/assets/index.html", "/assets/../web.go", "/assets/nothing.js", "/assets/vendor/"} {
		if code, _, _, _ := get(p, "", ""); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
}
