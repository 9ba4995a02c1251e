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
	// MaxUnauthenticatedPerIP bounds them per client address (default 64; negative:
	// no limit). IPv6 clients are counted per /64 network, which one host usually has
	// whole.
	MaxUnauthenticatedPerIP int
	// WriteTimeout bounds each write to the client (default 60s): a client that does
	// not read what it asked for is cut, whatever it holds. A deadline the server sets
	// itself (SetWriteDeadline) applies when it is sooner.
	WriteTimeout time.Duration
}

// Defaults of Options.
const (
	DefaultHeaderTimeout           = 10 * time.Second
	DefaultMaxUnauthenticated      = 1024
	DefaultMaxUnauthenticatedPerIP = 64
	DefaultWriteTimeout            = 60 * time.Second
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
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
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
	// maxLingering bounds the connections draining at once; beyond, a connection is
	// closed at once.
	maxLingering = 256
)

// Listen wraps ln. Serve the HTTP server on the result; the HTTP and WebSocket layers
// call [Authenticated] with a request's connection once its key is verified.
func Listen(ln net.Listener, o Options) net.Listener {
	return &listener{Listener: ln, opts: o.withDefaults(), perIP: map[string]int{}}
}

type listener struct {
	net.Listener
	opts Options
	// lingering counts the connections draining after their close.
	lingering atomic.Int64

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

// hostOf is the client a connection's limits count against: its IPv4 address, or its
// IPv6 /64 network.
func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ta.IP.To4() == nil && len(ta.IP) == net.IPv6len {
			return ta.IP.Mask(net.CIDRMask(64, 128)).String() + "/64"
		}
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
	// deadline is the write deadline the server set itself (unix nanoseconds; 0:
	// none).
	deadline atomic.Int64
}

// Write writes p within the write timeout (or the server's own deadline, if sooner).
func (c *conn) Write(p []byte) (int, error) {
	d := time.Now().Add(c.l.opts.WriteTimeout)
	if own := c.deadline.Load(); own != 0 && own < d.UnixNano() {
		d = time.Unix(0, own)
	}
	if err := c.Conn.SetWriteDeadline(d); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

// SetWriteDeadline records the server's own write deadline (Write applies it).
func (c *conn) SetWriteDeadline(t time.Time) error {
	c.setOwn(t)
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline records the server's own write deadline and sets both.
func (c *conn) SetDeadline(t time.Time) error {
	c.setOwn(t)
	return c.Conn.SetDeadline(t)
}

func (c *conn) setOwn(t time.Time) {
	if t.IsZero() {
		c.deadline.Store(0)
	} else {
		c.deadline.Store(t.UnixNano())
	}
}

// IsAuthenticated reports whether conn (from a listener of Listen) has carried an
// authenticated request; false for any other conn.
func IsAuthenticated(nc net.Conn) bool {
	c, ok := nc.(*conn)
	return ok && !c.counted.Load()
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
		if !ok || c.l.lingering.Add(1) > maxLingering {
			if ok {
				c.l.lingering.Add(-1)
			}
			_ = c.Conn.Close()
			return
		}
		if tc.CloseWrite() != nil {
			c.l.lingering.Add(-1)
			_ = c.Conn.Close()
			return
		}
		go func() {
			defer c.l.lingering.Add(-1)
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

// tcpConn returns the TCP connection under nc, a connection of a listener of Listen.
func tcpConn(nc net.Conn) (*net.TCPConn, bool) {
	gc, ok := nc.(*conn)
	if !ok {
		return nil, false
	}
	tc, ok := gc.Conn.(*net.TCPConn)
	return tc, ok
}
