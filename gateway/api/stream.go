package api

import (
	"bufio"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/netguard"
	"github.com/ragway/ragway/gateway/oai"
)

const (
	// streamQueue is how many events of one response may wait between the
	// turn and the writer; a full queue blocks the turn's generations.
	streamQueue = 64
	// maxBatch is how many bytes the writer gathers from events that are
	// already waiting before it flushes.
	maxBatch = 32 << 10
)

// errStreamClosed is what the turn's emit returns once the response writer is gone.
var errStreamClosed = errors.New("stream closed: the client went away")

// stream relays a turn's events to an SSE response. The turn runs in a goroutine
// feeding a bounded channel; the handler waits for the first event worth committing
// to 200 for (or a heartbeat), then hands over to run, which executes inside
// fasthttp's body stream writer.
type stream struct {
	cl           *call
	f            sseFormat
	includeUsage bool
	hb           time.Duration

	cancel context.CancelFunc
	ch     chan chat.Event
	// quit is closed when the writer is gone: emit then fails at once.
	quit      chan struct{}
	closeOnce sync.Once

	// Writer state: owned by the handler until it commits, then by run.
	started   []bool
	grounding *chat.Grounding
	done      bool // the response is complete ([DONE] written)
	status    int  // status recorded in metrics
	recorded  bool
}

// emit passes an event of the turn to the writer; it fails once the writer is gone.
func (st *stream) emit(e chat.Event) error {
	select {
	case st.ch <- e:
		return nil
	case <-st.quit:
		return errStreamClosed
	}
}

// close cancels the turn and releases its goroutine.
func (st *stream) close() {
	st.closeOnce.Do(func() {
		st.cancel()
		close(st.quit)
	})
}

// serveStream runs turn t (of n choices) as an SSE response. Until its first
// generated event arrives (or a heartbeat is due) nothing is committed, so an early
// failure is an ordinary HTTP error returned to the caller. A stored turn commits
// only once it started (a replica took it, the turn is stored): its response headers
// name the conversation and the message.
func (s *server) serveStream(c *fiber.Ctx, cl *call, t *chat.Turn, n int, stored bool, f sseFormat, includeUsage bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	st := &stream{
		cl: cl, f: f, includeUsage: includeUsage, hb: s.opts.HeartbeatInterval,
		cancel: cancel, ch: make(chan chat.Event, streamQueue), quit: make(chan struct{}),
		started: make([]bool, n), status: fiber.StatusOK,
	}
	go t.Run(ctx, st.emit)
	// Until it commits nothing is written, so no failed write can tell that the client
	// left: the connection is watched instead. A client that leaves while its turn
	// waits for a replica cancels it, and a stored turn is not stored.
	stopWatch := netguard.WatchClose(c.Context().Conn(), st.close)
	defer stopWatch()
	timer := time.NewTimer(st.hb)
	defer timer.Stop()
	var (
		first    chat.Event
		got      bool
		admitted bool
	)
wait:
	for {
		select {
		case e := <-st.ch:
			switch e.Kind {
			case chat.EventStart:
				admitted = true
				if e.ConversationID != "" {
					c.Set(headerConversationID, e.ConversationID)
					c.Set(headerMessageID, e.MessageID)
				}
				if o, ok := st.f.(startObserver); ok {
					o.onStart(e) // a stored Responses answer is named after its message
				}
				continue
			case chat.EventSources:
				st.grounding = e.Grounding
				continue
			case chat.EventError:
				st.close()
				return e.Err
			}
			first, got = e, true
			break wait
		case <-st.quit:
			return chat.APIError(context.Canceled) // the client left
		case <-timer.C:
			if stored && !admitted {
				timer.Reset(st.hb)
				continue
			}
			break wait
		}
	}
	stopWatch() // from here on, writes tell
	select {
	case <-st.quit:
		return chat.APIError(context.Canceled) // it left just now
	default:
	}
	cl.streamed = true
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	c.Status(fiber.StatusOK)
	// The fiber.Ctx is recycled when this handler returns: run must not
	// touch it, only st and the writer fasthttp gives it.
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) { st.run(w, first, got) })
	return nil
}

// run writes the response. It flushes after each batch of events (all that are
// ready, up to maxBatch bytes), writes a heartbeat comment when nothing was written
// for a heartbeat interval, and cancels the turn as soon as a write fails (the client
// went away).
func (st *stream) run(w *bufio.Writer, first chat.Event, got bool) {
	defer func() {
		st.close()
		st.record()
	}()
	buf := make([]byte, 0, 4096)
	if got {
		buf = st.handle(buf, first)
	} else {
		buf = append(buf, ssePing...)
	}
	ticker := time.NewTicker(st.hb)
	defer ticker.Stop()
	wrote := false
	for {
		if len(buf) > 0 {
			if st.done {
				st.record() // before the client can see the end
			}
			_, err := w.Write(buf)
			if err == nil {
				err = w.Flush()
			}
			if err != nil {
				st.close() // stop the turn now: the plugin frees its slot
				st.status = oai.StatusClientClosed
				return
			}
			buf = buf[:0]
			wrote = true
		}
		if st.done {
			return
		}
		select {
		case e := <-st.ch:
			buf = st.handle(buf, e)
		drain:
			for len(buf) < maxBatch && !st.done {
				select {
				case e := <-st.ch:
					buf = st.handle(buf, e)
				default:
					break drain
				}
			}
		case <-ticker.C:
			if !wrote {
				buf = append(buf, ssePing...)
			}
			wrote = false
		}
	}
}

// record records the request's status and duration, once.
func (st *stream) record() {
	if !st.recorded {
		st.recorded = true
		st.cl.finish(st.status)
	}
}

// handle appends what event e produces to buf.
func (st *stream) handle(buf []byte, e chat.Event) []byte {
	if st.done {
		return buf
	}
	switch e.Kind {
	case chat.EventStart:
		if o, ok := st.f.(startObserver); ok {
			o.onStart(e)
		}
	case chat.EventSources:
		st.grounding = e.Grounding
	case chat.EventDelta:
		buf = st.startChoice(buf, e.Choice)
		if e.Text != "" || len(e.Logprobs) > 0 {
			buf = st.f.delta(buf, e.Choice, e.Text, e.Logprobs)
		}
		buf = st.f.toolCalls(buf, e.Choice, e.ToolCalls)
	case chat.EventFinish:
		buf = st.startChoice(buf, e.Choice)
		buf = st.f.finish(buf, e.Choice, finishReason(e.FinishReason))
	case chat.EventDone:
		if st.includeUsage {
			buf = st.f.usage(buf, usageOf(e.Usage))
		}
		if g := st.grounding; g != nil {
			// The sources, a last event before [DONE].
			buf = append(buf, "data: "...)
			buf = append(buf, sourcesEvent(*g)...)
			buf = append(buf, "\n\n"...)
		}
		if e.Err != nil {
			// Generated but not stored: the client learns it before [DONE].
			st.status = e.Err.Status
			buf = st.f.fail(buf, e.Err)
		}
		st.done = true
		buf = st.f.end(buf)
	case chat.EventError:
		// Committed to 200: the error handler never sees this one (the core logged
		// a server-side failure).
		st.status = e.Err.Status
		st.done = true
		buf = st.f.fail(buf, e.Err)
		buf = st.f.end(buf)
	}
	return buf
}

// startChoice opens choice i's first chunk, once.
func (st *stream) startChoice(buf []byte, i int) []byte {
	if st.started[i] {
		return buf
	}
	st.started[i] = true
	return st.f.start(buf, i)
}
