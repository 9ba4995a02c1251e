package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/ragway/ragway/internal/pgtest"
)

// cutProxy is a TCP proxy to a gateway whose open connections can be cut at once, as a
// network drop cuts them; it goes on accepting new ones.
type cutProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	URL   string
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, URL: "http://" + ln.Addr().String()}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

// cut closes every connection open through the proxy.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestWebsiteChatLifecycle: regenerating an answer (the one it replaces folds away,
// and stays so after a reload); an answer goes on while the reader looks at another
// conversation and is followed on coming back (one socket, nothing cancelled); a
// socket dropped mid-answer reconnects and shows what was stored; the page is usable
// with the keyboard alone; and the layout does not shift while tokens stream.
func TestWebsiteChatLifecycle(t *testing.T) {
	g := launchGatewayConfig(t, pgtest.Database(t), "web: {signup: open}", `
  - {name: chat, backend: echo, options: {delay_ms: 15}}
`)
	g.waitReady(20 * time.Second)
	proxy := newCutProxy(t, strings.TrimPrefix(g.URL, "http://"))
	b := openTab(t, 1280, "en-US", "")
	run, eval := b.run, b.eval
	ready := poll(`!document.querySelector(".composer button[type=submit]").disabled`)
	ask := func(what, q string) {
		t.Helper()
		run(what, chromedp.SetValue(`.composer textarea`, q), ready, chromedp.Click(`.composer button[type=submit]`))
	}
	lastBody := `[...document.querySelectorAll("article.msg.assistant .body")].pop()`
	lastText := lastBody + `?.textContent.trim()`

	// Signed up with the keyboard alone: the name field has the focus, Tab moves on,
	// Enter submits.
	run("sign up by keyboard", chromedp.Navigate(proxy.URL+"/#/signup"), chromedp.WaitVisible(`form.auth input[name=name]`),
		poll(`document.activeElement === document.querySelector("form.auth input[name=name]")`),
		chromedp.KeyEvent("erin"), chromedp.KeyEvent("\t"), chromedp.KeyEvent("long enough password"), chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(`.composer textarea`), poll(`document.activeElement === document.querySelector(".composer textarea")`))
	// A question typed and sent with Enter.
	run("ask by keyboard", ready, chromedp.KeyEvent("one two three"), chromedp.KeyEvent("\r"),
		poll(`document.querySelector(".convs li.active") && `+lastText+` === "one two three" && document.querySelector("[data-i18n='chat.stop']").hidden`))
	// Tab reaches every control of the chat page, each showing where the focus is.
	seen := map[string]bool{}
	for range 20 { // round the page, back to the question box
		run("tab", chromedp.KeyEvent("\t"))
		f := eval("the focus", `(() => { const el = document.activeElement;
			const st = getComputedStyle(el);
			return [el.getAttribute("data-i18n") || el.getAttribute("aria-label") || el.tagName + ":" + (el.tagName === "BODY" ? "" : el.textContent.trim()),
				st.outlineStyle !== "none" && parseFloat(st.outlineWidth) > 0]; })()`).([]any)
		name := f[0].(string)
		seen[name] = true
		if f[1] != true && name != "BODY:" {
			t.Errorf("the focused %q shows no outline", name)
		}
	}
	for _, want := range []string{"chat.new", "Search titles", "Rename", "Delete", "Model", "Knowledge base", "Ask a question…", "chat.regenerate"} {
		if !seen[want] {
			t.Errorf("Tab never reached %q (reached %v)", want, seen)
		}
	}

	// Regenerate: the answer folds away as "Earlier answer", a new one streams.
	run("regenerate", chromedp.Click(`.composer button[data-i18n="chat.regenerate"]`),
		poll(`document.querySelectorAll("details.msg.superseded").length === 1 && `+lastText+` === "one two three"`),
		poll(`!document.querySelector(".composer button[data-i18n=\"chat.regenerate\"]").hidden`))
	run("reload", chromedp.Reload(), chromedp.WaitVisible(`.convs li a`),
		poll(`document.querySelectorAll("details.msg.superseded").length === 1 && document.querySelectorAll("article.msg.assistant").length === 1`))
	firstConv, _ := eval("the conversation", `location.hash.split("/")[2]`).(string)

	// Regenerating an answer that is no longer the last (another device asked
	// meanwhile) is refused: the answer unfolds, and the error is said.
	eval("a turn from elsewhere", `(async () => {
		const csrf = (await (await fetch("/auth/session")).json()).csrf_token;
		const r = await fetch("/v1/chat/completions", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
			body: JSON.stringify({model: "chat", conversation_id: "`+firstConv+`", messages: [{role: "user", content: "from elsewhere"}]})});
		return r.status;
	})()`)
	run("a stale regeneration", chromedp.Click(`.composer button[data-i18n="chat.regenerate"]`),
		poll(`document.querySelector(".messages .error")?.textContent.includes("no longer")`),
		poll(`document.querySelectorAll("details.msg.superseded").length === 1 && `+lastText+` === "one two three"`),
		poll(`!document.querySelector(".composer button[data-i18n=\"chat.regenerate\"]").hidden`))
	run("reload", chromedp.Reload(), chromedp.WaitVisible(`.convs li a`), poll(lastText+` === "from elsewhere"`))

	// Away to another page and straight back: the new socket's chats are its own (the
	// old socket's late close ends none of them).
	run("away and back", chromedp.Navigate(proxy.URL+"/#/keys"), chromedp.WaitVisible(`section.card form input`),
		chromedp.Navigate(proxy.URL+"/#/chat/"+firstConv), chromedp.WaitVisible(`.composer textarea`))
	ask("ask at once", "back again")
	run("answered", poll(lastText+` === "back again"`), chromedp.Sleep(300*time.Millisecond), poll(lastText+` === "back again"`),
		poll(`document.querySelector(".status").hidden`))

	// A long answer goes on in another conversation's view, and is followed back.
	long := strings.TrimSpace(strings.Repeat("lorem ipsum dolor ", 60))
	run("start a long answer", ready)
	if eval("layout shifts are measured", `PerformanceObserver.supportedEntryTypes.includes("layout-shift")`) != true {
		t.Fatal("this Chromium does not report layout shifts")
	}
	eval("watch layout shifts", `window.__shift = 0; new PerformanceObserver((l) => { for (const e of l.getEntries()) if (!e.hadRecentInput) window.__shift += e.value; }).observe({type: "layout-shift"}); true`)
	ask("ask for a long answer", long)
	run("the answer streams", poll(lastBody+`?.textContent.length > 100`))
	run("another conversation", chromedp.Navigate(proxy.URL+"/#/chat"), chromedp.WaitVisible(`.composer textarea`),
		poll(`document.querySelectorAll(".msg").length === 0 && document.querySelector(".convs li.live")`))
	run("back to it", chromedp.Navigate(proxy.URL+"/#/chat/"+firstConv), poll(lastText+` === `+fmt.Sprintf("%q", long)))
	stored := eval("the stored answer", `fetch("/v1/conversations/`+firstConv+`").then(r => r.json()).then(c => c.messages.map(m => m.status).join(","))`)
	if stored != "complete,superseded,complete,complete,complete,complete,complete,complete,complete" {
		t.Fatalf("after switching conversations mid-answer, the messages are %v; want the answer complete", stored)
	}
	shift, _ := eval("layout shift", `window.__shift`).(float64)
	t.Logf("cumulative layout shift while a %d-word answer streamed: %.4f", len(strings.Fields(long)), shift)
	if shift > 0.1 {
		t.Errorf("the layout shifted by %.4f while tokens streamed (0.1 is the bound of a good page)", shift)
	}
	// The measure sees a shift when there is one: a block pushed above the messages.
	run("a shift, to see it measured", chromedp.Evaluate[chromedp.Void](`document.querySelector(".talk").prepend(Object.assign(document.createElement("div"), {style: "height: 200px"})); true`),
		poll(`window.__shift > 0.01`), chromedp.Evaluate[chromedp.Void](`document.querySelector(".talk").firstChild.remove(); true`))

	// A socket dropped mid-answer: the page says so, reconnects, and shows what the
	// server stored of the answer; the next question goes through.
	ask("another long answer", long)
	run("it streams", poll(lastBody+`?.textContent.length > 40`))
	proxy.cut()
	run("the drop is shown", poll(`!document.querySelector(".status").hidden`))
	run("reconnected", poll(`document.querySelector(".status").hidden`),
		poll(`!document.querySelector(".composer button[type=submit]").disabled`))
	got := eval("after the drop", `fetch("/v1/conversations/`+firstConv+`").then(r => r.json()).then(c => c.messages.slice(-1)[0])`).(map[string]any)
	if got["status"] != "cancelled" || len(got["content"].(string)) == 0 || len(got["content"].(string)) >= len(long) {
		t.Fatalf("the answer cut by the drop is stored as %v with %d characters", got["status"], len(got["content"].(string)))
	}
	run("the page shows what was stored", poll(lastText+` === `+fmt.Sprintf("%q", strings.TrimSpace(got["content"].(string)))))
	ask("after reconnecting", "four five")
	run("answered", poll(lastText+` === "four five"`))
}

