package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ragway/ragway/gateway/ingest/ingesttest"
	"github.com/ragway/ragway/internal/pgtest"
	"github.com/ragway/ragway/internal/testbin"
)

// screenshotDir is where the website's tests write their screenshots
// (RAGWAY_SCREENSHOTS, else .data/screenshots).
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("RAGWAY_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(testbin.Root(), ".data", "screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowserContext starts Debian's headless chromium (task setup:chromium) at the
// given window width.
func newBrowserContext(t *testing.T, width int) context.Context {
	t.Helper()
	return newBrowserContextLang(t, width, "en-US")
}

// newBrowserContextLang is newBrowserContext with the browser's language lang.
func newBrowserContextLang(t *testing.T, width int, lang string) context.Context {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found: task setup:chromium installs it (%v)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(width, 900), chromedp.Flag("lang", lang), chromedp.Flag("accept-lang", lang))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 40*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// tab is a browser page driven by a test: a step that fails fails the test, named
// (with label, when set).
type tab struct {
	t     *testing.T
	ctx   context.Context
	label string
}

// openTab starts a browser (newBrowserContextLang) for a test.
func openTab(t *testing.T, width int, lang, label string) *tab {
	t.Helper()
	return &tab{t: t, ctx: newBrowserContextLang(t, width, lang), label: label}
}

func (b *tab) fail(what string, err error) {
	b.t.Helper()
	if b.label != "" {
		what += " (" + b.label + ")"
	}
	b.t.Fatalf("%s: %v", what, err)
}

// run runs the step's actions.
func (b *tab) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.fail(what, err)
	}
}

// eval evaluates expr in the page (awaiting it when it is a promise).
func (b *tab) eval(what, expr string) any {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[any](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		b.fail(what, err)
	}
	return v
}

// poll waits until expr is truthy in the page.
func poll(expr string) chromedp.Action[chromedp.Void] { return chromedp.Poll[chromedp.Void](expr) }

