package api_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
	"github.com/ragway/ragway/gateway/api/apitest"
	"github.com/ragway/ragway/gateway/store"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// gzipped returns data compressed with gzip, layers times.
func gzipped(t testing.TB, data []byte, layers int) []byte {
	t.Helper()
	for range layers {
		var b bytes.Buffer
		w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		data = b.Bytes()
	}
	return data
}

// spaces is a JSON chat body padded with n spaces: valid JSON of any size.
func spaces(n int) []byte {
	head := []byte(`{"model":"chat","messages":[{"role":"user","content":"hi"}]}`)
	return append(head, bytes.Repeat([]byte(" "), n)...)
}

func postEncoded(t *testing.T, s *testServer, path, encoding string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", s.url+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", encoding)
	req.Header.Set("Authorization", "Bearer "+apitest.Key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestCompressedBodiesAreBoundedAsTheyDecode: a small compressed body that expands past
// max_body_bytes is a 413, and decoding it does not allocate what it expands to.
func TestCompressedBodiesAreBoundedAsTheyDecode(t *testing.T) {
	s := start(t, newFake(), api.Options{MaxBodyBytes: 1 << 20})

	t.Run("plain gzip and deflate bodies are decoded", func(t *testing.T) {
		resp := postEncoded(t, s, "/v1/chat/completions", "gzip", gzipped(t, spaces(10), 1))
		decodeJSON(t, resp, 200, &struct{}{})
		var b bytes.Buffer
		w := zlib.NewWriter(&b)
		_, _ = w.Write(spaces(10))
		_ = w.Close()
		resp = postEncoded(t, s, "/v1/chat/completions", "deflate", b.Bytes())
		decodeJSON(t, resp, 200, &struct{}{})
	})

	t.Run("a bomb is a 413 without its memory", func(t *testing.T) {
		bomb := gzipped(t, spaces(256<<20), 1) // 256 MiB of spaces in about 256 KB
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		resp := postEncoded(t, s, "/v1/chat/completions", "gzip", bomb)
		checkError(t, resp, 413, "invalid_request_error", "request_too_large", "")
		runtime.ReadMemStats(&after)
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
			t.Fatalf("decoding a 256 MiB bomb against a 1 MiB limit allocated %d MiB", grew>>20)
		}
	})

	t.Run("layered and unknown encodings are refused", func(t *testing.T) {
		resp := postEncoded(t, s, "/v1/chat/completions", "gzip, gzip", gzipped(t, spaces(1<<20), 2))
		checkError(t, resp, 415, "invalid_request_error", "unsupported_encoding", "Content-Encoding")
		resp = postEncoded(t, s, "/v1/embeddings", "br", []byte("x"))
		checkError(t, resp, 415, "invalid_request_error", "unsupported_encoding", "Content-Encoding")
	})

	t.Run("every Content-Encoding header counts", func(t *testing.T) {
		// An empty first header once hid a second one from the limit, and Fiber's own
		// decoding then expanded the body without any.
		for _, headers := range [][]string{{"", "gzip, gzip"}, {"identity", "gzip"}, {"gzip", "gzip"}, {" ", "gzip"}} {
			req, _ := http.NewRequest("POST", s.url+"/v1/chat/completions", bytes.NewReader(gzipped(t, spaces(64<<20), 2)))
			req.Header.Set("Authorization", "Bearer "+apitest.Key)
			for _, h := range headers {
				req.Header.Add("Content-Encoding", h)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			runtime.ReadMemStats(&after)
			if resp.StatusCode == 200 || after.TotalAlloc-before.TotalAlloc > 32<<20 {
				t.Fatalf("Content-Encoding %q: status %d, %d MiB allocated", headers, resp.StatusCode, (after.TotalAlloc-before.TotalAlloc)>>20)
			}
			resp.Body.Close()
		}
	})

	t.Run("a 413 of a decoded body keeps the connection's next request", func(t *testing.T) {
		bomb := gzipped(t, spaces(8<<20), 1)
		c, r := rawRequest(t, s.url, fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
			"Content-Encoding: gzip\r\nContent-Length: %d\r\n", apitest.Key, len(bomb)))
		next := "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + apitest.Key + "\r\n\r\n"
		if _, err := c.Write(append(bomb, next...)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for i, want := range []int{413, 200} {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("response %d: %v", i, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != want {
				t.Fatalf("response %d: %d, want %d", i, resp.StatusCode, want)
			}
		}
	})

	t.Run("a corrupt body is a 400", func(t *testing.T) {
		resp := postEncoded(t, s, "/v1/chat/completions", "gzip", []byte("not gzip at all"))
		checkError(t, resp, 400, "invalid_request_error", "invalid_encoding", "Content-Encoding")
		good := gzipped(t, spaces(1000), 1)
		resp = postEncoded(t, s, "/v1/chat/completions", "gzip", good[:len(good)/2])
		checkError(t, resp, 400, "invalid_request_error", "invalid_encoding", "Content-Encoding")
	})

	t.Run("every route that reads a body", func(t *testing.T) {
		bomb := gzipped(t, spaces(8<<20), 1)
		for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/embeddings"} {
			resp := postEncoded(t, s, path, "gzip", bomb)
			checkError(t, resp, 413, "invalid_request_error", "request_too_large", "")
		}
	})
}

// rawRequest writes head (request line and headers, without the blank line) on a new
// connection and returns the connection and a reader of the response.
func rawRequest(t *testing.T, url, head string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

// TestBodiesWaitForTheKey: a body is not read before the request's key is known to
// be valid, so a client without a key cannot make the server hold a body (a large
// announced body whose last byte never comes), and any body it sends is refused with
// the 401 as soon as the headers are in.
func TestBodiesWaitForTheKey(t *testing.T) {
	s := startReal(t, api.Options{})
	key := s.key(t, "u", store.ScopeChat)
	fake := "rgw_abcdefgh_" + strings.Repeat("x", 40)
	for _, tc := range []struct {
		name, auth string
		length     string
	}{
		{"no key, large body", "", "Content-Length: 4000000"},
		{"no key, small body", "", "Content-Length: 100"},
		{"no key, chunked body", "", "Transfer-Encoding: chunked"},
		{"a key that does not exist, large body", "Authorization: Bearer " + fake + "\r\n", "Content-Length: 4000000"},
		{"a malformed key, small body", "Authorization: Basic abc\r\n", "Content-Length: 100"},
		{"a key of the wrong shape, small body", "Authorization: Bearer k\r\n", "Content-Length: 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r := rawRequest(t, s.url, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
				tc.auth+tc.length+"\r\n")
			// No byte of the body is sent: the answer must come anyway.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			if resp.StatusCode != 401 || !resp.Close {
				t.Fatalf("status %d, close %v; want 401 and the connection closed", resp.StatusCode, resp.Close)
			}
			checkError(t, resp, 401, "authentication_error", map[bool]string{true: "missing_api_key", false: "invalid_api_key"}[tc.auth == ""], "")
		})
	}

	t.Run("a valid key's large body is read", func(t *testing.T) {
		body := spaces(200 << 10)
		c, r := rawRequest(t, s.url, fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
			"Authorization: Bearer %s\r\nContent-Length: %d\r\n", key, len(body)))
		if _, err := c.Write(body); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		decodeJSON(t, resp, 200, &struct{}{})
	})
}