// TestWebsiteChineseAndDark: a browser whose language is Simplified Chinese gets the
// interface in Chinese, Chinese answers render as text, and a system in dark mode
// gets the dark theme; screenshots at phone width.
func TestWebsiteChineseAndDark(t *testing.T) {
	g := launchGatewayConfig(t, pgtest.Database(t), "web: {signup: open}", `
  - {name: chat, backend: echo}
`)
	g.waitReady(20 * time.Second)
	b := openTab(t, 390, "zh-CN", "")
	ctx, run, eval := b.ctx, b.run, b.eval
	dark := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
		return err
	})
	run("sign up", dark, chromedp.Navigate(g.URL+"/#/signup"), chromedp.WaitVisible(`form.auth input[name=name]`))
	if got := eval("the title", `[document.documentElement.lang, document.querySelector("form.auth h1").textContent, getComputedStyle(document.body).backgroundColor]`).([]any); got[0] != "zh-CN" || got[1] != "注册" || got[2] != "rgb(15, 19, 23)" {
		t.Fatalf("a Chinese browser in dark mode: lang %v, title %v, background %v", got[0], got[1], got[2])
	}
	run("create the account", chromedp.SendKeys(`form.auth input[name=name]`, "lin"), chromedp.SendKeys(`form.auth input[name=password]`, "long enough password"),
		chromedp.Click(`form.auth button[type=submit]`), chromedp.WaitVisible(`.composer textarea`))
	question := "你好，请介绍一下这个网关的检索功能。"
	run("ask in Chinese", chromedp.SetValue(`.composer textarea`, question), poll(`!document.querySelector(".composer button[type=submit]").disabled`),
		chromedp.Click(`.composer button[type=submit]`),
		poll(`[...document.querySelectorAll("article.msg.assistant .body")].pop()?.textContent.trim() === "`+question+`"`))
	if got := eval("the words", `[document.querySelector(".composer button[type=submit]").textContent, document.querySelector("#nav a").textContent]`).([]any); got[0] != "发送" || got[1] != "对话" {
		t.Fatalf("the interface in Chinese: %v", got)
	}
	// The page's fonts have Chinese glyphs: two different characters draw differently
	// (a missing glyph draws the same box for both).
	same := eval("the glyphs", `(() => {
		const draw = (ch) => { const c = document.createElement("canvas"); c.width = c.height = 40;
			const x = c.getContext("2d"); x.font = "32px " + getComputedStyle(document.body).fontFamily; x.fillText(ch, 2, 32);
			return Array.from(x.getImageData(0, 0, 40, 40).data).join(","); };
		return draw("检") === draw("索");
	})()`)
	if same != false {
		t.Fatal("Chinese characters draw as identical boxes: the page's fonts lack Chinese glyphs (task setup:chromium installs one)")
	}
	shot(t, ctx, "chat-zh-dark-phone")
}
