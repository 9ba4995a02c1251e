package netguard_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ragway/ragway/gateway/netguard"
)

// serve accepts connections of a guarded listener until it closes, handing each to
// the conns channel.
func serve(t *testing.T, o netguard.Options) (net.Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := netguard.Listen(ln, o)
	t.Cleanup(func() { g.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := g.Accept()
			if err != nil {
				close(conns)
				return
			}
			conns <- c
		}
	}()
	return g, conns
}

func dial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reads c's answer: the 503 of a refused connection.
func refused(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no refusal: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !resp.Close {
		t.Fatalf("refusal %d %v %s", resp.StatusCode, resp.Header, b)
	}
}

func TestUnauthenticatedConnectionsAreLimited(t *testing.T) {
	ln, conns := serve(t, netguard.Options{MaxUnauthenticatedPerIP: 2, MaxUnauthenticated: 10})
	dial(t, ln)
	dial(t, ln)
	first, second := <-conns, <-conns
	if n := netguard.Unauthenticated(ln); n != 2 {
		t.Fatalf("%d unauthenticated, want 2", n)
	}
	refused(t, dial(t, ln))

	// An authenticated connection no longer counts; a closed one neither.
	netguard.Authenticated(first)
	netguard.Authenticated(first) // twice is once
	dial(t, ln)
	third := <-conns
	refused(t, dial(t, ln))
	second.Close()
	dial(t, ln)
	<-conns
	if n := netguard.Unauthenticated(ln); n != 2 {
		t.Fatalf("%d unauthenticated, want 2", n)
	}
	third.Close()
	first.Close() // already released: no double count
	if n := netguard.Unauthenticated(ln); n != 1 {
		t.Fatalf("%d unauthenticated, want 1", n)
	}
}

func TestTotalLimit(t *testing.T) {
	ln, conns := serve(t, netguard.Options{MaxUnauthenticated: 1, MaxUnauthenticatedPerIP: -1})
	dial(t, ln)
	<-conns
	refused(t, dial(t, ln))
}

func TestNoLimits(t *testing.T) {
	ln, conns := serve(t, netguard.Options{MaxUnauthenticated: -1, MaxUnauthenticatedPerIP: -1})
	for range 100 {
		dial(t, ln)
		<-conns
	}
}

// TestFirstHeadersHaveADeadline: a connection that sends nothing is cut.
func TestFirstHeadersHaveADeadline(t *testing.T) {
	ln, conns := serve(t, netguard.Options{HeaderTimeout: 200 * time.Millisecond})
	dial(t, ln)
	c := <-conns
	start := time.Now()
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() || time.Since(start) > 3*time.Second {
		t.Fatalf("read %v after %s; want a timeout after 200ms", err, time.Since(start))
	}
}

// TestLingeringClose: a client still sending when the server closes reads the answer,
// not a reset.
func TestLingeringClose(t *testing.T) {
	ln, conns := serve(t, netguard.Options{})
	client := dial(t, ln)
	server := <-conns
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := client.Write(buf); err != nil {
				return
			}
		}
	}()
	if _, err := io.ReadFull(server, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(server, "bye"); err != nil {
		t.Fatal(err)
	}
	server.Close()
	got, err := io.ReadAll(client)
	if string(got) != "bye" {
		t.Fatalf("client read %q, %v", got, err)
	}
}

// TestWritesHaveADeadline: a client that does not read what it asked for is cut by the
// write timeout, and a sooner deadline the server sets itself still applies.
func TestWritesHaveADeadline(t *testing.T) {
	ln, conns := serve(t, netguard.Options{WriteTimeout: 300 * time.Millisecond})
	client := dial(t, ln) // never reads
	_ = client
	server := <-conns
	start := time.Now()
	buf := make([]byte, 1<<20)
	var err error
	for err == nil && time.Since(start) < 5*time.Second {
		_, err = server.Write(buf)
	}
	if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("writing to a client that does not read: %v after %s, want a timeout", err, time.Since(start))
	}

	dial(t, ln)
	server = <-conns
	_ = server.SetWriteDeadline(time.Now().Add(-time.Second)) // the server's own, already past
	if _, err := server.Write([]byte("x")); err == nil {
		t.Fatal("a write past the server's own deadline succeeded")
	}
}
