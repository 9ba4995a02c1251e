//go:build unix

package netguard

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// WatchClose calls gone (once) if the client of nc, a connection of a listener of
// Listen, closes or resets it while the server is not reading from it: while a
// handler computes an answer it sends only at the end, the only way to learn that
// nobody waits for it any more. Data the client sends meanwhile (a pipelined request)
// is left unread and ends the watch. stop ends the watch and must be called before the
// server reads nc again (calling it more than once is harmless); it leaves no read
// deadline set. For any other conn WatchClose
// does nothing.
//
// Like nginx, it takes a client that shuts down its sending side as gone: HTTP/1.1
// clients do not half-close while they wait for an answer.
func WatchClose(nc net.Conn, gone func()) (stop func()) {
	tc, ok := tcpConn(nc)
	if !ok {
		return func() {}
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return func() {}
	}
	// The request's own read deadline (headers, then body) must not end the watch: a
	// long answer outlives it. The server sets its deadlines again before it reads.
	_ = tc.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		_ = rc.Read(func(fd uintptr) bool {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EAGAIN || err == syscall.EINTR:
				return false // nothing yet: wait until the socket is readable
			case err != nil || n == 0:
				gone() // reset, or the client's end of the stream
			}
			return true
		})
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = tc.SetReadDeadline(time.Now()) // wakes the watch if it waits
			<-done
			_ = tc.SetReadDeadline(time.Time{})
		})
	}
}
