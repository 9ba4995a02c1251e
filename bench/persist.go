package main

// The cost of persistence on the chat path: one gateway on the echo backend (a small
// per-token delay, so that TTFT is the gateway's path plus one token's pause), N
// concurrent WebSocket clients each running M chats back to back per round, in two
// arms that take turns (A, B, A, B …) after a warm-up of both, so that drift of the
// machine hits both alike:
//
//   - A, stateless: `messages` with the one user message;
//   - B, stored: `content`, each client in its own conversation: its first stored
//     chat (no conversation_id) creates the conversation and is counted, later ones
//     name it, so every turn appends to a growing history (the gateway stores the
//     user message and an in-progress answer before generating, the prompt is the
//     stored history, and the answer is stored before the done frame).
//
// TTFT is client send → first token frame; throughput is chats (and tokens) per
// second of the arm's rounds. Afterwards every stored conversation is read back
// through GET /v1/conversations/{id}: it must hold every turn, in order, complete.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fasthttp/websocket"
)

var (
	persistClients = flag.Int("persist-clients", 16, "persistence bench: concurrent WebSocket clients (one socket each)")
	persistChats   = flag.Int("persist-chats", 25, "persistence bench: chats per client per round")
	persistRounds  = flag.Int("persist-rounds", 3, "persistence bench: rounds per arm (the arms take turns: A, B, A, B …)")
	persistWarm    = flag.Int("persist-warmup", 5, "persistence bench: warm-up chats per client and arm (the stored ones in a conversation of their own)")
	persistDelay   = flag.Int("persist-delay-ms", 5, "persistence bench: echo's pause before each token")
	persistWords   = flag.Int("persist-words", 8, "persistence bench: words per message (echo answers with as many tokens)")
	persistVerbose = flag.Bool("persist-verbose", false, "persistence bench: print every round")
	persistProfile = flag.String("persist-cpuprofile", "", "persistence bench: write the gateway's CPU profile here and print its top")
)

// persistTarget is the target for the added TTFT p50.
const persistTarget = 2 * time.Millisecond

