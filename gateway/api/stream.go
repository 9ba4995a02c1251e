package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/chat"
	"github.com/ragway/ragway/gateway/oai"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

const (
	// streamQueue is how many events of one response may wait between the
	// generations and the writer; a full queue blocks the generations.
	streamQueue = 64
	// maxBatch is how many bytes the writer gathers from events that are
	// already waiting before it flushes.
	maxBatch = 32 << 10
)

// errStreamClosed is what emit returns once the response writer is gone.
var errStreamClosed = errors.New("stream closed: the client went away")

// streamItem is one event of choice i, or (end) the end of its Generate
// call with the error it returned.
type streamItem struct {
	i   int
	ev  sdk.Event
	end bool
	err error
}

// stream relays the generations of a job to an SSE response. The
// generations run in goroutines feeding a bounded channel; the handler
// waits for the first item (or a heartbeat) before committing to 200, then
// hands over to run, which executes inside fasthttp's body stream writer.
type stream struct {
	j            *job
	f            sseFormat
	includeUsage bool
	hb           time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	ch     chan streamItem
	// quit is closed when the writer is gone: emit then fails at once.
	quit      chan struct{}
	closeOnce sync.Once

	// Writer state: owned by the handler until it commits, then by run.
	started  []bool
	ended    []bool
	usages   []sdk.Usage
	open     int
	firstTok bool
	done     bool // the response is complete ([DONE] written)
	status   int  // status recorded in metrics
	recorded bool
	// final is the last final event (a stored turn's finish reason and usage);
	// failure is the error that ended the stream, if any.
	final   sdk.Event
	failure error
}

func (j *job) newStream(f sseFormat, includeUsage bool) *stream {
	n := len(j.reqs)
	ctx, cancel := context.WithTimeout(context.Background(), j.s.opts.RequestTimeout)
	return &stream{
		j: j, f: f, includeUsage: includeUsage, hb: j.s.opts.HeartbeatInterval,
		ctx: ctx, cancel: cancel,
		ch:      make(chan streamItem, streamQueue),
		quit:    make(chan struct{}),
		started: make([]bool, n), ended: make([]bool, n), usages: make([]sdk.Usage, n),
		open: n, status: fiber.StatusOK,
	}
}

// launch starts one goroutine per choice.
func (st *stream) launch() {
	for i := range st.j.reqs {
		go func() {
			err := st.j.generate(st.ctx, i, func(e sdk.Event) error {
				select {
				case st.ch <- streamItem{i: i, ev: e}:
					return nil
				case <-st.quit:
					return errStreamClosed
				}
			})
			select {
			case st.ch <- streamItem{i: i, end: true, err: err}:
			case <-st.quit:
			}
		}()
	}
}

// close cancels the generations and releases their goroutines.
func (st *stream) close() {
	st.closeOnce.Do(func() {
		st.cancel()
		close(st.quit)
	})
}

// itemError is the error an item reports, if any.
func itemError(it streamItem) error {
	switch {
	case it.end:
		return it.err
	case it.ev.FinishReason == sdk.FinishError:
		return oai.BackendFailed(it.ev.Error)
	}
	return nil
}

// serveStream runs j as an SSE response. Until the first event arrives (or
// a heartbeat is due) nothing is committed, so an early failure is an
// ordinary HTTP error returned to the caller.
func (s *server) serveStream(c *fiber.Ctx, j *job, f sseFormat, includeUsage bool) error {
	st := j.newStream(f, includeUsage)
	st.launch()
	timer := time.NewTimer(st.hb)
	var first streamItem
	got := false
	select {
	case first = <-st.ch:
		got = true
	case <-timer.C:
	}
	timer.Stop()
	if got {
		if err := itemError(first); err != nil {
			st.close()
			j.account(usageJSON{})
			_ = j.t.End(err, sdk.Event{}, false)
			return err
		}
	}
	j.cl.streamed = true
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Accel-Buffering", "no")
	c.Status(fiber.StatusOK)
	// The fiber.Ctx is recycled when this handler returns: run must not
	// touch it, only st and the writer fasthttp gives it.
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) { st.run(w, first, got) })
	return nil
}

