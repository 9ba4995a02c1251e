package api

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/netguard"
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
// (netguard.Listen's connections do the same whenever the server closes
// them.)
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

// whileClientWaits returns the context of a non-streamed answer: it is cancelled when
// the client closes its connection meanwhile (netguard.WatchClose), so that nothing is
// generated for nobody, and left tells whether that happened. stop ends the watch; call
// it before the handler writes the answer (and defer it too: it is idempotent).
func whileClientWaits(c *fiber.Ctx) (ctx context.Context, left func() bool, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var gone atomic.Bool
	stopWatch := netguard.WatchClose(c.Context().Conn(), func() {
		gone.Store(true)
		cancel()
	})
	return ctx, gone.Load, func() {
		stopWatch()
		cancel()
	}
}
