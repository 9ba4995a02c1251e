package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ragway/ragway/internal/pgtest"
	"github.com/ragway/ragway/internal/testbin"
)

// propagation is how soon a change made through one gateway must be visible on the
// others (the change feed: a notification, then the change read and applied).
const propagation = time.Second

// searchUntil searches kb through g until found(hits) or the deadline, and returns
// how long it took; it fails the test at the deadline.
func (g *gateway) searchUntil(t *testing.T, key, kb, query string, deadline time.Time, what string, found func([]searchHit) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		hits := g.search(t, key, kb, query)
		if found(hits) {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen on %s within %v: %+v", what, g.URL, propagation, hits)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasDoc(id string) func([]searchHit) bool {
	return func(hits []searchHit) bool {
		for _, h := range hits {
			if h.DocumentID == id {
				return true
			}
		}
		return false
	}
}

func lacksDoc(id string) func([]searchHit) bool {
	has := hasDoc(id)
	return func(hits []searchHit) bool { return !has(hits) }
}

// TestGatewaysShareOneIndex: three gateways on one database, each with its own
// embedded index, act as one: a document ingested through one is found through the
// others within a second, one deleted through another is gone from all, and a gateway
// that was down while a document was ingested finds it once it is back.
func TestGatewaysShareOneIndex(t *testing.T) {
	db := pgtest.Database(t)
	a := launchGatewayOn(t, db, echoModels)
	b := serveOn(t, db, "", echoModels, false)
	c := serveOn(t, db, "", echoModels, false)
	for _, g := range []*gateway{a, b, c} {
		g.waitReady(20 * time.Second)
	}
	key := a.Key // keys live in the database: every gateway knows them

	code, body := a.call("POST", "/v1/knowledge-bases", key, `{"name":"docs"}`)
	decode(t, "create through A", code, body, 201, nil)
	ingest := func(g *gateway, title, text string) string {
		t.Helper()
		var doc kbDoc
		code, body := g.call("POST", "/v1/knowledge-bases/docs/documents?wait=true", key, `{"title":`+jsonString(title)+`,"format":"text","text":`+jsonString(text)+`}`)
		decode(t, "ingest "+title, code, body, 201, &doc)
		return doc.ID
	}

	first := ingest(a, "Zanzibar", "The zanzibar quux rotates the keys every night.")
	deadline := time.Now().Add(propagation)
	for _, g := range []*gateway{b, c} {
		d := g.searchUntil(t, key, "docs", "zanzibar quux", deadline, "a document ingested through A", hasDoc(first))
		t.Logf("ingested through A, found through %s after %v", g.URL, d)
	}

	if code, body := c.call("DELETE", "/v1/knowledge-bases/docs/documents/"+first, key, ""); code != 200 {
		t.Fatalf("delete through C: %d %s", code, body)
	}
	deadline = time.Now().Add(propagation)
	for _, g := range []*gateway{a, b} {
		g.searchUntil(t, key, "docs", "zanzibar quux", deadline, "a document deleted through C", lacksDoc(first))
	}

	// B is away while A ingests; back, it finds what was ingested meanwhile.
	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("stopping B: %v", err)
	}
	second := ingest(a, "Quokka", "The quokka ledger settles accounts at noon.")
	b = serveOn(t, db, "", echoModels, false)
	b.waitReady(20 * time.Second)
	b.searchUntil(t, key, "docs", "quokka ledger", time.Now().Add(propagation), "a document ingested while B was down", hasDoc(second))
	// And it follows the feed again: a document ingested through C now.
	third := ingest(c, "Wombat", "The wombat cache warms before dawn.")
	b.searchUntil(t, key, "docs", "wombat cache", time.Now().Add(propagation), "a document ingested through C after B's return", hasDoc(third))

	// Deleting the knowledge base through B empties it everywhere (it is gone).
	if code, body := b.call("DELETE", "/v1/knowledge-bases/docs", key, ""); code != 200 {
		t.Fatalf("delete the knowledge base through B: %d %s", code, body)
	}
	code, body = a.call("POST", "/v1/knowledge-bases", key, `{"name":"docs"}`)
	decode(t, "create again through A", code, body, 201, nil)
	deadline = time.Now().Add(propagation)
	for _, g := range []*gateway{a, b, c} {
		g.searchUntil(t, key, "docs", "quokka ledger wombat", deadline, "a deleted knowledge base's documents", func(hits []searchHit) bool { return len(hits) == 0 })
	}
}

