package ws

// Socket mechanics: one connection, its reader, its single writer and the bounded
// queues between them. An idle socket costs one goroutine, the reader's: the writer
// runs while frames are queued, pings go out from a timer, and one goroutine per
// handler closes every socket at shutdown.

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"

	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/oai"
)

// frame is one server frame waiting for the writer. chat is nil for frames
// that belong to no accepted chat.
type frame struct {
	chat     *chat
	buf      *[]byte
	terminal bool
	// start marks the chat's start frame: the writer closes
	// chat.startWritten once it is written.
	start bool
	// close, when set, makes the writer send a close frame with this status
	// (buf is the reason) and end the socket.
	close int
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// socket is one WebSocket connection.
type socket struct {
	h      *handler
	conn   *fws.Conn
	ctx    context.Context
	cancel context.CancelFunc
	ctrl   chan frame
	data   chan frame

	mu    sync.Mutex
	chats map[string]*chat

	// authenticated, key and principal are the socket's credentials, owned by
	// the reader: set before the upgrade or by the first frame.
	authenticated atomic.Bool
	key           string
	principal     auth.Principal
	// netConn is the socket's network connection: closing it ends the socket (the
	// upgraded conn's Close does not), and the auth frame marks it authenticated
	// (netguard).
	netConn net.Conn

	// wmu guards writing (a writer goroutine runs) and closed (serve is ending:
	// nothing may use conn any more); users counts the goroutines using conn
	// besides the reader (the writer, a ping, the shutdown), which serve waits for.
	wmu     sync.Mutex
	writing bool
	closed  bool
	users   sync.WaitGroup
	pinger  *time.Timer
}

func (h *handler) serve(conn *fws.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	s := &socket{
		h: h, conn: conn, ctx: ctx, cancel: cancel,
		ctrl:  make(chan frame, ctrlQueue),
		data:  make(chan frame, h.opts.SendQueue),
		chats: map[string]*chat{},
	}
	if ok, _ := conn.Locals(localAuthenticated).(bool); ok {
		s.authenticated.Store(true)
	}
	s.key, _ = conn.Locals(localKey).(string)
	s.principal, _ = conn.Locals(localPrincipal).(auth.Principal)
	s.netConn, _ = conn.Locals(localConn).(net.Conn)
	s.pinger = time.AfterFunc(time.Hour, s.ping)
	s.pinger.Stop()
	s.pinger.Reset(h.opts.PingInterval) // (armed once s.pinger is set: ping uses it)
	// Every goroutine using conn ends before serve returns, however it returns (a
	// panic of the reader included): the conn is recycled then, for another client.
	defer s.shutdown()
	if !h.sockets.add(s) {
		s.goingAway() // the gateway is shutting down
	}
	if !s.authenticated.Load() {
		// A socket that does not authenticate in time is closed.
		t := time.AfterFunc(h.opts.AuthTimeout, func() {
			if !s.authenticated.Load() {
				s.sendError("", &oai.Error{Status: http.StatusUnauthorized, Type: oai.TypeAuthentication, Code: oai.CodeMissingKey,
					Message: "no auth frame within " + h.opts.AuthTimeout.String()})
				s.closePolicy("authentication timeout")
			}
		})
		defer t.Stop()
	}
	s.readLoop()
}

// shutdown ends the socket: its chats are cancelled, its connection closed, and nothing
// uses the connection any more when it returns.
func (s *socket) shutdown() {
	s.cancel()
	s.closeConn()
	s.h.sockets.remove(s)
	s.pinger.Stop()
	s.wmu.Lock()
	s.closed = true
	s.wmu.Unlock()
	s.users.Wait()
}

// use runs fn with the socket's conn unless serve is ending (then it reports false).
func (s *socket) use(fn func()) bool {
	s.wmu.Lock()
	if s.closed {
		s.wmu.Unlock()
		return false
	}
	s.users.Add(1)
	s.wmu.Unlock()
	defer s.users.Done()
	fn()
	return true
}

// ping sends a ping and arms the next one; a ping that cannot be written ends the
// socket.
func (s *socket) ping() {
	s.use(func() {
		wait := 2 * s.h.opts.PingInterval
		if err := s.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(wait)); err != nil {
			s.fail()
			return
		}
		s.wmu.Lock()
		if !s.closed {
			s.pinger.Reset(s.h.opts.PingInterval)
		}
		s.wmu.Unlock()
	})
}

// goingAway closes the socket for the gateway's shutdown.
func (s *socket) goingAway() {
	s.use(func() {
		msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
		_ = s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		s.fail()
	})
}

// kick starts the writer unless it runs, or serve is ending.
func (s *socket) kick() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.writing || s.closed {
		return
	}
	s.writing = true
	s.users.Add(1)
	go s.writeLoop()
}