// run writes the response. It flushes after each batch of events (all
// that are ready, up to maxBatch bytes), writes a heartbeat comment when
// nothing was written for a heartbeat interval, and cancels the
// generations as soon as a write fails (the client went away).
func (st *stream) run(w *bufio.Writer, first streamItem, got bool) {
	defer func() {
		st.close()
		_ = st.record()
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
				// Before the client can see the end: a stored turn is stored
				// by then, or the client learns it was not.
				if err := st.record(); err != nil {
					buf = bytes.TrimSuffix(buf, sseDone)
					buf = appendSSEError(buf, chat.APIError(err))
					buf = append(buf, sseDone...)
				}
			}
			_, err := w.Write(buf)
			if err == nil {
				err = w.Flush()
			}
			if err != nil {
				st.cancel() // stop the generations now: the plugin frees its slot
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
		case it := <-st.ch:
			buf = st.handle(buf, it)
		drain:
			for len(buf) < maxBatch && !st.done {
				select {
				case it := <-st.ch:
					buf = st.handle(buf, it)
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

// record records the request's metrics and usage, and stores the end of a stored
// turn, once. It returns the error of storing the turn.
func (st *stream) record() error {
	if st.recorded {
		return nil
	}
	st.recorded = true
	st.j.account(st.j.usageOf(st.usages))
	st.j.cl.finish(st.status)
	if st.j.stored() == nil {
		return nil
	}
	final := st.final
	if final.Usage == nil {
		final.Usage = &st.usages[0]
	}
	if e := st.j.t.End(st.failure, final, st.status == oai.StatusClientClosed); e != nil {
		return e
	}
	return nil
}

// handle appends what item it produces to buf.
func (st *stream) handle(buf []byte, it streamItem) []byte {
	if st.done || st.ended[it.i] {
		return buf
	}
	if err := itemError(it); err != nil {
		e := chat.APIError(err)
		if e.Status >= 500 && e.Cause != nil {
			// Committed to 200: the error handler never sees this one.
			st.j.s.log.Warn("stream failed", "model", st.j.model, "status", e.Status, "error", e.Cause)
		}
		st.failure = err
		st.status = e.Status
		st.done = true
		st.cancel()
		buf = appendSSEError(buf, e)
		return append(buf, sseDone...)
	}
	if it.end {
		// Generate returned without a final event: end the choice as if
		// it had stopped.
		return st.endChoice(buf, it.i, "stop")
	}
	e := &it.ev
	st.j.t.Observe(*e)
	if e.Text != "" || len(e.Logprobs) > 0 {
		if !st.started[it.i] {
			st.started[it.i] = true
			buf = st.f.start(buf, it.i)
		}
		if e.Text != "" && !st.firstTok {
			st.firstTok = true
			st.j.cl.firstToken()
		}
		buf = st.f.delta(buf, it.i, e.Text, e.Logprobs)
	}
	if e.Final() {
		st.final = *e
		if e.Usage != nil {
			st.usages[it.i] = *e.Usage
		}
		buf = st.endChoice(buf, it.i, finishReason(e.FinishReason))
	}
	return buf
}

func (st *stream) endChoice(buf []byte, i int, reason string) []byte {
	if !st.started[i] {
		st.started[i] = true
		buf = st.f.start(buf, i)
	}
	st.ended[i] = true
	buf = st.f.finish(buf, i, reason)
	st.open--
	if st.open > 0 {
		return buf
	}
	if st.includeUsage {
		buf = st.f.usage(buf, st.j.usageOf(st.usages))
	}
	if g := st.j.t.Grounding; g != nil {
		// The sources, a last event before [DONE].
		buf = append(buf, "data: "...)
		buf = append(buf, sourcesEvent(*g)...)
		buf = append(buf, "\n\n"...)
	}
	st.done = true
	return append(buf, sseDone...)
}