// TestRateLimitHoldsAcrossGateways: a key of 30 requests per minute, asking through
// three gateways, gets no more than 30 and a tenth in any minute: 90 requests spread
// evenly over a minute get at most 33 (a burst of 3, then one every 2 s), and 90 at
// once (another key, meanwhile) get the burst. The others are 429
// rate_limit_exceeded.
func TestRateLimitHoldsAcrossGateways(t *testing.T) {
	db := pgtest.Database(t)
	a := launchGatewayOn(t, db, echoModels)
	b := serveOn(t, db, "", echoModels, false)
	c := serveOn(t, db, "", echoModels, false)
	gws := []*gateway{a, b, c}
	for _, g := range gws {
		g.waitReady(20 * time.Second)
	}
	// codes sends request i of a key through gateway i%3 and counts its status.
	type counts struct {
		mu    sync.Mutex
		codes map[int]int
	}
	send := func(key string, i int, n *counts) {
		code, body := gws[i%3].call("POST", "/v1/chat/completions", key, `{"model":"chat","max_tokens":2,"messages":[{"role":"user","content":"hello there"}]}`)
		if code == 429 {
			wantAPIError(t, "over the limit", code, body, 429, "rate_limit_exceeded")
		}
		n.mu.Lock()
		n.codes[code]++
		n.mu.Unlock()
	}
	spreadKey := a.createKey("spread", "chat", "--rpm", "30")
	burstKey := b.createKey("burst", "chat", "--rpm", "30")
	spread, burst := &counts{codes: map[int]int{}}, &counts{codes: map[int]int{}}
	var wg, bwg sync.WaitGroup
	start := time.Now()
	for i := range 90 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * time.Minute / 90)
			send(spreadKey, i, spread)
		})
		bwg.Go(func() { send(burstKey, i, burst) })
	}
	bwg.Wait()
	burstTook := time.Since(start)
	wg.Wait()
	took := time.Since(start)
	t.Logf("90 requests spread over %v: %v; 90 at once, in %v: %v", took, spread.codes, burstTook, burst.codes)
	if n := spread.codes[200]; n > 33 || n < 27 || n+spread.codes[429] != 90 {
		t.Fatalf("90 requests spread over %v through 3 gateways for 30 a minute: statuses %v, want 27 to 33 successes and the rest 429", took, spread.codes)
	}
	// The burst gets 3, and one more for every 2 s it lasted.
	if n := burst.codes[200]; n < 3 || n > 3+int(burstTook/(2*time.Second)) || n+burst.codes[429] != 90 {
		t.Fatalf("90 requests at once through 3 gateways for 30 a minute: statuses %v", burst.codes)
	}
}

// freePorts returns a port p such that p, p+1, …, p+n are free on 127.0.0.1 (the
// cluster's balancer and its gateways). They are drawn below the ephemeral range
// (32768 and up on Linux), where the listeners of other tests (on port 0) do not land
// meanwhile.
func freePorts(t *testing.T, n int) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(12000-n)
		free := true
		for i := 0; i <= n && free; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+i))
			if err != nil {
				free = false
				continue
			}
			l.Close()
		}
		if free {
			return p
		}
	}
	t.Fatal("no free run of ports")
	return 0
}