// idle ends the writer when nothing is queued (under wmu, so that a frame queued
// meanwhile is seen: its kick found the writer running).
func (s *socket) idle() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if len(s.ctrl) > 0 || len(s.data) > 0 {
		return false
	}
	s.writing = false
	return true
}

// readLoop reads client frames until the peer goes away or is silent for
// two ping intervals.
func (s *socket) readLoop() {
	c := s.conn
	wait := 2 * s.h.opts.PingInterval
	if s.authenticated.Load() {
		c.SetReadLimit(s.h.opts.MaxFrameBytes)
		_ = c.SetReadDeadline(time.Now().Add(wait))
	} else {
		// Until its auth frame, a socket holds little and not for long: pings do
		// not extend its deadline.
		// (The deadline leaves the auth timer a second to say why it closes it.)
		c.SetReadLimit(min(authFrameBytes, s.h.opts.MaxFrameBytes))
		_ = c.SetReadDeadline(time.Now().Add(s.h.opts.AuthTimeout + time.Second))
	}
	extend := func() {
		if s.authenticated.Load() {
			_ = c.SetReadDeadline(time.Now().Add(wait))
		}
	}
	c.SetPongHandler(func(string) error { extend(); return nil })
	c.SetPingHandler(func(msg string) error {
		extend()
		// A pong that cannot be written now (the writer is stuck on a slow
		// peer) is not worth dropping the socket for.
		_ = c.WriteControl(websocket.PongMessage, []byte(msg), time.Now().Add(time.Second))
		return nil
	})
	for {
		mt, data, err := c.ReadMessage()
		if err != nil {
			return
		}
		extend()
		if mt != websocket.TextMessage {
			s.sendError("", oai.Invalid("", oai.CodeUnsupported, "binary frames are not supported: send JSON text frames"))
			if !s.authenticated.Load() {
				s.closePolicy("the first frame must be an auth frame")
			}
			continue
		}
		s.dispatch(data)
	}
}

// writeLoop is the socket's only writer, running while frames are queued (kick).
// Frames of the reader (ctrl) go before generated frames (data), so a cancellation
// is answered at once even when tokens are queued; a chat's frames that arrive after
// its terminal frame was written are dropped.
func (s *socket) writeLoop() {
	defer s.users.Done()
	c := s.conn
	wait := 2 * s.h.opts.PingInterval
	for {
		var f frame
		select {
		case f = <-s.ctrl:
		default:
			select {
			case f = <-s.ctrl:
			case f = <-s.data:
			case <-s.ctx.Done():
				return
			default:
				if s.idle() {
					return
				}
				continue
			}
		}
		if f.chat != nil && f.chat.terminated {
			putBuf(f.buf)
			continue
		}
		if f.close != 0 {
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(f.close, string(*f.buf)), time.Now().Add(time.Second))
			putBuf(f.buf)
			s.fail()
			return
		}
		_ = c.SetWriteDeadline(time.Now().Add(wait))
		err := c.WriteMessage(websocket.TextMessage, *f.buf)
		putBuf(f.buf)
		if f.terminal && f.chat != nil {
			f.chat.terminated = true
		}
		if f.start {
			close(f.chat.startWritten)
		}
		if err != nil {
			s.fail()
			return
		}
	}
}

// fail tears the socket down after a write error: the reader's next read
// fails and every chat is cancelled.
func (s *socket) fail() {
	s.cancel()
	s.closeConn()
}

// closeConn closes the socket's network connection.
func (s *socket) closeConn() {
	if s.netConn != nil {
		_ = s.netConn.Close()
		return
	}
	_ = s.conn.NetConn().Close()
}

// sendCtrl queues a frame of the reader.
func (s *socket) sendCtrl(f frame) {
	select {
	case s.ctrl <- f:
		s.kick()
	case <-s.ctx.Done():
		putBuf(f.buf)
	}
}

// sendData queues a frame of a generation, blocking while the queue is
// full (backpressure) until ctx is done. It first waits for the chat's
// start frame to be written.
func (s *socket) sendData(ctx context.Context, f frame) error {
	select {
	case <-f.chat.startWritten:
	default:
		select {
		case <-f.chat.startWritten:
		case <-ctx.Done():
			putBuf(f.buf)
			return ctx.Err()
		}
	}
	select {
	case s.data <- f:
		s.kick()
		return nil
	case <-ctx.Done():
		putBuf(f.buf)
		return ctx.Err()
	}
}

// closePolicy closes the socket with status 1008 (policy violation) once the frames
// already queued are written.
func (s *socket) closePolicy(reason string) {
	if len(reason) > 120 {
		reason = reason[:120]
	}
	b := getBuf()
	*b = append(*b, reason...)
	s.sendCtrl(frame{buf: b, close: websocket.ClosePolicyViolation})
}
