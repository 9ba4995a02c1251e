package e2e

import (
	"testing"
	"time"
)

// TestLogBufferWakesWaiters: a waiter sees a line that arrives after it started
// waiting, and one waiting for a line that never comes returns once the log ends,
// not at its deadline.
func TestLogBufferWakesWaiters(t *testing.T) {
	l := newLogBuffer()
	blocked := make(chan struct{}, 10)
	l.blocked = func() { blocked <- struct{}{} }
	found := make(chan bool, 1)
	// asleep waits until the waiter sleeps again (bounded: a waiter never woken fails).
	asleep := func(what string) {
		t.Helper()
		select {
		case <-blocked:
		case <-time.After(10 * time.Second):
			t.Fatalf("the waiter did not wake and sleep again %s", what)
		}
	}
	go func() { found <- l.wait("replica ready", time.Hour) }()
	asleep("at the start") // waiting, the line not there yet
	l.add(`level=INFO msg="ragway listening"`)
	asleep("after another line") // woken by that line, and waiting again
	l.add(`level=INFO msg="replica ready" model=chat`)
	select {
	case ok := <-found:
		if !ok {
			t.Fatal("wait did not find a line that arrived")
		}
	case <-time.After(10 * time.Second): // a bound on the failure, not a synchronisation
		t.Fatal("wait did not wake when its line arrived")
	}
	if !l.wait("ragway listening", 0) {
		t.Fatal("wait does not find a line already there")
	}
	if l.wait("never logged", 10*time.Millisecond) {
		t.Fatal("wait found a line never logged")
	}

	go func() { found <- l.wait("never logged", time.Hour) }()
	asleep("waiting for a line never logged")
	l.end()
	select {
	case ok := <-found:
		if ok {
			t.Fatal("wait found a line never logged")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not return when the log ended")
	}
	if got := l.String(); got != "level=INFO msg=\"ragway listening\"\nlevel=INFO msg=\"replica ready\" model=chat\n" {
		t.Fatalf("String() = %q", got)
	}
}