// TestClusterScript runs deploy/cluster.sh (what `task cluster` runs) with two gateways:
// HAProxy spreads requests over both, a conversation started through the balancer
// continues through it whichever gateway serves, and stopping the script stops them
// all.
func TestClusterScript(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatalf("haproxy is not installed: task setup:haproxy installs it (task test depends on it): %v", err)
	}
	db := pgtest.Database(t)
	keyOut, keyErr, code := runCommand(t, withEnv(exec.Command(testbin.Ragway(t), "keys", "create", "--user", "ops", "--scopes", "chat"), "DATABASE_URL="+db))
	if code != 0 {
		t.Fatalf("keys create: %s", keyErr)
	}
	key := strings.TrimSpace(keyOut)
	port := freePorts(t, 2)
	cmd := exec.Command("sh", "deploy/cluster.sh", "2")
	cmd.Dir = ".."
	logs := t.TempDir()
	cmd.Env = append(os.Environ(), "DATABASE_URL="+db, "RAGWAY_BIN="+testbin.Ragway(t), fmt.Sprint("CLUSTER_PORT=", port),
		"CLUSTER_DIR="+logs, "RAGWAY_PLUGINS_DIR="+testbin.Dir(t), "RAGWAY_MODELS=[{name: chat, backend: echo}]", "TMPDIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	lb := &gateway{t: t, URL: fmt.Sprintf("http://127.0.0.1:%d", port), Key: key}

	// Both gateways up behind the balancer: their /readyz name two echo plugins.
	plugins := map[int]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(plugins) < 2 {
		if time.Now().After(deadline) {
			gw1, _ := os.ReadFile(logs + "/gw1.log")
			gw2, _ := os.ReadFile(logs + "/gw2.log")
			t.Fatalf("the balancer did not reach two ready gateways (plugins %v); script output:\n%s\ngw1:\n%s\ngw2:\n%s", plugins, out.String(), gw1, gw2)
		}
		// Until HAProxy listens and has checked a gateway, it refuses or answers 503
		// in its own words.
		if resp, err := http.Get(lb.URL + "/readyz"); err == nil {
			var r readiness
			if resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&r) == nil {
				for _, p := range pids(r, "chat") {
					plugins[p] = true
				}
			}
			resp.Body.Close()
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A stored conversation through the balancer, turn after turn.
	var first struct {
		ConversationID string `json:"conversation_id"`
	}
	code, body := lb.call("POST", "/v1/chat/completions", key, `{"model":"chat","conversation_id":"new","messages":[{"role":"user","content":"first turn"}]}`)
	decode(t, "first turn", code, body, 200, &first)
	for i := range 3 {
		code, body := lb.call("POST", "/v1/chat/completions", key, `{"model":"chat","conversation_id":"`+first.ConversationID+`","messages":[{"role":"user","content":"turn `+fmt.Sprint(i)+`"}]}`)
		decode(t, "next turn", code, body, 200, nil)
	}
	if got := lb.conversation(key, first.ConversationID); len(got.Messages) != 8 {
		t.Fatalf("the conversation has %d messages, want 8", len(got.Messages))
	}

	// Stopping the script stops every gateway (and so their plugins).
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the script did not stop within 20 s:\n%s", out.String())
	}
	for p := range plugins {
		if !processGone(p, 10*time.Second) {
			t.Errorf("plugin %d outlived the cluster", p)
		}
	}
}