func runPersist(binDir string) error {
	n, m, rounds := max(*persistClients, 1), max(*persistChats, 1), max(*persistRounds, 1)
	words := max(*persistWords, 2)
	// Enough slots that no chat queues, in the gateway or in the plugin.
	slots := 2 * n
	models := fmt.Sprintf("  - {name: echo, backend: echo, max_concurrency: %d, max_queue: 1024, options: {parallel: %d, delay_ms: %d}}\n",
		slots, slots, *persistDelay)
	var args []string
	if *persistProfile != "" {
		args = append(args, "-cpuprofile", *persistProfile)
	}
	gw, logTail, err := spawnGateway(binDir, models, n, nil, args...)
	if err != nil {
		return err
	}
	defer gw.stop()
	if err := gw.waitServing(30 * time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, logTail.String())
	}

	rtt, err := pgRoundTrip(gw.dbURL)
	if err != nil {
		return err
	}
	meter, err := newCPUMeter(gw)
	if err != nil {
		return err
	}
	defer meter.close()

	clients := make([]*wsClient, n)
	for i := range clients {
		c, err := dialWS(gw, i, words)
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		defer c.conn.Close()
		clients[i] = c
	}

	// Warm-up: both paths, the stored chats in conversations of their own.
	var convs []*convTrack
	if *persistWarm > 0 {
		for _, stored := range []bool{false, true} {
			if _, err := runRound(clients, stored, *persistWarm); err != nil {
				return fmt.Errorf("warm-up: %w\n%s", err, logTail.String())
			}
		}
		for _, c := range clients {
			convs = append(convs, c.conv)
			c.conv = &convTrack{}
		}
	}

	var arms [2]armStats // [0] stateless, [1] stored
	for r := range rounds {
		for a, stored := range []bool{false, true} {
			before := meter.sample()
			s, err := runRound(clients, stored, m)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, armName(stored), err)
			}
			arms[a].add(s)
			arms[a].cpu.add(meter.sample().since(before))
			if *persistVerbose {
				fmt.Printf("  round %d %-9s %7.1f chats/s  TTFT p50 %s p99 %s\n", r+1, armName(stored),
					float64(s.chats)/s.elapsed.Seconds(), ms(pct(s.ttft, 50)), ms(pct(s.ttft, 99)))
			}
		}
	}
	for _, c := range clients {
		convs = append(convs, c.conv)
	}

	// Every stored turn is in its conversation, in order (reported after the figures).
	turns, verifyErr := verifyConversations(gw, convs)
	meter.close()
	gw.stop()

	a, b := arms[0], arms[1]
	fmt.Printf("persistence cost (echo, delay_ms %d, %d-token answers): %d WebSocket clients × %d chats back to back per round; %d rounds per arm, taking turns (A, B, A, B …) after %d warm-up chats per client and arm\n",
		*persistDelay, words, n, m, rounds, *persistWarm)
	fmt.Printf("A: stateless chats (`messages`); B: stored chats (`content` in the client's own conversation, up to %d turns of history; the chat creating it counted)\n",
		rounds*m)
	fmt.Printf("%-36s %14s %14s %12s\n", "", "A stateless", "B stored", "B − A")
	for _, p := range []int{50, 99} {
		fmt.Printf("%-36s %14s %14s %12s\n", fmt.Sprintf("TTFT p%d (send → first token)", p), ms(pct(a.ttft, p)), ms(pct(b.ttft, p)), signedMs(pct(b.ttft, p)-pct(a.ttft, p)))
	}
	for _, p := range []int{50, 99} {
		fmt.Printf("%-36s %14s %14s %12s\n", fmt.Sprintf("  of which send → start frame, p%d", p), ms(pct(a.start, p)), ms(pct(b.start, p)), signedMs(pct(b.start, p)-pct(a.start, p)))
	}
	fmt.Printf("%-36s %14s %14s %12s\n", "chat p50 (send → done)", ms(pct(a.total, 50)), ms(pct(b.total, 50)), signedMs(pct(b.total, 50)-pct(a.total, 50)))
	fmt.Printf("%-36s %14s %14s %12s\n", "", "", "", "B / A")
	fmt.Printf("%-36s %14.1f %14.1f %12.3f\n", fmt.Sprintf("chats/s, %d clients", n), a.chatRate(), b.chatRate(), b.chatRate()/a.chatRate())
	fmt.Printf("%-36s %14.1f %14.1f %12.3f\n", "tokens/s", a.tokenRate(), b.tokenRate(), b.tokenRate()/a.tokenRate())
	for _, row := range []struct {
		name string
		get  func(cpuUse) time.Duration
		ok   bool
	}{
		{"gateway", func(c cpuUse) time.Duration { return c.gateway }, true},
		{"echo plugin", func(c cpuUse) time.Duration { return c.plugin }, meter.pluginPid > 0},
		{"Postgres backends", func(c cpuUse) time.Duration { return c.postgres }, meter.pgLocal},
	} {
		if !row.ok {
			fmt.Printf("%-36s %14s %14s %12s\n", "CPU per chat, "+row.name, "n/a", "n/a", "")
			continue
		}
		ca, cb := a.cpuPerChat(row.get), b.cpuPerChat(row.get)
		fmt.Printf("%-36s %14s %14s %12s\n", "CPU per chat, "+row.name, ms(ca), ms(cb), signedMs(cb-ca))
	}
	if len(a.ttft) < 500 {
		fmt.Println("(CPU times come from /proc in 10ms ticks: rough with this few chats)")
	}
	fmt.Printf("for scale: one Postgres round trip (SELECT 1 from the bench, paced like the chats) p50 %s\n", ms(rtt))
	if verifyErr != nil {
		fmt.Printf("chats per arm: %d; STORED CONVERSATIONS INCOMPLETE (read back through GET /v1/conversations/{id}): only %d turns check out in %d conversations\n",
			len(a.ttft), turns, len(convs))
		return fmt.Errorf("stored conversations: %w", verifyErr)
	}
	fmt.Printf("chats per arm: %d; stored conversations read back: %d holding %d turns, every turn stored in order and complete\n",
		len(a.ttft), len(convs), turns)
	added := pct(b.ttft, 50) - pct(a.ttft, 50)
	verdict := "PASS"
	if added > persistTarget {
		verdict = "FAIL"
	}
	fmt.Printf("verdict: %s — added TTFT p50 %s (target ≤ %s); added p99 %s; throughput B/A %.3f\n\n",
		verdict, signedMs(added), ms(persistTarget), signedMs(pct(b.ttft, 99)-pct(a.ttft, 99)), b.chatRate()/a.chatRate())

	if *persistProfile != "" {
		out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=30", filepath.Join(binDir, "ragway"), *persistProfile).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pprof: %w\n%s", err, out)
		}
		fmt.Printf("gateway CPU profile (persistence run, warm-up included):\n%s\n", out)
	}
	return nil
}