// TestSlowClientsAreCut: headers that trickle in, and a body that never ends, are cut
// at their deadlines.
func TestSlowClientsAreCut(t *testing.T) {
	s := start(t, newFake(), api.Options{HeaderTimeout: 300 * time.Millisecond, BodyTimeout: 300 * time.Millisecond})

	t.Run("silent connection", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		expectClosedWithin(t, c, 3*time.Second)
	})

	t.Run("one header line at a time", func(t *testing.T) {
		c, _ := rawRequest(t, s.url, "GET /v1/models HTTP/1.1")
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(c, "X-Slow-%d: 1\r\n", i); err != nil {
					return
				}
				time.Sleep(100 * time.Millisecond) // the attack's pace
			}
		}()
		expectClosedWithin(t, c, 3*time.Second)
		c.Close()
		<-done
	})

	t.Run("a body that never ends", func(t *testing.T) {
		c, _ := rawRequest(t, s.url, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+apitest.Key+"\r\nContent-Length: 1000\r\n")
		if _, err := io.WriteString(c, "{"); err != nil {
			t.Fatal(err)
		}
		expectClosedWithin(t, c, 3*time.Second)
	})
}

// expectClosedWithin reads c until the server closes it, failing after d.
func expectClosedWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server kept the connection open for %s", d)
	}
}

