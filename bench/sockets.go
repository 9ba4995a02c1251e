package main

// The gateway's memory per idle authenticated WebSocket: RSS with the gateway idle,
// then holding many sockets that authenticated at their upgrade and say nothing.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"flag"

	"github.com/fasthttp/websocket"
)

var socketsN = flag.Int("sockets", 15000, "idle authenticated WebSockets the sockets bench holds")

func runSockets(binDir string) error {
	n := max(*socketsN, 1)
	// Both ends of every socket are on this machine: this process and the gateway
	// (which inherits the limit) each hold n descriptors.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Max < uint64(n)+1024 {
		return fmt.Errorf("the hard limit of open files is %d: %d sockets need %d", lim.Max, n, n+1024)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	gw, logTail, err := spawnGateway(binDir, "  - {name: echo, backend: echo}\n", 4, nil)
	if err != nil {
		return err
	}
	defer gw.stop()
	if err := gw.waitServing(30 * time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, logTail.String())
	}
	pid := gw.cmd.Process.Pid
	time.Sleep(2 * time.Second)
	before, err := rssKB(pid)
	if err != nil {
		return err
	}

	conns := make([]*websocket.Conn, n)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		dialErr error
		next    = make(chan int)
	)
	start := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := dialWS(gw, i, 2)
				mu.Lock()
				if err != nil && dialErr == nil {
					dialErr = fmt.Errorf("socket %d: %w", i, err)
				}
				mu.Unlock()
				if c != nil {
					conns[i] = c.conn
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if dialErr != nil {
		return fmt.Errorf("%w\n%s", dialErr, logTail.String())
	}
	opened := time.Since(start)
	time.Sleep(3 * time.Second)
	after, err := rssKB(pid)
	if err != nil {
		return err
	}
	// They are live: each of a sample answers a ping frame.
	for i := 0; i < n; i += max(n/100, 1) {
		c := conns[i]
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
			return fmt.Errorf("socket %d: %w", i, err)
		}
		if _, msg, err := c.ReadMessage(); err != nil || !strings.Contains(string(msg), `"pong"`) {
			return fmt.Errorf("socket %d: %q, %v", i, msg, err)
		}
	}
	fmt.Printf("idle WebSockets: the gateway's RSS with %d authenticated sockets open and silent (opened in %.1f s, 32 at a time)\n",
		n, opened.Seconds())
	fmt.Printf("%-28s %10s\n", "", "RSS")
	fmt.Printf("%-28s %7.1f MB\n", "gateway idle", float64(before)/1024)
	fmt.Printf("%-28s %7.1f MB\n", fmt.Sprintf("with %d sockets", n), float64(after)/1024)
	fmt.Printf("%-28s %7.1f KB\n\n", "per socket", float64(after-before)/float64(n))
	return nil
}

// rssKB is process pid's resident set, in KiB.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS for process %d", pid)
}