func armName(stored bool) string {
	if stored {
		return "stored"
	}
	return "stateless"
}

func signedMs(d time.Duration) string {
	if d < 0 {
		return "-" + ms(-d)
	}
	return "+" + ms(d)
}

// pct returns the p-th percentile of ds (sorted or not).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)*p/100, len(s)-1)]
}

// roundStats is one round of one arm.
type roundStats struct {
	ttft, start, total []time.Duration
	chats, tokens      int
	elapsed            time.Duration
}

// armStats sums an arm's rounds.
type armStats struct {
	roundStats
	cpu cpuUse
}

func (a *armStats) cpuPerChat(get func(cpuUse) time.Duration) time.Duration {
	return get(a.cpu) / time.Duration(max(a.chats, 1))
}

func (a *armStats) add(r roundStats) {
	a.ttft = append(a.ttft, r.ttft...)
	a.start = append(a.start, r.start...)
	a.total = append(a.total, r.total...)
	a.chats += r.chats
	a.tokens += r.tokens
	a.elapsed += r.elapsed
}

func (a *armStats) chatRate() float64  { return float64(a.chats) / a.elapsed.Seconds() }
func (a *armStats) tokenRate() float64 { return float64(a.tokens) / a.elapsed.Seconds() }

// runRound has every client run m chats back to back, all starting together; the
// round lasts until the last one is done.
func runRound(clients []*wsClient, stored bool, m int) (roundStats, error) {
	results := make([][]chatResult, len(clients))
	errs := make([]error, len(clients))
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-begin
			for range m {
				r, err := c.chat(stored)
				if err != nil {
					errs[i] = fmt.Errorf("client %d: %w", i, err)
					return
				}
				results[i] = append(results[i], r)
			}
		}()
	}
	start := time.Now()
	close(begin)
	wg.Wait()
	s := roundStats{elapsed: time.Since(start)}
	if err := errors.Join(errs...); err != nil {
		return s, err
	}
	for _, rs := range results {
		for _, r := range rs {
			s.ttft = append(s.ttft, r.ttft)
			s.start = append(s.start, r.start)
			s.total = append(s.total, r.total)
			s.tokens += r.tokens
			s.chats++
		}
	}
	return s, nil
}

// pgRoundTrip returns the median time of a `SELECT 1` on the database at dbURL,
// paced like the bench's chats (the CPUs idle between them), for scale: the
// store's calls cost a few of these each.
func pgRoundTrip(dbURL string) (time.Duration, error) {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	var ds []time.Duration
	for i := range 51 {
		time.Sleep(20 * time.Millisecond)
		t := time.Now()
		if _, err := conn.ExecContext(ctx, "SELECT 1"); err != nil {
			return 0, fmt.Errorf("postgres round trip: %w", err)
		}
		if i > 0 {
			ds = append(ds, time.Since(t))
		}
	}
	return pct(ds, 50), nil
}

// convTrack is a client's stored conversation: its id and the user messages of its
// turns, in order.
type convTrack struct {
	id    string
	turns []string
}

// wsClient is one WebSocket client, one chat at a time.
type wsClient struct {
	conn  *websocket.Conn
	idx   int
	words int
	seq   int
	conv  *convTrack
}

func dialWS(g *gatewayClient, idx, words int) (*wsClient, error) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(g.url, "http")+"/v1/ws", http.Header{"Authorization": {"Bearer " + g.key}})
	if err != nil {
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			return nil, fmt.Errorf("dial /v1/ws: %w: %d %s", err, resp.StatusCode, b)
		}
		return nil, fmt.Errorf("dial /v1/ws: %w", err)
	}
	return &wsClient{conn: conn, idx: idx, words: words, conv: &convTrack{}}, nil
}