func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(screenshotDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

// TestWebsite drives the site in a real headless Chromium: sign up, a chat whose
// tokens stream and render as Markdown, an answer holding HTML that shows as text and
// runs nothing, reloading finds the conversation, and a page of another origin can
// neither change anything with the user's session nor open a socket as the user.
func TestWebsite(t *testing.T) {
	g := launchGatewayConfig(t, pgtest.Database(t), "web: {signup: open}", `
  - {name: chat, backend: echo, options: {delay_ms: 5}}
`)
	g.waitReady(20 * time.Second)
	b := openTab(t, 1280, "en-US", "")
	ctx, run, eval := b.ctx, b.run, b.eval

	run("sign up", chromedp.Navigate(g.URL+"/#/signup"),
		chromedp.WaitVisible(`form.auth input[name=name]`),
		chromedp.SendKeys(`form.auth input[name=name]`, "alice"),
		chromedp.SendKeys(`form.auth input[name=password]`, "long enough password"))
	shot(t, ctx, "signup-desktop")
	run("create the account", chromedp.Click(`form.auth button[type=submit]`), chromedp.WaitVisible(`.composer textarea`))
	eval("watch the CSP", `window.__violations = []; document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(e.violatedDirective)); true`)

	// A chat: the echo model streams the question back word by word.
	question := "Tell me **about** the gateway and its sources"
	run("ask", chromedp.SendKeys(`.composer textarea`, question), chromedp.Poll[chromedp.Void](`!document.querySelector(".composer button[type=submit]").disabled`), chromedp.Click(`.composer button[type=submit]`),
		chromedp.WaitVisible(`.msg.assistant strong`),
		poll(`document.querySelector(".msg.assistant .body").textContent.includes("sources")`))
	answer, _ := eval("the answer", `document.querySelector(".msg.assistant .body").textContent`).(string)
	if !strings.Contains(answer, "about the gateway") {
		t.Fatalf("the answer as rendered: %q", answer)
	}
	ttft, _ := eval("time to first token", `window.ragwayTiming.firstPaint - window.ragwayTiming.sentAt`).(float64)
	t.Logf("time from sending the question to the first token painted: %.1f ms", ttft)
	shot(t, ctx, "chat-desktop")

	// HTML in an answer is text, and runs nothing.
	xss := `<img src=x onerror="window.__xss=1"> and <script>window.__xss=2</script>`
	run("an answer with HTML", chromedp.SendKeys(`.composer textarea`, xss), chromedp.Poll[chromedp.Void](`!document.querySelector(".composer button[type=submit]").disabled`), chromedp.Click(`.composer button[type=submit]`),
		poll(`[...document.querySelectorAll(".msg.assistant .body")].pop().textContent.includes("window.__xss=2")`),
		chromedp.Sleep(300*time.Millisecond))
	shown, _ := eval("the answer", `[...document.querySelectorAll(".msg.assistant .body")].pop().textContent`).(string)
	ran, _ := eval("what ran", `window.__xss !== undefined || document.querySelector(".msg.assistant img, .msg.assistant script") !== null`).(bool)
	if ran || !strings.Contains(shown, "<img src=x") {
		t.Fatalf("an answer's HTML ran or was not shown as text: ran %v, shown %q", ran, shown)
	}

	// A Markdown image in an answer is not shown (it would make requests with the
	// session at every repaint), and a link off the site shows where it goes.
	run("an answer with an image and an outside link", chromedp.SendKeys(`.composer textarea`, "see ![chart](/v1/models) and [the report](https://evil.example/r)"),
		chromedp.Poll[chromedp.Void](`!document.querySelector(".composer button[type=submit]").disabled`), chromedp.Click(`.composer button[type=submit]`),
		poll(`[...document.querySelectorAll(".msg.assistant .body")].pop().textContent.includes("the report")`),
		chromedp.Sleep(300*time.Millisecond))
	last := eval("the answer", `(() => { const b = [...document.querySelectorAll(".msg.assistant .body")].pop(); return [!!b.querySelector("img"), b.querySelector("a").textContent]; })()`).([]any)
	if last[0] != false || !strings.Contains(last[1].(string), "↗ evil.example") {
		t.Fatalf("an answer's image and outside link: %v", last)
	}

	// Answers with HTML, images and links went through the page's own code without a
	// single CSP violation; a string written to innerHTML (not DOMPurify's output) is
	// refused by Trusted Types.
	if v := eval("CSP violations", `window.__violations`).([]any); len(v) != 0 {
		t.Fatalf("CSP violations while chatting: %v", v)
	}
	if got := eval("a plain string to innerHTML", `(() => { try { document.createElement("div").innerHTML = "<b>x</b>"; return "assigned"; } catch (e) { return e.name; } })()`); got != "TypeError" {
		t.Fatalf("a plain string written to innerHTML: %v, want a TypeError (Trusted Types)", got)
	}

	// Renaming a conversation.
	run("rename", chromedp.Click(`.convs li button.rename`), chromedp.WaitVisible(`.convs li input`),
		chromedp.SetValue(`.convs li input`, "Gateway questions"), chromedp.SendKeys(`.convs li input`, "\r"),
		poll(`document.querySelector(".convs li a") && document.querySelector(".convs li a").textContent === "Gateway questions"`))

	// Reloading finds the conversation.
	run("reload", chromedp.Reload(), chromedp.WaitVisible(`.convs li a`),
		poll(`document.querySelectorAll(".msg.assistant").length === 3`))
	turns, _ := eval("messages", `document.querySelectorAll(".msg").length`).(float64)
	if turns != 6 {
		t.Fatalf("after reloading, %v messages, want 6", turns)
	}

	// A page on another origin (another port of the same host: the same site, so the
	// browser sends the cookie) can neither use the session nor open a socket.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><script>
window.results = {};
fetch(%[1]q + "/v1/knowledge-bases", {method: "POST", credentials: "include", headers: {"Content-Type": "text/plain"}, body: '{"name":"evil"}'})
  .then(r => window.results.post = r.status, e => window.results.post = "blocked");
const ws = new WebSocket(%[1]q.replace("http", "ws") + "/v1/ws");
ws.onopen = () => window.results.ws = "open";
ws.onerror = () => window.results.ws = "refused";
</script>`, g.URL)
	}))
	defer evil.Close()
	run("a page of another origin", chromedp.Navigate(evil.URL),
		poll(`window.results && window.results.post !== undefined && window.results.ws !== undefined`))
	results, _ := eval("its results", `window.results`).(map[string]any)
	if results["ws"] != "refused" {
		t.Errorf("another origin's socket: %v", results["ws"])
	}
	if code, body := g.call("GET", "/v1/knowledge-bases", g.Key, ""); strings.Contains(string(body), `"evil"`) {
		t.Fatalf("a page of another origin created a knowledge base with the user's session: %d %s", code, body)
	}
	t.Logf("another origin's POST: %v, socket: %v", results["post"], results["ws"])

	// The page's weight on a first load: every file it loads, compressed as the
	// browser asks (Brotli, else gzip).
	for _, enc := range []string{"br", "gzip"} {
		total := 0
		for _, p := range []string{"/", "/assets/style.css", "/assets/app.js", "/assets/i18n.js", "/assets/md.js",
			"/assets/vendor/marked.esm.js", "/assets/vendor/purify.es.mjs"} {
			req, _ := http.NewRequest("GET", g.URL+p, nil)
			req.Header.Set("Accept-Encoding", enc)
			var n int
			for range 100 { // Brotli is made in the background after start
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				n = len(b)
				if resp.Header.Get("Content-Encoding") == enc {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			total += n
		}
		t.Logf("page weight on a first load (%s): %d bytes", enc, total)
		if total > 100<<10 {
			t.Errorf("the page weighs %d bytes (%s), over 100 KiB", total, enc)
		}
	}

	// Phone width.
	phone := newBrowserContext(t, 390)
	if err := chromedp.Do(phone, chromedp.Navigate(g.URL+"/#/signin"), chromedp.WaitVisible(`form.auth`)); err != nil {
		t.Fatal(err)
	}
	shot(t, phone, "signin-phone")
}

// TestWebsiteKnowledge: a knowledge base made in the page, a Markdown and a PDF file
// uploaded and seen indexed, a document holding HTML shown as text, an answer
// grounded in it whose citation opens the chunk, a long answer stopped, the keys page,
// signing out; screenshots at desktop and phone widths.
func TestWebsiteKnowledge(t *testing.T) {
	g := launchGatewayConfig(t, pgtest.Database(t), "web: {signup: open}", `
  - {name: chat, backend: echo, options: {delay_ms: 5}}
`)
	g.waitReady(20 * time.Second)
	dir := t.TempDir()
	md := filepath.Join(dir, "runbook.md")
	if err := os.WriteFile(md, []byte("# Runbook\n\n## Failover\n\nWhen the primary fails, promote the replica and page the on-call engineer.\n\n"+
		"<script>window.__xss=3</script> <img src=x onerror=\"window.__xss=4\"> are shown, not run.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pdf := filepath.Join(dir, "backups.pdf")
	if err := os.WriteFile(pdf, ingesttest.PDF("Backups", []string{"Quarterly backups are kept for ninety days"}, ""), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, width := range []int{1280, 390} {
		name, suffix := "bob", "desktop"
		if width < 600 {
			name, suffix = "carol", "phone"
		}
		b := openTab(t, width, "en-US", suffix)
		ctx, run, eval := b.ctx, b.run, b.eval
		kb := "docs-" + name
		run("sign up", chromedp.Navigate(g.URL+"/#/signup"), chromedp.WaitVisible(`form.auth input[name=name]`),
			chromedp.SendKeys(`form.auth input[name=name]`, name), chromedp.SendKeys(`form.auth input[name=password]`, "long enough password"),
			chromedp.Click(`form.auth button[type=submit]`), chromedp.WaitVisible(`.composer textarea`))

		run("create a knowledge base", chromedp.Navigate(g.URL+"/#/knowledge"), chromedp.WaitVisible(`.side form input[name=name]`),
			chromedp.SendKeys(`.side form input[name=name]`, kb), chromedp.Click(`.side form button[type=submit]`),
			chromedp.WaitVisible(`.drop input[type=file]`))
		run("upload two files", chromedp.SetUploadFiles(`.drop input[type=file]`, []string{md, pdf}),
			poll(`document.querySelectorAll(".docs .badge.indexed").length === 2`))
		// Two more dropped on the drop zone (the events a browser sends for files
		// dragged from the desktop), then one deleted after a confirmation.
		run("drop two files", chromedp.Evaluate[chromedp.Void](`(() => {
			const dt = new DataTransfer();
			dt.items.add(new File(["# Dropped one\n\nThe first dropped note."], "dropped-1.md", {type: "text/markdown"}));
			dt.items.add(new File(["The second dropped note."], "dropped-2.txt", {type: "text/plain"}));
			const zone = document.querySelector(".drop");
			zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: dt, bubbles: true, cancelable: true}));
			zone.dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true, cancelable: true}));
			return true;
		})()`), poll(`document.querySelectorAll(".uploads progress").length === 4 && [...document.querySelectorAll(".uploads progress")].every(p => p.value === 100)`),
			poll(`document.querySelectorAll(".docs .badge.indexed").length === 4`))
		run("delete one", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true; [...document.querySelectorAll(".docs li")].find(l => l.textContent.includes("dropped-2")).querySelector("button").click(); true`),
			poll(`document.querySelectorAll(".docs li").length === 3 && ![...document.querySelectorAll(".docs li")].some(l => l.textContent.includes("dropped-2"))`))
		shown, _ := eval("search", `(async () => {
			const f = document.querySelector(".kb form.inline");
			f.querySelector("input").value = "are shown not run";
			f.requestSubmit();
			for (let i = 0; i < 100 && !document.querySelector(".results pre"); i++) await new Promise(r => setTimeout(r, 50));
			return document.querySelector(".results pre").textContent;
		})()`).(string)
		if !strings.Contains(shown, "<script>window.__xss=3</script>") || eval("xss", `window.__xss === undefined && !document.querySelector(".results script, .results img")`) != true {
			t.Fatalf("a document's HTML in the search results (%s): %q", suffix, shown)
		}
		shot(t, ctx, "knowledge-"+suffix)

		// A grounded chat: its citation opens the chunk.
		run("a grounded question", chromedp.Navigate(g.URL+"/#/chat"), chromedp.WaitVisible(`.composer textarea`),
			poll(`[...document.querySelectorAll(".pickers select")[1].options].some(o => o.value === "`+kb+`")`),
			chromedp.SetValue(`.pickers label:nth-child(2) select`, kb),
			chromedp.SendKeys(`.composer textarea`, "what happens when the primary fails? [1]"),
			chromedp.Poll[chromedp.Void](`!document.querySelector(".composer button[type=submit]").disabled`), chromedp.Click(`.composer button[type=submit]`),
			poll(`document.querySelector(".msg.assistant .cites a")`),
			chromedp.Click(`.msg.assistant .cites a`),
			poll(`document.querySelector(".sources details[open] pre.chunk")`))
		chunk, _ := eval("the cited chunk", `document.querySelector(".sources details[open] pre.chunk").textContent`).(string)
		if !strings.Contains(chunk, "promote the replica") || eval("xss", `window.__xss === undefined && !document.querySelector(".sources script, .sources img")`) != true {
			t.Fatalf("the cited chunk (%s): %q", suffix, chunk)
		}
		if eval("an inline citation", `!!document.querySelector(".msg.assistant .body a.cite")`) != true {
			t.Errorf("the answer's [1] is not a link (%s)", suffix)
		}
		shot(t, ctx, "chat-sources-"+suffix)
		// Regenerated, the answer is grounded again: its sources come with it.
		run("regenerate a grounded answer", chromedp.Click(`.composer button[data-i18n="chat.regenerate"]`),
			poll(`document.querySelectorAll("details.msg.superseded").length === 1 && [...document.querySelectorAll("article.msg.assistant")].pop().querySelector(".cites a")`))

		// A long answer, stopped.
		long := strings.TrimSpace(strings.Repeat("word ", 600))
		run("stop a long answer", chromedp.SetValue(`.composer textarea`, long), chromedp.Poll[chromedp.Void](`!document.querySelector(".composer button[type=submit]").disabled`), chromedp.Click(`.composer button[type=submit]`),
			poll(`[...document.querySelectorAll(".msg.assistant .body")].pop().textContent.length > 20`),
			chromedp.Click(`.composer button[data-i18n="chat.stop"]`),
			poll(`document.querySelector(".composer button[type=submit]").disabled === false`))
		got, _ := eval("the stopped answer", `[...document.querySelectorAll(".msg.assistant .body")].pop().textContent.length`).(float64)
		if got >= float64(len(long)) {
			t.Errorf("the stopped answer has %v characters of %d (%s)", got, len(long), suffix)
		}

		run("keys", chromedp.Navigate(g.URL+"/#/keys"), chromedp.WaitVisible(`section.card form input`))
		shot(t, ctx, "keys-"+suffix)
		run("sign out", chromedp.Click(`#signout`), chromedp.WaitVisible(`form.auth`))
		if eval("the session after signing out", `fetch("/auth/session").then(r => r.status)`) != float64(401) {
			t.Errorf("after signing out the session still answers (%s)", suffix)
		}
	}
}