// TestUnauthenticatedConnectionsDoNotIdle: the answer to a request on a connection that
// never authenticated closes it (it would hold an unauthenticated slot while idle); an
// authenticated connection stays open.
func TestUnauthenticatedConnectionsDoNotIdle(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	for _, c := range []struct {
		name, head string
		close      bool
	}{
		{"no key", "GET /healthz HTTP/1.1\r\nHost: x\r\n", true},
		{"a key", "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + apitest.Key + "\r\n", false},
	} {
		_, r := rawRequest(t, s.url, c.head)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Close != c.close {
			t.Errorf("%s: Connection: close is %v, want %v", c.name, resp.Close, c.close)
		}
	}
}

// TestMalformedRequestsAreAnsweredWithoutTheirBytes: fasthttp's parser errors quote
// the request (a key among its headers); the answer says only what is wrong.
func TestMalformedRequestsAreAnsweredWithoutTheirBytes(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	for _, c := range []struct{ head, body string }{
		{"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + apitest.Key + "\r\nContent-Length: zz\r\n", ""},
		{"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + apitest.Key + "\r\nTransfer-Encoding: chunked\r\n", "zz\r\n"},
	} {
		conn, r := rawRequest(t, s.url, c.head)
		if _, err := io.WriteString(conn, c.body); err != nil {
			t.Fatal(err)
		}
		head := c.head
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || strings.Contains(string(b), apitest.Key[5:]) || !strings.Contains(string(b), "malformed") {
			t.Errorf("%q: %d %s", head, resp.StatusCode, b)
		}
	}
}

// TestNonStreamedAnswerStopsWhenTheClientLeaves: a client that closes its connection
// while a non-streamed answer is generated cancels the generation in the backend,
// instead of leaving it to run to the end for nobody.
func TestNonStreamedAnswerStopsWhenTheClientLeaves(t *testing.T) {
	fake := newFake()
	started, stopped := make(chan struct{}, 4), make(chan error, 4)
	fake.SetGenerate(func(ctx context.Context, _ string, _ sdk.GenerateRequest, _ func(sdk.Event) error) error {
		started <- struct{}{}
		select {
		case <-ctx.Done():
			stopped <- ctx.Err()
		case <-time.After(20 * time.Second):
			stopped <- nil
		}
		return ctx.Err()
	})
	// The request's read deadline (body_timeout) passes while the answer is generated:
	// the watch outlives it.
	s := start(t, fake, api.Options{BodyTimeout: 300 * time.Millisecond})
	for _, c := range []struct {
		path  string
		after time.Duration
	}{{"/v1/chat/completions", 0}, {"/v1/completions", 0}, {"/v1/chat/completions", time.Second}} {
		path := c.path
		body := `{"model":"chat","messages":[{"role":"user","content":"hi"}],"prompt":"hi"}`
		conn, _ := rawRequest(t, s.url, fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, apitest.Key, len(body)))
		if _, err := io.WriteString(conn, body); err != nil {
			t.Fatal(err)
		}
		<-started
		time.Sleep(c.after) // a client that waits a while, then leaves
		conn.Close()
		select {
		case err := <-stopped:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s: the generation ended with %v after the client left, want it cancelled", path, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("%s: the generation was not cancelled within 3s of the client leaving", path)
		}
	}
}

// TestPipelinedRequestsAreNotTakenForALeavingClient: a request that arrives while a
// non-streamed answer is computed is data, not a close: both are answered.
func TestPipelinedRequestsAreNotTakenForALeavingClient(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	body := `{"model":"chat","messages":[{"role":"user","content":"one two three"}]}`
	req := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", apitest.Key, len(body), body)
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req+req); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range 2 {
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		decodeJSON(t, resp, 200, &struct{}{})
	}
}
