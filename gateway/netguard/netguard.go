package netguard

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a guarded listener. Zero values take the defaults.
type Options struct {
	// HeaderTimeout is how long a new connection has to deliver its first request's
	// headers (default 10s); the HTTP server enforces the same bound on later requests.
	HeaderTimeout time.Duration
	// MaxUnauthenticated bounds the connections that have not carried an authenticated
	// request yet, over all clients (default 1024; negative: no limit).
	MaxUnauthenticated int
	// MaxUnauthenticatedPerIP bounds them per client IP address (default 64; negative:
	// no limit).
	MaxUnauthenticatedPerIP int
}

// Defaults of Options.
const (
	DefaultHeaderTimeout           = 10 * time.Second
	DefaultMaxUnauthenticated      = 1024
	DefaultMaxUnauthenticatedPerIP = 64
)

func (o Options) withDefaults() Options {
	if o.HeaderTimeout <= 0 {
		o.HeaderTimeout = DefaultHeaderTimeout
	}
	if o.MaxUnauthenticated == 0 {
		o.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	if o.MaxUnauthenticatedPerIP == 0 {
		o.MaxUnauthenticatedPerIP = DefaultMaxUnauthenticatedPerIP
	}
	return o
}

const (
	// lingerTimeout bounds how long a closed connection keeps draining.
	lingerTimeout = 2 * time.Second
	// lingerMax bounds how much it drains.
	lingerMax = 64 << 20
	// refuseTimeout bounds the write of the refusal of a connection over a limit.
	refuseTimeout = 100 * time.Millisecond
)

// Listen wraps ln. Serve the HTTP server on the result; the HTTP and WebSocket layers
// call [Authenticated] with a request's connection once its key is verified.
func Listen(ln net.Listener, o Options) net.Listener {
	return &listener{Listener: ln, opts: o.withDefaults(), perIP: map[string]int{}}
}

type listener struct {
	net.Listener
	opts Options

	mu    sync.Mutex
	total int
	perIP map[string]int
}

// Accept returns the next connection within the limits, refusing (with a 503) those
// beyond them.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr())
		if !l.admit(ip) {
			refuse(c)
			continue
		}
		// The first request's headers must come in time; the HTTP server sets the
		// deadlines of what follows.
		_ = c.SetReadDeadline(time.Now().Add(l.opts.HeaderTimeout))
		gc := &conn{Conn: c, l: l, ip: ip}
		gc.counted.Store(true)
		return gc, nil
	}
}

// admit counts a new unauthenticated connection from ip, if the limits allow it.
func (l *listener) admit(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.opts.MaxUnauthenticated > 0 && l.total >= l.opts.MaxUnauthenticated {
		return false
	}
	if l.opts.MaxUnauthenticatedPerIP > 0 && l.perIP[ip] >= l.opts.MaxUnauthenticatedPerIP {
		return false
	}
	l.total++
	l.perIP[ip]++
	return true
}

// release stops counting a connection from ip.
func (l *listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
	}
}

// Unauthenticated returns how many connections of ln (a listener from Listen) count
// against the limits now; 0 for any other listener.
func Unauthenticated(ln net.Listener) int {
	l, ok := ln.(*listener)
	if !ok {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// refusal is the answer to a connection over a limit: a 503 in the OpenAI error shape.
var refusal = func() []byte {
	body := `{"error":{"message":"too many connections that have not authenticated yet; try again shortly","type":"server_error","param":null,"code":"too_many_connections"}}`
	return []byte(fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
}()

func refuse(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(refuseTimeout))
	_, _ = c.Write(refusal)
	_ = c.Close()
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// conn is a guarded connection.
type conn struct {
	net.Conn
	l  *listener
	ip string
	// counted is set while the connection counts against the limits.
	counted atomic.Bool
	once    sync.Once
}

// uncount stops counting c against the limits.
func (c *conn) uncount() {
	if c.counted.Swap(false) {
		c.l.release(c.ip)
	}
}

// Close closes c gracefully: it shuts the write side down, then reads and discards what
// the client still sends (at most 2s and 64 MiB) before closing the socket, so that a
// client still sending reads the response instead of a reset.
func (c *conn) Close() error {
	c.once.Do(func() {
		c.uncount()
		tc, ok := c.Conn.(*net.TCPConn)
		if !ok || tc.CloseWrite() != nil {
			_ = c.Conn.Close()
			return
		}
		go func() {
			_ = tc.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, tc, lingerMax)
			_ = tc.Close()
		}()
	})
	return nil
}

// Authenticated records that conn (a connection from a listener of Listen, as the HTTP
// server hands it to a request) carried an authenticated request: it no longer counts
// against the limits on unauthenticated connections. Any other conn is ignored.
func Authenticated(c net.Conn) {
	if gc, ok := c.(*conn); ok {
		gc.uncount()
	}
}