// chatResult is one chat as the client saw it.
type chatResult struct {
	start, ttft, total time.Duration // send → start frame, first token, done
	tokens             int
}

// serverFrame is any server frame of /v1/ws.
type serverFrame struct {
	Type           string          `json:"type"`
	ID             string          `json:"id"`
	Text           string          `json:"text"`
	ConversationID string          `json:"conversation_id"`
	FinishReason   string          `json:"finish_reason"`
	Error          json.RawMessage `json:"error"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatFrame struct {
	Type           string        `json:"type"`
	ID             string        `json:"id"`
	Model          string        `json:"model"`
	Messages       []chatMessage `json:"messages,omitempty"`
	Content        string        `json:"content,omitempty"`
	ConversationID string        `json:"conversation_id,omitempty"`
}

// chat runs one chat: stateless (`messages`) or a turn of the client's conversation
// (`content`), and checks that the answer echoes the message.
func (c *wsClient) chat(stored bool) (chatResult, error) {
	c.seq++
	id := fmt.Sprintf("c%d-%d", c.idx, c.seq)
	// words distinct words: the echo answers with as many tokens.
	content := fmt.Sprintf("client%d chat%d%s", c.idx, c.seq, strings.Repeat(" tok", c.words-2))
	f := chatFrame{Type: "chat", ID: id, Model: "echo"}
	if stored {
		f.Content, f.ConversationID = content, c.conv.id
	} else {
		f.Messages = []chatMessage{{Role: "user", Content: content}}
	}
	msg, err := json.Marshal(f)
	if err != nil {
		return chatResult{}, err
	}
	var r chatResult
	var text strings.Builder
	_ = c.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	t0 := time.Now()
	if err := c.conn.WriteMessage(websocket.TextMessage, msg); err != nil {
		return r, err
	}
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			return r, fmt.Errorf("chat %s: %w", id, err)
		}
		now := time.Since(t0)
		var sf serverFrame
		if err := json.Unmarshal(data, &sf); err != nil {
			return r, fmt.Errorf("chat %s: frame %q: %w", id, data, err)
		}
		if sf.ID != id {
			return r, fmt.Errorf("chat %s: frame of another chat: %s", id, data)
		}
		switch sf.Type {
		case "start":
			r.start = now
			if stored {
				switch {
				case sf.ConversationID == "":
					return r, fmt.Errorf("chat %s: stored chat's start frame without conversation_id: %s", id, data)
				case c.conv.id == "":
					c.conv.id = sf.ConversationID
				case sf.ConversationID != c.conv.id:
					return r, fmt.Errorf("chat %s: conversation %s, want %s", id, sf.ConversationID, c.conv.id)
				}
			}
		case "token":
			if r.tokens == 0 {
				r.ttft = now
			}
			r.tokens++
			text.WriteString(sf.Text)
		case "done":
			r.total = now
			if sf.FinishReason != "stop" {
				return r, fmt.Errorf("chat %s: finish_reason %q", id, sf.FinishReason)
			}
			if text.String() != content {
				return r, fmt.Errorf("chat %s: answer %q, want the echo %q", id, text.String(), content)
			}
			if r.start == 0 {
				return r, fmt.Errorf("chat %s: no start frame", id)
			}
			if stored {
				c.conv.turns = append(c.conv.turns, content)
			}
			return r, nil
		case "error":
			return r, fmt.Errorf("chat %s: %s", id, sf.Error)
		default:
			return r, fmt.Errorf("chat %s: unexpected frame %s", id, data)
		}
	}
}

// verifyConversations reads every conversation back and checks it holds each turn
// (the user message, then the complete echoed answer), in order; it returns the
// number of turns.
func verifyConversations(g *gatewayClient, convs []*convTrack) (int, error) {
	turns := 0
	var errs []error
	for _, cv := range convs {
		if cv.id == "" {
			if len(cv.turns) > 0 {
				errs = append(errs, fmt.Errorf("%d turns without a conversation id", len(cv.turns)))
			}
			continue
		}
		got, err := getConversation(g, cv.id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(got) != 2*len(cv.turns) {
			errs = append(errs, fmt.Errorf("conversation %s holds %d messages, want %d (%d turns)", cv.id, len(got), 2*len(cv.turns), len(cv.turns)))
			continue
		}
		for i, want := range cv.turns {
			u, a := got[2*i], got[2*i+1]
			switch {
			case u.Role != "user" || u.Content != want || u.Status != "complete":
				errs = append(errs, fmt.Errorf("conversation %s, turn %d: user message %+v, want %q complete", cv.id, i, u, want))
			case a.Role != "assistant" || a.Content != want || a.Status != "complete" || a.FinishReason != "stop":
				errs = append(errs, fmt.Errorf("conversation %s, turn %d: answer %+v, want the complete echo %q", cv.id, i, a, want))
			default:
				turns++
				continue
			}
			break
		}
	}
	return turns, errors.Join(errs...)
}

type storedMessage struct {
	Role         string `json:"role"`
	Content      string `json:"content"`
	Status       string `json:"status"`
	FinishReason string `json:"finish_reason"`
}

func getConversation(g *gatewayClient, id string) ([]storedMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", g.url+"/v1/conversations/"+id, nil)
	if err != nil {
		return nil, err
	}
	g.authorize(req)
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /v1/conversations/%s: status %d: %s", id, resp.StatusCode, b)
	}
	var cv struct {
		ID       string          `json:"id"`
		Messages []storedMessage `json:"messages"`
	}
	if err := json.Unmarshal(b, &cv); err != nil {
		return nil, fmt.Errorf("GET /v1/conversations/%s: %w", id, err)
	}
	if cv.ID != id {
		return nil, fmt.Errorf("GET /v1/conversations/%s answered conversation %q", id, cv.ID)
	}
	return cv.Messages, nil
}

// cpuUse is CPU time (user + system) used by the processes that serve the chats.
type cpuUse struct {
	gateway, plugin, postgres time.Duration
}

func (c *cpuUse) add(d cpuUse) {
	c.gateway += d.gateway
	c.plugin += d.plugin
	c.postgres += d.postgres
}

// cpuSample is the CPU time of each process at one moment.
type cpuSample struct {
	gateway, plugin time.Duration
	postgres        map[int]time.Duration // by backend pid
}

// since returns the CPU used from before to s. A Postgres backend that appeared in
// between counts whole.
func (s cpuSample) since(before cpuSample) cpuUse {
	u := cpuUse{gateway: s.gateway - before.gateway, plugin: s.plugin - before.plugin}
	for pid, t := range s.postgres {
		u.postgres += t - before.postgres[pid]
	}
	return u
}

// cpuMeter samples the CPU time of the gateway, its echo plugin and the Postgres
// backends connected to the gateway's database (when Postgres runs on this machine:
// /proc shows its processes).
type cpuMeter struct {
	gatewayPid, pluginPid int
	db                    *sql.DB
	pgLocal               bool
}

func newCPUMeter(g *gatewayClient) (*cpuMeter, error) {
	m := &cpuMeter{gatewayPid: g.cmd.Process.Pid}
	if resp, err := g.client.Get(g.url + "/readyz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if sm := pidRe.FindSubmatch(b); sm != nil {
			fmt.Sscan(string(sm[1]), &m.pluginPid)
		}
	}
	db, err := sql.Open("postgres", g.dbURL)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	m.db = db
	var self int
	if err := db.QueryRow(`SELECT pg_backend_pid()`).Scan(&self); err != nil {
		db.Close()
		return nil, fmt.Errorf("postgres backend pid: %w", err)
	}
	_, err = procCPU(self)
	m.pgLocal = err == nil
	return m, nil
}

func (m *cpuMeter) close() {
	if m.db != nil {
		m.db.Close()
		m.db = nil
	}
}

func (m *cpuMeter) sample() cpuSample {
	var s cpuSample
	s.gateway, _ = procCPU(m.gatewayPid)
	if m.pluginPid > 0 {
		s.plugin, _ = procCPU(m.pluginPid)
	}
	if !m.pgLocal {
		return s
	}
	s.postgres = map[int]time.Duration{}
	rows, err := m.db.Query(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	if err != nil {
		return s
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			if t, err := procCPU(pid); err == nil {
				s.postgres[pid] = t
			}
		}
	}
	return s
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times (100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU returns the user + system CPU time of process pid (all its threads).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may hold spaces and parentheses: fields follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, b)
	}
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * clockTick, nil
}
