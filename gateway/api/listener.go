package api

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

const (
	// lingerTimeout bounds how long a closed connection keeps draining.
	lingerTimeout = 2 * time.Second
	// lingerMax bounds how much it drains.
	lingerMax = 64 << 20
	// drainIdle is how long drainBody waits for more of a body.
	drainIdle = 100 * time.Millisecond
)

// drainBody reads and discards what the client is still sending of a body
// fasthttp refused as too large, before the 413 is written: fasthttp
// rejects the body as soon as it has read the headers and then closes the
// connection, and closing a socket with unread data makes the kernel reset
// it, so the client would see "connection reset by peer" instead of the
// 413. It reads until the announced length has arrived, the client pauses
// for drainIdle, lingerTimeout passes or lingerMax bytes were read.
// (LingeringListener does the same for every connection the server
// closes.)
func drainBody(c *fiber.Ctx) {
	if c.Get(fiber.HeaderExpect) != "" {
		return // the client waits for 100 Continue: nothing was sent
	}
	conn := c.Context().Conn()
	if conn == nil {
		return
	}
	remaining := c.Request().Header.ContentLength() // -1: chunked
	buf := make([]byte, 32<<10)
	deadline := time.Now().Add(lingerTimeout)
	for total := 0; total < lingerMax && (remaining < 0 || total < remaining); {
		next := time.Now().Add(drainIdle)
		if next.After(deadline) {
			next = deadline
		}
		_ = conn.SetReadDeadline(next)
		n, err := conn.Read(buf)
		total += n
		if err != nil {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
}

// LingeringListener wraps ln so that a connection the server closes is
// closed gracefully: the write side is shut down first and whatever the
// client is still sending is read and discarded (for at most 2s and
// 64 MiB) before the socket is closed.
//
// Serving the app on it (app.Listener(api.LingeringListener(ln))) is
// optional: it extends to every early close what the 413 path already does
// (see drainBody). Without it, a client still sending when fasthttp closes
// the connection after an early error (a malformed request, headers too
// large) gets "connection reset by peer" instead of the response, since
// closing a socket with unread data makes the kernel reset it. Go's
// net/http server does the same lingering close.
func LingeringListener(ln net.Listener) net.Listener { return lingerListener{ln} }

type lingerListener struct{ net.Listener }

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		return &lingerConn{TCPConn: tc}, nil
	}
	return c, nil
}

type lingerConn struct {
	*net.TCPConn
	once sync.Once
}

func (c *lingerConn) Close() error {
	c.once.Do(func() {
		if c.TCPConn.CloseWrite() != nil {
			_ = c.TCPConn.Close()
			return
		}
		go func() {
			_ = c.TCPConn.SetReadDeadline(time.Now().Add(lingerTimeout))
			_, _ = io.CopyN(io.Discard, c.TCPConn, lingerMax)
			_ = c.TCPConn.Close()
		}()
	})
	return nil
}
