package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// Finding an upstream is bounded by one deadline (option timeout) however
// many upstreams hang; only the upstream's silence counts against the
// idle timeout; a second Load releases the first one's connections.

func TestDeadlineBeforeFirstEvent(t *testing.T) {
	const timeout = 400 * time.Millisecond
	tests := []struct {
		name string
		gen  http.HandlerFunc
	}{
		{name: "no headers", gen: func(w http.ResponseWriter, r *http.Request) { block(r) }},
		{name: "silent after the headers", gen: func(w http.ResponseWriter, r *http.Request) { sse(w, roleChunk); block(r) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var urls []string
			for range 3 {
				urls = append(urls, newStub(t, tc.gen).URL)
			}
			p, _ := load(t, map[string]any{"upstreams": ups(urls...), "timeout": timeout.String(), "health_interval": "1h"})
			start := time.Now()
			g := collect(context.Background(), p, chatReq("hi"))
			el := time.Since(start)
			if g.err == nil || !strings.Contains(g.err.Error(), "no upstream answered within 400ms (option timeout)") {
				t.Errorf("generate = %v", g.err)
			}
			// Before the deadline, three hung upstreams took 3 × timeout.
			if el > timeout+timeout/2 {
				t.Errorf("took %v with timeout %v", el, timeout)
			}
			if len(g.events) != 0 {
				t.Errorf("emitted %+v", g.events)
			}
		})
	}
}

func TestDownUpstreamsAreSkipped(t *testing.T) {
	a := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"message":"boom","type":"InternalServerError","code":500}}`, http.StatusInternalServerError)
	})
	// b would answer, but its /health says it is down.
	b := newReplay(t, map[string]string{"GET /health": "health_dead_503.http"})
	p, _ := load(t, map[string]any{"upstreams": ups(a.URL, b.URL), "health_interval": "1h"})
	if h, _ := p.Health(context.Background()); h.Slots != slotsPerUpstream {
		t.Fatalf("health: %+v, want b down", h)
	}
	g := collect(context.Background(), p, chatReq("hi"))
	if g.err == nil || !strings.Contains(g.err.Error(), "boom") {
		t.Errorf("generate = %v", g.err)
	}
	if n := len(b.log.posts()); n != 0 {
		t.Errorf("the down upstream got %d requests while another was healthy", n)
	}

	// With none healthy, a down upstream is still tried.
	p, _ = load(t, map[string]any{"upstreams": ups(a.URL, b.URL), "health_interval": "1h"})
	p.st.Load().pool.markDown(p.st.Load().pool.ups[0], context.Canceled)
	if g := collect(context.Background(), p, chatReq("hi")); g.err != nil || g.text != "The sea is calm." {
		t.Errorf("generate with every upstream down = %q, %v; want b's answer", g.text, g.err)
	}
}

func TestSlowCallerIsNotUpstreamSilence(t *testing.T) {
	const timeout = 200 * time.Millisecond
	emitting := make(chan struct{})
	up := newStub(t, func(w http.ResponseWriter, r *http.Request) {
		sse(w, roleChunk, chatChunk("Hello", ""))
		// The rest comes at once, but only while the caller is busy with
		// the first event.
		select {
		case <-emitting:
		case <-r.Context().Done():
			return
		}
		sse(w, chatChunk(" there", "stop"), "[DONE]")
	})
	p, _ := load(t, map[string]any{"upstreams": ups(up.URL), "timeout": timeout.String()})
	var text string
	err := p.Generate(context.Background(), chatReq("hi"), func(e sdk.Event) error {
		if text == "" {
			close(emitting)
			time.Sleep(3 * timeout) // the caller is slow; the upstream is not
		}
		text += e.Text
		return nil
	})
	if err != nil || text != "Hello there" {
		t.Errorf("generate = %q, %v", text, err)
	}
}

func TestReloadClosesTheOldConnections(t *testing.T) {
	rp := &replay{routes: defaultRoutes()}
	old := httptest.NewUnstartedServer(http.HandlerFunc(rp.serve))
	var open atomic.Int64
	old.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	old.Start()
	t.Cleanup(old.Close)
	p, _ := load(t, map[string]any{"upstreams": ups(old.URL), "health_interval": "1h"})
	if g := collect(context.Background(), p, chatReq("hi")); g.err != nil {
		t.Fatal(g.err)
	}
	if open.Load() == 0 {
		t.Fatal("no kept-alive connection to the old upstream")
	}
	loadInto(t, p, map[string]any{"upstreams": ups(newReplay(t, nil).URL), "health_interval": "1h"})
	deadline := time.Now().Add(5 * time.Second)
	for open.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to the old upstream still open after the second Load", open.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