func withEnv(cmd *exec.Cmd, env ...string) *exec.Cmd {
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

// killModels makes chats long enough to be cut: 30 ms a token.
const killModels = `
  - {name: chat, backend: echo, max_concurrency: 16, options: {delay_ms: 30}}
`

// socketChat is what a client read of its one stored chat: until done, or until the
// socket broke.
type socketChat struct {
	conversationID string
	tokens         int
	done           bool
	err            error
}

// TestKillOneGatewayDuringChats: 16 WebSocket chats on gateway A, half of them done,
// when A is killed (kill -9). Every chat whose done arrived is stored complete; the
// others, left in progress by A, are marked failed by B within seconds; their clients
// continue the conversations on B.
func TestKillOneGatewayDuringChats(t *testing.T) {
	db := pgtest.Database(t)
	a := launchGatewayOn(t, db, killModels)
	b := serveOn(t, db, "", killModels, false)
	a.waitReady(20 * time.Second)
	b.waitReady(20 * time.Second)
	long := strings.Repeat("word ", 400) // 12 s of tokens
	chats := make([]socketChat, 16)
	var wg sync.WaitGroup
	started := make(chan int, 16) // a chat's first token arrived
	ended := make(chan int, 16)   // a chat's done arrived
	for i := range chats {
		c := dialWSKey(t, a, a.Key, "")
		content := "short answer here"
		if i%2 == 1 {
			content = long
		}
		writeWS(t, c, map[string]any{"type": "chat", "id": "c", "model": "chat", "content": content})
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &chats[i]
			for {
				var f wsFrame
				if r.err = c.ReadJSON(&f); r.err != nil {
					return
				}
				switch f.Type {
				case "start":
					r.conversationID = f.ConversationID
				case "token":
					if r.tokens++; r.tokens == 1 {
						started <- i
					}
				case "done":
					r.done = true
					ended <- i
					return
				default:
					r.err = fmt.Errorf("unexpected frame %s", f.raw)
					return
				}
			}
		}()
	}
	for range chats {
		select {
		case <-started:
		case <-time.After(20 * time.Second):
			t.Fatal("not every chat got its first token")
		}
	}
	// The short chats end: their clients have their done (an answer stored complete
	// may still have its done on the way when A dies); the long ones are mid-answer.
	timeout := time.After(20 * time.Second)
	for short := 0; short < len(chats)/2; {
		select {
		case i := <-ended:
			if i%2 == 0 {
				short++
			}
		case <-timeout:
			t.Fatalf("%d of the %d short chats got their done", short, len(chats)/2)
		}
	}
	_ = a.stop(syscall.SIGKILL) // its exit is "killed", as meant
	wg.Wait()                   // every socket ends: with done, or broken

	for i, c := range chats {
		if c.conversationID == "" {
			t.Fatalf("chat %d has no conversation id", i)
		}
		if c.done {
			if m := readAnswer(t, b, a.Key, c.conversationID); m.Status != "complete" || m.Content == "" {
				t.Errorf("chat %d got its done but is stored %s %q", i, m.Status, m.Content)
			}
			continue
		}
		if i%2 == 0 {
			t.Errorf("short chat %d never got its done: %v", i, c.err)
		}
	}
	// A's answers left in progress are failed by B: A stopped saying it is alive.
	deadline := time.Now().Add(30 * time.Second)
	for i, c := range chats {
		if c.done {
			continue
		}
		for {
			m := readAnswer(t, b, a.Key, c.conversationID)
			if m.Status == "failed" {
				// (Its text is stored at its end, which A never reached.)
				if !strings.Contains(m.Error, "gateway generating the answer stopped") {
					t.Errorf("chat %d's answer failed as %q: want why", i, m.Error)
				}
				break
			}
			if m.Status != "in_progress" || time.Now().After(deadline) {
				t.Fatalf("chat %d's answer is %s %q, want failed within 30 s of A's death", i, m.Status, m.Error)
			}
			time.Sleep(200 * time.Millisecond)
		}
		// Its client continues the conversation on B.
		ws := dialWSKey(t, b, a.Key, "")
		r := runWSChat(t, ws, map[string]any{"type": "chat", "id": "again", "model": "chat", "conversation_id": c.conversationID, "content": "still there?"})
		if r.End.Type != "done" || r.Text != "still there?" {
			t.Fatalf("chat %d continued on B: %+v", i, r.End)
		}
		if got := b.conversation(a.Key, c.conversationID); len(got.Messages) != 4 || got.Messages[3].Status != "complete" {
			t.Fatalf("chat %d's conversation after continuing on B: %+v", i, got.Messages)
		}
	}
}

