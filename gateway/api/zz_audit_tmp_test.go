package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/api"
)

func rawSend(t *testing.T, url string, raw []byte) (*bufio.Reader, net.Conn) {
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() { _, _ = c.Write(raw) }()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	return bufio.NewReader(c), c
}

func TestZZAuditEmptyFirstContentEncoding(t *testing.T) {
	s := start(t, newFake(), api.Options{MaxBodyBytes: 1 << 20})
	for _, hdrs := range []string{
		"Content-Encoding: \r\nContent-Encoding: gzip\r\n",
		"Content-Encoding:  \t \r\nContent-Encoding: gzip\r\n",
		"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n",
		"Content-Encoding: gzip\r\nContent-Encoding: gzip\r\n",
		"Content-Encoding: GZIP \r\n",
		"Content-Encoding: ,gzip,\r\n",
	} {
		layers := 1
		if strings.Count(hdrs, "gzip") == 2 {
			layers = 2
		}
		bomb := gzipped(t, spaces(200<<20), layers)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		raw := fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-key\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n", hdrs, len(bomb))
		r, _ := rawSend(t, s.url, append([]byte(raw), bomb...))
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("%q: %v", hdrs, err)
		}
		b, _ := io.ReadAll(resp.Body)
		runtime.ReadMemStats(&after)
		t.Logf("%q -> %d %.200s ; alloc grew %d MiB", hdrs, resp.StatusCode, b, (after.TotalAlloc-before.TotalAlloc)>>20)
	}
}

// pipelined: a request without a key withholding... actually sends body containing a second request.
func TestZZAuditSmuggle(t *testing.T) {
	s := start(t, newFake(), api.Options{})
	inner := "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer test-key\r\n\r\n"
	for _, first := range []string{
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n",
		"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
		"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
		"OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n",
		"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Basic x\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n",
	} {
		raw := fmt.Sprintf(first, len(inner)) + inner
		if strings.Contains(first, "chunked") {
			raw += "\r\n0\r\n\r\n"
		}
		r, _ := rawSend(t, s.url, []byte(raw))
		n := 0
		for {
			resp, err := http.ReadResponse(r, nil)
			if err != nil {
				break
			}
			b, _ := io.ReadAll(resp.Body)
			n++
			t.Logf("%.40q resp %d: %d close=%v %.120s", first, n, resp.StatusCode, resp.Close, b)
		}
	}
}