// TestWebsiteAdmin: an admin (made with `ragway users password --admin`, the
// password on stdin) sees the models and their replicas, adds, scales and removes a
// model, and makes an invitation with which someone signs up; a user who is not an
// admin has no admin page.
func TestWebsiteAdmin(t *testing.T) {
	g := launchGatewayConfig(t, pgtest.Database(t), "", `
  - {name: chat, backend: echo}
`)
	g.waitReady(20 * time.Second)
	cmd := exec.Command(testbin.Ragway(t), "users", "password", "--user", "root", "--admin")
	cmd.Env = append(os.Environ(), "RAGWAY_DATABASE_URL="+g.DatabaseURL)
	cmd.Stdin = strings.NewReader("a long admin password\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "admin of the site: true") {
		t.Fatalf("users password: %v\n%s", err, out)
	}
	page := openTab(t, 1280, "en-US", "")
	ctx, run := page.ctx, page.run
	run("sign in as the admin", chromedp.Navigate(g.URL+"/#/signin"), chromedp.WaitVisible(`form.auth input[name=name]`),
		chromedp.SendKeys(`form.auth input[name=name]`, "root"), chromedp.SendKeys(`form.auth input[name=password]`, "a long admin password"),
		chromedp.Click(`form.auth button[type=submit]`), chromedp.WaitVisible(`.composer textarea`), chromedp.WaitVisible(`#nav-admin`))
	run("the models", chromedp.Click(`#nav-admin`), poll(`[...document.querySelectorAll("tbody tr strong")].some(e => e.textContent === "chat")`))
	run("add a model", chromedp.SetValue(`form.stack textarea`, `{"name": "chat2", "backend": "echo"}`), chromedp.Click(`form.stack button[type=submit]`),
		poll(`[...document.querySelectorAll("tbody tr")].some(r => r.textContent.includes("chat2") && r.textContent.includes("admin"))`))
	run("scale it", chromedp.Poll[chromedp.Void](`(() => { const r = [...document.querySelectorAll("tbody tr")].find(r => r.textContent.includes("chat2"));
		r.querySelector("input").value = "2"; r.querySelector("button.secondary").click(); return true; })()`),
		poll(`[...document.querySelectorAll("tbody tr")].find(r => r.textContent.includes("chat2")).querySelectorAll("td:nth-child(5) div").length === 2`))
	shot(t, ctx, "admin-desktop")
	// Replaced: "Edit" shows its entry, changed and sent back.
	chat2Button := func(label string) string {
		return `(() => { [...[...document.querySelectorAll("tbody tr")].find(r => r.textContent.includes("chat2")).querySelectorAll("button")].find(b => b.textContent === "` + label + `").click(); return true; })()`
	}
	run("edit it", chromedp.Poll[chromedp.Void](chat2Button("Edit")), poll(`document.querySelector("form.stack textarea").value.includes('"chat2"')`),
		chromedp.Evaluate[chromedp.Void](`(() => { const ta = document.querySelector("form.stack textarea"); const m = JSON.parse(ta.value); m.options = {delay_ms: 7}; ta.value = JSON.stringify(m); return true; })()`),
		chromedp.Click(`form.stack button[type=submit]`), poll(`document.querySelector("form.stack textarea").value === ""`))
	if status, body := g.call("GET", "/admin/models", g.Key, ""); status != http.StatusOK || !strings.Contains(string(body), `"delay_ms":7`) {
		t.Fatalf("the model replaced on the admin page: %d %s", status, body)
	}
	run("remove it", chromedp.Evaluate[chromedp.Void](`window.__asked = []; window.confirm = (m) => { window.__asked.push(m); return true; }`),
		chromedp.Poll[chromedp.Void](chat2Button("Remove")),
		poll(`![...document.querySelectorAll("tbody tr")].some(r => r.textContent.includes("chat2"))`))
	run("invite", chromedp.SendKeys(`form.inline input[name=name]`, "dora"), chromedp.Click(`form.inline button`),
		poll(`document.querySelector("code.secret")`))
	code, err := chromedp.Run(ctx, chromedp.Text(`code.secret`))
	if err != nil || !strings.HasPrefix(code, "inv_") {
		t.Fatalf("the invitation: %q %v", code, err)
	}
	b := newBrowser(t, g)
	status, body := b.do("POST", "/auth/signup", `{"name":"dora","password":"long enough password","invite":"`+code+`"}`, false, "")
	var s sessionBody
	decode(t, "sign up with the invitation", status, body, http.StatusCreated, &s)
	b.csrf = s.CSRFToken
	if status, _ := b.do("GET", "/admin/models", "", false, ""); status != http.StatusForbidden {
		t.Fatalf("a user who is not an admin reads /admin/models: %d", status)
	}

	// Users, their keys and their usage: dora makes a key and chats; the admin sees
	// her, revokes the key (after a confirmation), reads the usage per user and model,
	// and signs her out everywhere.
	status, body = b.do("POST", "/v1/keys", `{"name":"dora's script"}`, true, "")
	var k struct{ Key, Prefix string }
	decode(t, "dora's key", status, body, http.StatusCreated, &k)
	status, body = b.do("POST", "/v1/chat/completions", `{"model":"chat","messages":[{"role":"user","content":"hello from dora"}]}`, true, "")
	decode(t, "dora chats", status, body, http.StatusOK, nil)
	doraRow := `[...document.querySelectorAll("tbody tr")].find(r => r.querySelector("td strong")?.textContent === "dora")`
	run("the users", chromedp.Navigate(g.URL+"/#/chat"), chromedp.WaitVisible(`.composer textarea`), chromedp.Navigate(g.URL+"/#/admin"),
		poll(doraRow+`?.children[3].textContent === "1"`),
		chromedp.Evaluate[chromedp.Void](`window.__asked = []; window.confirm = (m) => { window.__asked.push(m); return true; }`),
		chromedp.Poll[chromedp.Void](`(() => { `+doraRow+`.querySelector("button.secondary").click(); return true; })()`),
		poll(`[...document.querySelectorAll("tr.sub code")].some(c => c.textContent === "`+k.Prefix+`")`))
	run("revoke her key", chromedp.Poll[chromedp.Void](`(() => { [...document.querySelectorAll("tr.sub li")].find(l => l.textContent.includes("`+k.Prefix+`")).querySelector("button").click(); return true; })()`),
		poll(`[...document.querySelectorAll("tr.sub li")].find(l => l.textContent.includes("`+k.Prefix+`")).textContent.includes("revoked")`))
	if status, _ := g.call("GET", "/v1/models", k.Key, ""); status != http.StatusUnauthorized {
		t.Fatalf("the key revoked on the admin page still works: %d", status)
	}
	// Usage is written in the background: the period is chosen again until it shows.
	run("usage", poll(`(() => { const sel = document.querySelector("section.usage select"); sel.value = "7"; sel.dispatchEvent(new Event("change"));
		return [...document.querySelectorAll("section.usage tbody tr")].some(r => r.children[0].textContent === "dora" && r.children[1].textContent === "chat" && r.children[2].textContent === "1"); })()`))
	run("scroll to the users", chromedp.Evaluate[chromedp.Void](`document.querySelectorAll(".pages > section")[1].scrollIntoView()`))
	shot(t, ctx, "admin-users-desktop")
	run("sign her out everywhere", chromedp.Poll[chromedp.Void](`(() => { `+doraRow+`.querySelector("button.link").click(); return true; })()`),
		poll(doraRow+`.children[3].textContent === "0"`))
	if status, _ := b.do("GET", "/v1/models", "", false, ""); status != http.StatusUnauthorized {
		t.Fatalf("dora's session after the admin signed her out everywhere: %d", status)
	}
	phone := newBrowserContext(t, 390)
	if err := chromedp.Do(phone, chromedp.Navigate(g.URL+"/#/signin"), chromedp.WaitVisible(`form.auth input[name=name]`),
		chromedp.SendKeys(`form.auth input[name=name]`, "root"), chromedp.SendKeys(`form.auth input[name=password]`, "a long admin password"),
		chromedp.Click(`form.auth button[type=submit]`), chromedp.WaitVisible(`.composer textarea`),
		chromedp.Navigate(g.URL+"/#/admin"), poll(`document.querySelectorAll(".pages tbody tr").length > 3`)); err != nil {
		t.Fatalf("the admin page at phone width: %v", err)
	}
	shot(t, phone, "admin-phone")
	asked, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__asked`))
	if err != nil || len(asked) != 2 {
		t.Fatalf("confirmations asked: %q %v; want one for the key and one for signing out", asked, err)
	}
}

// TestWebsiteToolCalls: a conversation whose answer called a tool (made over the API
// with the user's key) shows the call and the tool's result on the page, as text.
func TestWebsiteToolCalls(t *testing.T) {
	lib, model := llamaFixtures(t)
	g := launchGatewayConfig(t, pgtest.Database(t), "web: {signup: open}", llamaModels(lib, model))
	g.waitReady(60 * time.Second)
	b := openTab(t, 1280, "en-US", "")
	run, eval := b.run, b.eval
	run("sign up", chromedp.Navigate(g.URL+"/#/signup"), chromedp.WaitVisible(`form.auth input[name=name]`),
		chromedp.SendKeys(`form.auth input[name=name]`, "dora"), chromedp.SendKeys(`form.auth input[name=password]`, "long enough password"),
		chromedp.Click(`form.auth button[type=submit]`), chromedp.WaitVisible(`.composer textarea`))
	key := g.createKey("dora", "chat")
	wp, _ := json.Marshal(weatherParams)
	var first struct {
		ConversationID string `json:"conversation_id"`
		Choices        []struct {
			Message struct {
				ToolCalls []struct {
					ID string `json:"id"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	code, body := g.call("POST", "/v1/chat/completions", key, `{"model":"chat","conversation_id":"new","temperature":1,"seed":3,"max_tokens":300,
		"tool_choice":"required","parallel_tool_calls":false,"tools":[{"type":"function","function":{"name":"get_weather","parameters":`+string(wp)+`}}],
		"messages":[{"role":"user","content":"Weather in Paris?"}]}`)
	if err := json.Unmarshal(body, &first); code != http.StatusOK || err != nil || len(first.Choices) != 1 || len(first.Choices[0].Message.ToolCalls) != 1 {
		t.Fatalf("a stored required call: %d %s", code, body)
	}
	result := `{"temperature": 18, "note": "<b>warm</b>"}`
	resultJSON, _ := json.Marshal(result)
	if code, body := g.call("POST", "/v1/chat/completions", key, `{"model":"chat","conversation_id":"`+first.ConversationID+`","max_tokens":4,
		"messages":[{"role":"tool","tool_call_id":"`+first.Choices[0].Message.ToolCalls[0].ID+`","content":`+string(resultJSON)+`}]}`); code != http.StatusOK {
		t.Fatalf("the result: %d %s", code, body)
	}
	run("open the conversation", chromedp.Navigate(g.URL+"/#/chat/"+first.ConversationID), chromedp.Reload(),
		poll(`document.querySelector(".msg .call code") !== null && document.querySelector(".msg.tool pre") !== null`))
	call, _ := eval("the call", `document.querySelector(".msg .call").textContent`).(string)
	shown, _ := eval("the result", `document.querySelector(".msg.tool pre").textContent`).(string)
	bold, _ := eval("markup in the result", `document.querySelector(".msg.tool b") !== null`).(bool)
	if !strings.HasPrefix(call, "Called get_weather({") || shown != result || bold {
		t.Fatalf("the call %q and the result %q (markup rendered: %v)", call, shown, bold)
	}
	shot(t, b.ctx, "chat-tools-desktop")
}