// readAnswer returns the last message (the answer) of conversation id, read through g.
func readAnswer(t *testing.T, g *gateway, key, id string) storedMessage {
	t.Helper()
	c := g.conversation(key, id)
	if len(c.Messages) == 0 {
		t.Fatalf("conversation %s has no messages", id)
	}
	return c.Messages[len(c.Messages)-1]
}

// TestQuotaHoldsAcrossGatewaysAndRestarts: a user's daily token quota counts what
// every gateway served, refuses with 429 quota_exceeded naming the quota and when it
// resets, and still holds for a gateway started afterwards.
func TestQuotaHoldsAcrossGatewaysAndRestarts(t *testing.T) {
	db := pgtest.Database(t)
	a := launchGatewayOn(t, db, echoModels)
	b := serveOn(t, db, "", echoModels, false)
	a.waitReady(20 * time.Second)
	b.waitReady(20 * time.Second)
	key := a.createKey("quoted", "chat")
	if out, err := a.cli("users", "quota", "--user", "quoted", "--daily", "60"); err != nil || !strings.Contains(out, "daily quota:   60 tokens, 0 used today") {
		t.Fatalf("users quota: %q, %v", out, err)
	}
	body := `{"model":"chat","messages":[{"role":"user","content":"one two three four five"}]}` // 6 + 5 tokens
	served := 0
	var refusal []byte
	for i := 0; refusal == nil; i++ {
		if i == 20 {
			t.Fatalf("20 requests of 11 tokens served under a daily quota of 60")
		}
		code, resp := []*gateway{a, b}[i%2].call("POST", "/v1/chat/completions", key, body)
		switch code {
		case 200:
			served++
		case 429:
			refusal = resp
		default:
			t.Fatalf("request %d: %d %s", i, code, resp)
		}
	}
	e := wantAPIError(t, "over the quota", 429, refusal, 429, "quota_exceeded")
	tomorrow := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour).Format(time.RFC3339)
	if !strings.Contains(e.Message, "daily token quota of 60 tokens") || !strings.Contains(e.Message, tomorrow) {
		t.Fatalf("refusal %q: want the quota and when it resets (%s)", e.Message, tomorrow)
	}
	// 5 requests (55 tokens) fit; a few more may pass while the gateways sync (250 ms).
	if served < 5 || served > 8 {
		t.Fatalf("%d requests of 11 tokens served under a daily quota of 60", served)
	}
	// B restarts: the quota is the database's.
	_ = b.stop(syscall.SIGTERM)
	b = serveOn(t, db, "", echoModels, false)
	b.waitReady(20 * time.Second)
	code, resp := b.call("POST", "/v1/chat/completions", key, body)
	wantAPIError(t, "after B's restart", code, resp, 429, "quota_exceeded")

	// Without a change, the command shows the quotas and what was used; a change
	// names what it changes.
	out, err := a.cli("users", "quota", "--user", "quoted")
	m := regexp.MustCompile(`daily quota:   60 tokens, (\d+) used today \(resets ` + regexp.QuoteMeta(tomorrow[:10]) + ` 00:00 UTC\)`).FindStringSubmatch(out)
	if err != nil || m == nil {
		t.Fatalf("users quota without a change: %q, %v", out, err)
	}
	if used, _ := strconv.Atoi(m[1]); used < 11*served {
		t.Fatalf("users quota: %d used today, after %d requests of 11 tokens", used, served)
	}
	out, err = a.cli("users", "quota", "--user", "quoted", "--monthly", "1000000")
	if err != nil || !strings.Contains(out, "daily quota:   60 tokens") || !strings.Contains(out, "monthly quota: 1000000 tokens") {
		t.Fatalf("users quota --monthly: %q, %v", out, err)
	}
}
