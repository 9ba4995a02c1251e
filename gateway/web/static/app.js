// The ragway website: sign in, chat over /v1/ws with sources, knowledge bases, keys.
// No key or session token is held here: the session is an HttpOnly cookie, and the
// CSRF token that requests changing state carry lives in this module only.
import { t, translate } from "/assets/i18n.js";
import { render } from "/assets/md.js";

const state = { session: null, csrf: "" };
const view = document.getElementById("view");
const nav = document.getElementById("nav");

// h makes an element: attributes (on* take functions), then children (strings are
// text, never HTML).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

class ApiError extends Error {
  constructor(status, message, param) {
    super(message);
    this.status = status;
    this.param = param;
  }
}

// api calls the gateway's API with the session cookie (and the CSRF token when the
// request changes state).
async function api(method, path, body) {
  const headers = {};
  const opts = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    if (res.status === 401 && state.session) signedOut();
    throw new ApiError(res.status, data?.error?.message || t("error.generic"), data?.error?.param);
  }
  return data;
}

// timing is what the page measures of a chat: when the question went, when its first
// token was painted.
const timing = { sentAt: 0, firstPaint: 0 };
window.ragwayTiming = timing;

// guarded wraps an action so that its failure is shown, not lost.
function guarded(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (e) {
      view.prepend(errorLine(e));
    }
  };
}

function errorLine(err) {
  return h("p", { class: "error", role: "alert", text: err.message || String(err) });
}

function show(...children) {
  view.replaceChildren(...children);
  translate(view);
}

function setSession(s) {
  state.session = s;
  state.csrf = s?.csrf_token || "";
  nav.hidden = !s;
  document.getElementById("nav-admin").hidden = !s?.scopes?.includes("admin");
}

function signedOut() {
  setSession(null);
  location.hash = "#/signin";
}

// ----- Sign in and up -----

function authForm(kind) {
  const signup = kind === "signup";
  const err = h("div");
  const invite = new URLSearchParams(location.hash.split("?")[1] || "").get("invite") || "";
  if (invite) history.replaceState(null, "", "#/signup"); // not kept in the history
  const form = h("form", { class: "card auth", onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { name: f.get("name"), password: f.get("password") };
    if (signup && f.get("invite")) body.invite = f.get("invite");
    try {
      setSession(await api("POST", signup ? "/auth/signup" : "/auth/signin", body));
      location.hash = "#/chat";
    } catch (e2) {
      err.replaceChildren(errorLine(e2));
    }
  } },
    h("h1", { "data-i18n": signup ? "signup.title" : "signin.title" }),
    h("label", {}, h("span", { "data-i18n": "field.name" }), h("input", { name: "name", autocomplete: "username", required: true, maxlength: "64" })),
    h("label", {}, h("span", { "data-i18n": "field.password" }),
      h("input", { name: "password", type: "password", autocomplete: signup ? "new-password" : "current-password", required: true, minlength: signup ? "10" : undefined })),
    signup ? h("label", {}, h("span", { "data-i18n": "field.invite" }), h("input", { name: "invite", value: invite, autocomplete: "off" })) : null,
    err,
    h("button", { type: "submit", "data-i18n": signup ? "signup.submit" : "signin.submit" }),
    h("a", { href: signup ? "#/signin" : "#/signup", "data-i18n": signup ? "signup.toSignin" : "signin.toSignup" }));
  show(form);
  form.querySelector("input").focus();
}

// ----- Chat -----

// Socket is /v1/ws, reconnecting with backoff (and jitter); the cookie signs it in.
// A socket refused before it opened (or closed for policy, 1008) may mean the session
// ended: the page then asks /auth/session, and signs out on 401.
class Socket {
  constructor(onFrame, onState) {
    this.onFrame = onFrame;
    this.onState = onState;
    this.delay = 500;
    this.closed = false;
    this.timer = null;
    this.connect();
  }
  connect() {
    if (this.closed) return;
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`);
    this.ws = ws;
    let opened = false;
    let upSince = 0;
    ws.onopen = () => {
      opened = true;
      upSince = Date.now();
      this.onState(true);
    };
    ws.onmessage = (e) => this.onFrame(JSON.parse(e.data));
    ws.onclose = async (e) => {
      this.onState(false);
      if (this.closed) return;
      if (!opened || e.code === 1008) {
        const res = await fetch("/auth/session", { credentials: "same-origin" }).catch(() => null);
        if (res && res.status === 401) { this.closed = true; signedOut(); return; }
      }
      if (opened && Date.now() - upSince > 10000) this.delay = 500; // it held a while
      const wait = this.delay * (0.5 + Math.random());
      this.delay = Math.min(this.delay * 2, 8000);
      this.timer = setTimeout(() => this.connect(), wait);
    };
  }
  get open() { return this.ws && this.ws.readyState === WebSocket.OPEN; }
  // send sends frame now, or throws: a frame is never queued for a socket that may
  // never open.
  send(frame) {
    if (!this.open) throw new Error(t("chat.reconnecting"));
    this.ws.send(JSON.stringify(frame));
  }
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    // A socket closed on purpose tells nothing more (its late close event would
    // otherwise end the chats of the socket that follows it).
    this.ws.onopen = this.ws.onmessage = this.ws.onclose = null;
    this.ws.close();
  }
}

// The page keeps one socket while its chat pages are shown, and the chats running on
// it, by id: switching conversations does not stop an answer, and coming back shows
// it as it goes on. A chat is {id, conv, text, sources, started, ended, error,
// finish, onUpdate}.
let socket = null;
const chats = new Map();
let chatSeq = 0;
let onSocketState = null; // the chat view's
let onChatEnded = null; // the chat view's

function chatSocket() {
  if (socket) return socket;
  const sock = new Socket((f) => {
    const c = chats.get(f.id);
    if (!c || socket !== sock) return;
    switch (f.type) {
      case "start":
        c.started = true;
        if (f.conversation_id) c.conv = f.conversation_id;
        c.messageID = f.message_id;
        break;
      case "sources": c.sources = f.sources; break;
      case "token": c.text += f.text; break;
      case "done": c.ended = true; c.finish = f.finish_reason; break;
      case "error": c.ended = true; c.error = f.error; break;
      default: return;
    }
    if (c.ended) chats.delete(c.id);
    c.onUpdate?.(f);
    if (c.ended) onChatEnded?.(c);
  }, (up) => {
    if (socket !== sock) return;
    if (!up) {
      // The server ends a socket's chats with it (each stored as far as it got).
      for (const c of chats.values()) { c.ended = true; c.interrupted = true; c.onUpdate?.({ type: "interrupted" }); }
      chats.clear();
    }
    onSocketState?.(up);
  });
  socket = sock;
  return sock;
}

function closeChatSocket() {
  if (socket) socket.close();
  socket = null;
  chats.clear();
}

// liveChat is the chat running in conversation conv, if any.
function liveChat(conv) {
  for (const c of chats.values()) if (conv && c.conv === conv) return c;
  return null;
}

async function chatView(convID) {
  const gen = generation; // this view's: later awaits check the reader is still here
  const list = h("ul", { class: "convs" });
  const filter = h("input", { type: "search", "data-i18n-placeholder": "chat.search", placeholder: t("chat.search"),
    "aria-label": t("chat.search"), oninput: () => drawList() });
  const messages = h("div", { class: "messages", role: "log" });
  const sourcesPanel = h("aside", { class: "sources", hidden: true });
  const status = h("p", { class: "status", role: "status", hidden: true, text: t("chat.reconnecting") });
  const modelSel = h("select", { "aria-label": t("chat.model") });
  const kbSel = h("select", { "aria-label": t("chat.kb") }, h("option", { value: "", text: t("chat.noKb") }));
  const input = h("textarea", { rows: "3", placeholder: t("chat.placeholder"), "aria-label": t("chat.placeholder") });
  const send = h("button", { type: "submit", "data-i18n": "chat.send", disabled: true }); // until the socket is open
  const stop = h("button", { type: "button", class: "secondary", hidden: true, "data-i18n": "chat.stop" });
  const regen = h("button", { type: "button", class: "secondary", hidden: true, "data-i18n": "chat.regenerate" });
  let convs = [];
  let current = convID || null;
  let running = null; // {chat, el, scheduled, paintedAt}
  let interrupted = false;
  // The conversation's last answer, to regenerate: its article and its message id.
  let last = null;
  let writingPoll = null;
  const here = () => gen === generation;

  function drawList() {
    const q = filter.value.toLowerCase();
    list.replaceChildren(...convs.filter((c) => (c.title || "").toLowerCase().includes(q)).map((c) =>
      h("li", { class: `${c.id === current ? "active" : ""} ${liveChat(c.id) ? "live" : ""}` },
        h("a", { href: `#/chat/${c.id}`, text: c.title || t("chat.untitled") }),
        h("button", { type: "button", class: "link rename", title: t("chat.rename"), "aria-label": t("chat.rename"), onclick: (e) => {
          const li = e.currentTarget.parentElement;
          const field = h("input", { value: c.title || "", "aria-label": t("chat.rename"), maxlength: "200" });
          let done = false;
          const save = async () => {
            if (done) return;
            done = true;
            const title = field.value.trim();
            if (title && title !== c.title) {
              try {
                await api("PATCH", `/v1/conversations/${c.id}`, { title });
              } catch (e2) { li.append(errorLine(e2)); return; }
            }
            loadList();
          };
          field.addEventListener("keydown", (k) => {
            if (k.key === "Enter") save();
            if (k.key === "Escape") { done = true; drawList(); }
          });
          field.addEventListener("blur", save);
          li.firstChild.replaceWith(field);
          field.focus();
          field.select();
        } }, "✎"),
        h("button", { type: "button", class: "link", title: t("chat.delete"), "aria-label": t("chat.delete"), onclick: guarded(async () => {
          if (!confirm(`${t("chat.delete")}: ${c.title || t("chat.untitled")}?`)) return;
          await api("DELETE", `/v1/conversations/${c.id}`);
          if (c.id === current) location.hash = "#/chat";
          else loadList();
        }) }, "×"))));
    if (!convs.length) list.append(h("li", { class: "muted", text: t("chat.empty") }));
  }
  async function loadList() {
    const data = (await api("GET", "/v1/conversations")).data;
    if (!here()) return;
    convs = data;
    drawList();
  }

  function showSources(sources, n) {
    sourcesPanel.hidden = false;
    sourcesPanel.replaceChildren(h("h2", { text: t("chat.sources") }), ...sources.map((s) => {
      const d = h("details", { id: `source-${s.n}`, open: s.n === n ? true : undefined },
        h("summary", {}, `[${s.n}] `, s.title || s.document_id),
        s.heading ? h("p", { class: "heading", text: s.heading }) : null,
        h("pre", { class: "chunk", text: s.text || s.snippet || "" }));
      return d;
    }));
    const open = sourcesPanel.querySelector(`#source-${n}`);
    if (open) open.scrollIntoView({ block: "nearest" });
  }

  function citeList(sources) {
    return h("p", { class: "cites" }, ...sources.map((s) =>
      h("a", { href: "#", class: "cite", text: `[${s.n}] ${s.title || ""}`, onclick: (e) => { e.preventDefault(); showSources(sources, s.n); } })));
  }

  // bubble adds a message; a superseded answer (one a regeneration replaced, or a
  // regeneration that did not complete) is folded away under "Earlier answer".
  // calls (an answer's tool calls, in OpenAI's shape) are listed under its text; a
  // tool result is labelled as one.
  function bubble(role, text, sources, superseded, calls) {
    const body = h("div", { class: "body" });
    if (role === "assistant") render(body, text, sources ? (n) => showSources(sources, n) : null);
    else if (role === "tool") body.append(h("p", { class: "muted", text: t("chat.toolResult") }), h("pre", { text }));
    else body.textContent = text;
    for (const c of calls || []) {
      body.append(h("p", { class: "call" }, h("span", { class: "muted", text: `${t("chat.toolCall")} ` }),
        h("code", { text: `${c.function?.name}(${c.function?.arguments})` })));
    }
    const el = superseded
      ? h("details", { class: "msg assistant superseded" }, h("summary", { text: t("chat.earlier") }), body)
      : h("article", { class: `msg ${role}` }, body);
    if (sources?.length) el.append(citeList(sources));
    messages.append(el);
    return body;
  }

  async function loadConversation() {
    clearTimeout(writingPoll);
    if (!current) {
      messages.replaceChildren();
      sourcesPanel.hidden = true;
      last = null;
      return drawActions();
    }
    const c = await api("GET", `/v1/conversations/${current}`);
    if (!here()) return;
    messages.replaceChildren();
    sourcesPanel.hidden = true;
    last = null;
    const live = liveChat(current);
    let writing = false;
    for (const m of c.messages || []) {
      if (m.role === "system") continue;
      if (m.status === "in_progress") {
        // An answer still being written: this page's own is followed below; another
        // one (another tab, another device) is read again until it ends.
        if (!live) { messages.append(h("p", { class: "muted", text: t("chat.writing") })); writing = true; }
        continue;
      }
      const superseded = m.status === "superseded";
      const body = bubble(m.role, m.content, m.sources || null, superseded, m.tool_calls);
      if ((m.status === "failed" || superseded) && m.error) body.append(errorLine(new Error(m.error)));
      if (m.role === "assistant" && !superseded) last = { el: body.parentElement, id: m.id };
      else if (m.role === "user") last = null;
    }
    if (live) follow(live, bubble("assistant", ""), true);
    else if (writing) writingPoll = setTimeout(() => { if (here()) loadConversation().catch(() => {}); }, 2000);
    messages.scrollTop = messages.scrollHeight;
    drawActions();
  }

  function drawActions() {
    // Nothing is sent before the socket is open and the model list is in.
    const ready = !!socket?.open && !!modelSel.value;
    stop.hidden = !running;
    regen.hidden = !!running || !last || !current;
    send.disabled = !ready || !!running;
    regen.disabled = !ready;
  }

  // paint renders the answer so far; a long answer is rendered at most every 250 ms
  // (each render is the whole Markdown), and the view follows it only when the
  // reader is at the bottom.
  function paint() {
    if (!running) return;
    running.scheduled = false;
    const now = performance.now();
    if (running.chat.text.length > 5000 && now - (running.paintedAt || 0) < 250) {
      running.scheduled = true;
      setTimeout(() => requestAnimationFrame(paint), 250);
      return;
    }
    running.paintedAt = now;
    const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 80;
    const srcs = running.chat.sources;
    render(running.el, running.chat.text, srcs ? (n) => showSources(srcs, n) : null);
    if (running.chat.text && !timing.firstPaint) timing.firstPaint = now;
    if (atBottom) messages.scrollTop = messages.scrollHeight;
  }

  // follow shows chat c in el as its frames come. A chat followed back (started on an
  // earlier view), a regeneration that did not complete, or a chat refused before it
  // started, is read back from the server when it ends: the page then shows what is
  // stored. undo restores the page when a chat is refused before it starts.
  function follow(c, el, resumed, undo) {
    running = { chat: c, el, scheduled: false, paintedAt: 0 };
    messages.setAttribute("aria-busy", "true");
    c.onUpdate = (f) => {
      if (running?.chat !== c) return;
      switch (f.type) {
        case "start":
          if (c.conv && current !== c.conv) {
            current = c.conv;
            history.replaceState(null, "", `#/chat/${current}`);
          }
          break;
        case "token":
          if (!running.scheduled) {
            running.scheduled = true;
            requestAnimationFrame(paint);
          }
          break;
        case "done":
          running.paintedAt = 0;
          paint();
          if (c.sources?.length) el.parentElement.append(citeList(c.sources));
          finish();
          if (resumed || (c.regenerate && f.finish_reason !== "stop" && f.finish_reason !== "length")) loadConversation().catch(() => {});
          else last = { el: el.parentElement, id: c.messageID };
          drawActions();
          break;
        case "error":
          if (!c.started) {
            // Refused before it started: nothing is stored; the error takes the
            // answer's place.
            el.parentElement.replaceWith(errorLine(c.error));
            finish();
            undo?.();
            break;
          }
          running.paintedAt = 0;
          paint();
          el.append(errorLine(c.error));
          finish();
          loadConversation().catch(() => {});
          break;
        case "interrupted":
          // The stored conversation has what was written: read back once the
          // socket is up again.
          interrupted = true;
          finish();
          break;
      }
    };
    if (c.text) requestAnimationFrame(paint);
    drawActions();
  }

  function finish() {
    if (running) running.chat.onUpdate = null;
    running = null;
    messages.removeAttribute("aria-busy");
    drawActions();
    loadList().catch(() => {});
  }

  // start sends a chat frame (fields of a new turn or a regeneration) and follows its
  // answer; it returns false when the frame could not be sent. undo restores the page
  // if the gateway refuses the chat before it starts.
  function start(fields, undo) {
    const c = { id: `c${++chatSeq}`, conv: current, text: "", sources: null, started: false, ended: false,
      regenerate: !!fields.regenerate, onUpdate: null };
    const frame = { type: "chat", id: c.id, model: modelSel.value, ...fields };
    if (current) frame.conversation_id = current;
    if (kbSel.value) frame.rag = { knowledge_base: kbSel.value };
    const before = last;
    const el = bubble("assistant", "");
    last = null;
    try {
      chatSocket().send(frame);
    } catch (e) {
      el.parentElement.remove();
      last = before;
      messages.append(errorLine(e));
      return false;
    }
    chats.set(c.id, c);
    timing.firstPaint = 0;
    timing.sentAt = performance.now();
    follow(c, el, false, () => { last = before; undo?.(); drawActions(); });
    return true;
  }

  // The chat runs on after the view changes; only its display is dropped.
  for (const c of chats.values()) c.onUpdate = null;
  onSocketState = (up) => {
    if (!here()) return;
    status.hidden = up;
    if (up && interrupted) {
      interrupted = false;
      loadConversation().catch(() => {});
    }
    drawActions();
  };
  onChatEnded = () => { if (here()) drawList(); };
  chatSocket();

  const composer = h("form", { class: "composer", onsubmit: (e) => {
    e.preventDefault();
    const content = input.value.trim();
    if (!content || running) return;
    const userEl = bubble("user", content);
    if (start({ content })) input.value = "";
    else userEl.parentElement.remove(); // not sent: the question stays in the box
  } }, input, h("div", { class: "actions" }, regen, stop, send));
  stop.addEventListener("click", () => { if (running) try { socket.send({ type: "cancel", id: running.chat.id }); } catch { /* the drop ends it */ } });
  regen.addEventListener("click", () => {
    if (running || !last || !current) return;
    const old = last.el;
    // The answer being replaced folds away now; if the regeneration is refused before
    // it starts, it unfolds.
    const folded = h("details", { class: "msg assistant superseded" }, h("summary", { text: t("chat.earlier") }));
    old.replaceWith(folded);
    folded.append(...old.childNodes);
    const unfold = () => { old.append(...[...folded.childNodes].slice(1)); folded.replaceWith(old); };
    if (!start({ regenerate: last.id }, unfold)) { unfold(); drawActions(); }
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); composer.requestSubmit(); }
  });

  show(h("div", { class: "chat" },
    h("nav", { class: "side" }, h("a", { class: "button", href: "#/chat", "data-i18n": "chat.new" }), filter, list),
    h("section", { class: "talk" },
      h("div", { class: "pickers" },
        h("label", {}, h("span", { "data-i18n": "chat.model" }), modelSel),
        h("label", {}, h("span", { "data-i18n": "chat.kb" }), kbSel)),
      status, messages, composer),
    sourcesPanel));
  status.hidden = !!socket?.open;
  const [models, kbs] = await Promise.all([api("GET", "/v1/models"), api("GET", "/v1/knowledge-bases").catch(() => ({ data: [] }))]);
  if (!here()) return;
  for (const m of models.data) if (!m.embedding && !m.rerank) modelSel.append(h("option", { value: m.id, text: m.id }));
  for (const k of kbs.data) kbSel.append(h("option", { value: k.name, text: k.name }));
  drawActions();
  await Promise.all([loadList(), loadConversation()]);
  if (here()) input.focus();
}

// ----- Knowledge bases -----

async function knowledgeView(kbName) {
  const err = h("div");
  const list = h("ul", { class: "kbs" });
  const create = h("form", { class: "inline", onsubmit: async (e) => {
    e.preventDefault();
    const name = new FormData(create).get("name");
    try {
      await api("POST", "/v1/knowledge-bases", { name });
      location.hash = `#/knowledge/${encodeURIComponent(name)}`;
    } catch (e2) { err.replaceChildren(errorLine(e2)); }
  } }, h("input", { name: "name", required: true, placeholder: t("kb.name"), "aria-label": t("kb.name") }),
    h("button", { type: "submit", "data-i18n": "kb.create" }));
  const detail = h("section", { class: "kb" });
  const g0 = generation;
  const kbs = (await api("GET", "/v1/knowledge-bases")).data;
  if (g0 !== generation) return; // the reader went elsewhere meanwhile
  list.replaceChildren(...kbs.map((k) => h("li", { class: k.name === kbName ? "active" : "" },
    h("a", { href: `#/knowledge/${encodeURIComponent(k.name)}`, text: k.name }))));
  show(h("div", { class: "knowledge" }, h("nav", { class: "side" }, h("h1", { "data-i18n": "kb.title" }), create, err, list), detail));
  if (kbName) await kbDetail(detail, kbName);
}

// docsPoll is the one documents poll (a page shows one knowledge base).
let docsPoll = null;

async function kbDetail(el, name) {
  const path = `/v1/knowledge-bases/${encodeURIComponent(name)}`;
  const docs = h("ul", { class: "docs" });
  const uploads = h("ul", { class: "uploads" });
  const results = h("ol", { class: "results" });
  async function loadDocs() {
    clearTimeout(docsPoll);
    if (!el.isConnected) return;
    let d;
    try {
      d = (await api("GET", `${path}/documents`)).data;
    } catch (e) {
      docs.replaceChildren(errorLine(e));
      docsPoll = setTimeout(loadDocs, 5000);
      return;
    }
    docs.replaceChildren(...d.map((doc) => h("li", {},
      h("span", { class: "title", text: doc.title || doc.source || doc.id }),
      h("span", { class: `badge ${doc.status}`, text: t(`kb.status.${doc.status}`) }),
      doc.error ? h("span", { class: "error", text: doc.error }) : null,
      h("button", { type: "button", class: "link", text: t("kb.delete"), onclick: guarded(async () => {
        if (!confirm(`${t("kb.delete")} ${doc.title || doc.source || doc.id}?`)) return;
        await api("DELETE", `${path}/documents/${doc.id}`);
        loadDocs();
      }) }))));
    if (d.some((doc) => doc.status === "pending")) docsPoll = setTimeout(loadDocs, 1000);
  }
  function upload(file) {
    const bar = h("progress", { max: "100", value: "0" });
    const line = h("li", {}, h("span", { text: file.name }), bar);
    uploads.append(line);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${path}/documents`);
    xhr.setRequestHeader("X-CSRF-Token", state.csrf);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = String(Math.round((100 * e.loaded) / e.total)); };
    xhr.onerror = xhr.onabort = () => line.append(errorLine(new Error(t("error.generic"))));
    xhr.onload = () => {
      bar.value = "100";
      if (xhr.status >= 400) {
        let msg = t("error.generic");
        try { msg = JSON.parse(xhr.responseText).error.message; } catch { /* not JSON */ }
        line.append(errorLine(new Error(msg)));
      }
      loadDocs();
    };
    const form = new FormData();
    form.append("file", file);
    xhr.send(form);
  }
  const picker = h("input", { type: "file", multiple: true, onchange: () => { for (const f of picker.files) upload(f); picker.value = ""; } });
  const drop = h("label", { class: "drop", ondragover: (e) => { e.preventDefault(); drop.classList.add("over"); },
    ondragleave: () => drop.classList.remove("over"),
    ondrop: (e) => { e.preventDefault(); drop.classList.remove("over"); for (const f of e.dataTransfer.files) upload(f); } },
    h("span", { "data-i18n": "kb.upload" }), picker);
  const search = h("form", { class: "inline", onsubmit: guarded(async (e) => {
    e.preventDefault();
    const q = new FormData(search).get("q");
    const hits = (await api("POST", `${path}/search`, { query: q })).data;
    results.replaceChildren(...hits.map((hit) => h("li", {},
      h("strong", { text: hit.title }), hit.heading ? h("p", { class: "heading", text: hit.heading }) : null,
      h("pre", { class: "chunk", text: hit.text }))));
  }) }, h("input", { name: "q", required: true, placeholder: t("kb.searchPlaceholder"), "aria-label": t("kb.search") }),
    h("button", { type: "submit", "data-i18n": "kb.search" }));
  el.replaceChildren(h("h2", { text: name }),
    h("button", { type: "button", class: "secondary", "data-i18n": "kb.delete", onclick: guarded(async () => {
      if (!confirm(`${t("kb.delete")} ${name}?`)) return;
      await api("DELETE", path);
      location.hash = "#/knowledge";
    }) }),
    drop, uploads, h("h3", { "data-i18n": "kb.documents" }), docs, h("h3", { "data-i18n": "kb.search" }), search, results);
  translate(el);
  await loadDocs();
}

// ----- Keys -----

async function keysView() {
  const list = h("ul", { class: "keys" });
  const shown = h("div");
  async function load() {
    const keys = (await api("GET", "/v1/keys")).data;
    list.replaceChildren(...keys.filter((k) => !k.revoked_at).map((k) => h("li", {},
      h("code", { text: k.prefix }), " ", h("span", { text: k.name }), " ", h("span", { class: "muted", text: k.scopes.join(", ") }),
      h("button", { type: "button", class: "link", text: t("keys.revoke"), onclick: guarded(async () => {
        if (!confirm(`${t("keys.revoke")} ${k.prefix} (${k.name})?`)) return;
        await api("DELETE", `/v1/keys/${k.prefix}`);
        load();
      }) }))));
  }
  const form = h("form", { class: "inline", onsubmit: guarded(async (e) => {
    e.preventDefault();
    const k = await api("POST", "/v1/keys", { name: new FormData(form).get("name") });
    shown.replaceChildren(h("p", { text: t("keys.shown") }), h("code", { class: "secret", text: k.key }));
    form.reset();
    load();
  }) }, h("input", { name: "name", placeholder: t("keys.name"), "aria-label": t("keys.name"), maxlength: "200" }),
    h("button", { type: "submit", "data-i18n": "keys.create" }));
  const everywhere = h("button", { type: "button", class: "secondary", "data-i18n": "keys.signoutEverywhere", onclick: guarded(async () => {
    await api("POST", "/auth/signout-everywhere"); // a failure is shown: the sessions live on
    signedOut();
  }) });
  show(h("section", { class: "card" }, h("h1", { "data-i18n": "keys.title" }), form, shown, list, everywhere));
  await load();
}

// ----- Admin -----

async function adminView() {
  const err = h("div");
  const models = h("tbody");
  const invite = h("div");
  async function load() {
    const list = (await api("GET", "/admin/models")).data;
    models.replaceChildren(...list.map((m) => {
      const replicas = h("input", { type: "number", min: "1", max: "64", value: String(m.replicas.length || 1), "aria-label": t("admin.replicas"), class: "small" });
      return h("tr", {},
        h("td", {}, h("strong", { text: m.name }), m.aliases.length ? h("div", { class: "muted", text: m.aliases.join(", ") }) : null),
        h("td", { text: m.backend }),
        h("td", { text: m.source }),
        h("td", {}, h("span", { class: `badge ${m.state}`, text: m.state })),
        h("td", {}, ...m.replicas.map((r) => h("div", { class: "muted", text: `#${r.id} ${r.state}${r.pid ? ` pid ${r.pid}` : ""}${r.restarts ? ` ↻${r.restarts}` : ""}` }))),
        h("td", {}, replicas,
          h("button", { type: "button", class: "secondary", text: t("admin.scale"), onclick: async () => {
            try { await api("POST", `/admin/models/${encodeURIComponent(m.name)}/scale`, { replicas: Number(replicas.value) }); load(); } catch (e2) { err.replaceChildren(errorLine(e2)); }
          } }),
          m.config ? h("button", { type: "button", class: "link", text: t("admin.edit"), onclick: () => editing(m) }) : null,
          m.source === "admin" ? h("button", { type: "button", class: "link", text: t("admin.remove"), onclick: async () => {
            if (!confirm(`${t("admin.remove")} ${m.name}?`)) return;
            try { await api("DELETE", `/admin/models/${encodeURIComponent(m.name)}`); load(); } catch (e2) { err.replaceChildren(errorLine(e2)); }
          } }) : null));
    }));
  }
  // The form adds a model, or, after "Edit", replaces one with the entry shown.
  const entry = h("textarea", { rows: "3", "aria-label": t("admin.entry"), placeholder: '{"name": "chat2", "backend": "echo"}' });
  const addTitle = h("h2", { text: t("admin.addTitle") });
  const submit = h("button", { type: "submit", text: t("admin.add") });
  const cancel = h("button", { type: "button", class: "secondary", hidden: true, text: t("admin.cancel"), onclick: () => editing(null) });
  let replacing = null;
  function editing(m) {
    replacing = m?.name ?? null;
    addTitle.textContent = m ? `${t("admin.replaceTitle")} ${m.name}` : t("admin.addTitle");
    submit.textContent = t(m ? "admin.replace" : "admin.add");
    cancel.hidden = !m;
    entry.rows = m ? 10 : 3;
    entry.value = m ? JSON.stringify(m.config, null, 2) : "";
    if (m) { entry.focus(); entry.scrollIntoView({ block: "nearest" }); }
  }
  const add = h("form", { class: "stack", onsubmit: async (e) => {
    e.preventDefault();
    let body;
    try { body = JSON.parse(entry.value); } catch { err.replaceChildren(errorLine(new Error(t("admin.badJSON")))); return; }
    try {
      if (replacing) await api("PUT", `/admin/models/${encodeURIComponent(replacing)}`, body);
      else await api("POST", "/admin/models", body);
      editing(null);
      err.replaceChildren();
      load();
    } catch (e2) { err.replaceChildren(errorLine(e2)); }
  } }, entry, h("div", { class: "actions" }, cancel, submit));
  const inviteForm = h("form", { class: "inline", onsubmit: async (e) => {
    e.preventDefault();
    const f = new FormData(inviteForm);
    try {
      const inv = await api("POST", "/admin/invites", { name: f.get("name") || "", admin: f.get("admin") === "on" });
      invite.replaceChildren(h("p", { text: t("admin.inviteShown") }), h("code", { class: "secret", text: inv.code }));
    } catch (e2) { invite.replaceChildren(errorLine(e2)); }
  } }, h("input", { name: "name", placeholder: t("field.name"), "aria-label": t("field.name") }),
    h("label", { class: "check" }, h("input", { type: "checkbox", name: "admin" }), h("span", { "data-i18n": "admin.isAdmin" })),
    h("button", { type: "submit", "data-i18n": "admin.invite" }));
  show(h("div", { class: "pages" }, h("section", { class: "card wide" },
    h("h1", { "data-i18n": "admin.models" }), err,
    table(["admin.name", "admin.backend", "admin.source", "admin.state", "admin.replicaList", "admin.actions"], models),
    addTitle, add,
    h("h2", { "data-i18n": "admin.invites" }), inviteForm, invite),
  usersSection(), usageSection()));
  await load();
}

// table is a scrolling table with the headings of keys.
function table(keys, body) {
  return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, h("tr", {}, ...keys.map((k) => h("th", { "data-i18n": k })))), body));
}

function when(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : "—";
}

// usersSection lists the users by name, a page at a time, each with its keys (to
// revoke) and a way to end its sessions.
function usersSection() {
  const err = h("div");
  const rows = h("tbody");
  const more = h("button", { type: "button", class: "secondary", hidden: true, "data-i18n": "admin.more" });
  let after = "";
  const act = (fn) => async (...args) => {
    try { await fn(...args); } catch (e) { err.replaceChildren(errorLine(e)); }
  };
  async function page() {
    more.disabled = true; // one page at a time
    try { await nextPage(); } finally { more.disabled = false; }
  }
  async function nextPage() {
    const q = new URLSearchParams({ limit: "50" });
    if (after) q.set("after", after);
    const res = await api("GET", `/admin/users?${q}`);
    for (const u of res.data) rows.append(...userRows(u));
    if (res.data.length) after = res.data[res.data.length - 1].name;
    more.hidden = !res.has_more;
  }
  function userRows(u) {
    const name = encodeURIComponent(u.name);
    const keys = h("td", { colspan: "6" });
    const keysRow = h("tr", { class: "sub", hidden: true }, keys);
    const sessions = h("td", { text: String(u.sessions) });
    const keyCount = h("td", { text: String(u.keys) });
    async function loadKeys() {
      const ks = (await api("GET", `/admin/users/${name}/keys`)).data;
      keys.replaceChildren(ks.length ? h("ul", { class: "keys" }, ...ks.map((k) => h("li", {},
        h("code", { text: k.prefix }), " ", h("span", { text: k.name }), " ", h("span", { class: "muted", text: k.scopes.join(", ") }),
        k.revoked_at ? h("span", { class: "muted", text: ` ${t("admin.revoked")} ${when(k.revoked_at)}` })
          : h("button", { type: "button", class: "link", text: t("keys.revoke"), onclick: act(async (e) => {
            if (!confirm(`${t("keys.revoke")} ${k.prefix}?`)) return;
            e.currentTarget.disabled = true; // revoked once, counted once
            await api("DELETE", `/admin/users/${name}/keys/${k.prefix}`);
            keyCount.textContent = String(Math.max(0, Number(keyCount.textContent) - 1));
            await loadKeys();
          }) })))) : h("p", { class: "muted", text: t("admin.noKeys") }));
    }
    return [h("tr", {},
      h("td", {}, h("strong", { text: u.name }), u.admin ? h("span", { class: "badge", text: t("admin.isAdmin") }) : null),
      h("td", { text: u.has_password ? "✓" : "—" }),
      keyCount,
      sessions,
      h("td", { text: when(u.last_used_at) }),
      h("td", {},
        h("button", { type: "button", class: "secondary", text: t("admin.keys"), "aria-expanded": "false", onclick: act(async (e) => {
          keysRow.hidden = !keysRow.hidden;
          e.currentTarget.setAttribute("aria-expanded", String(!keysRow.hidden));
          if (!keysRow.hidden) await loadKeys();
        }) }),
        h("button", { type: "button", class: "link", text: t("admin.signoutUser"), disabled: !u.sessions, onclick: act(async () => {
          if (!confirm(`${t("admin.signoutUser")}: ${u.name}?`)) return;
          await api("POST", `/admin/users/${name}/signout-everywhere`);
          sessions.textContent = "0";
        }) }))), keysRow];
  }
  more.addEventListener("click", act(page));
  page().catch((e) => err.replaceChildren(errorLine(e)));
  return h("section", { class: "card wide" }, h("h1", { "data-i18n": "admin.users" }), err,
    table(["admin.name", "admin.password", "admin.keyCount", "admin.sessions", "admin.lastUsed", "admin.actions"], rows), more);
}

// usageSection shows the requests and tokens per user and model over a period.
function usageSection() {
  const err = h("div");
  const rows = h("tbody");
  const period = h("select", { "aria-label": t("admin.period") }, ...[1, 7, 30, 90, 365].map((d) =>
    h("option", { value: String(d), selected: d === 30 ? true : undefined, text: t("admin.days").replace("{n}", d) })));
  const num = (n) => n.toLocaleString();
  let asked = 0;
  async function load() {
    const mine = ++asked; // the answer for the period chosen last wins
    try {
      const res = await api("GET", `/admin/usage?days=${period.value}`);
      if (mine !== asked) return;
      rows.replaceChildren(...res.data.map((u) => h("tr", {},
        h("td", { text: u.user }), h("td", { text: u.model }), h("td", { class: "num", text: num(u.requests) }),
        h("td", { class: "num", text: num(u.prompt_tokens) }), h("td", { class: "num", text: num(u.completion_tokens) }),
        h("td", { class: "num", text: num(u.total_tokens) }))));
      if (!res.data.length) rows.append(h("tr", {}, h("td", { colspan: "6", class: "muted", text: t("admin.noUsage") })));
      err.replaceChildren();
    } catch (e) { err.replaceChildren(errorLine(e)); }
  }
  period.addEventListener("change", load);
  load();
  return h("section", { class: "card wide usage" }, h("h1", { "data-i18n": "admin.usage" }),
    h("label", {}, h("span", { "data-i18n": "admin.period" }), period), err,
    table(["admin.user", "admin.model", "admin.requests", "admin.prompt", "admin.completion", "admin.total"], rows));
}

// ----- Routing -----

let generation = 0;

async function route() {
  const gen = ++generation;
  const [, page = "chat", arg] = location.hash.split("?")[0].split("/");
  clearTimeout(docsPoll);
  if (!state.session && page !== "signin" && page !== "signup") {
    location.hash = "#/signin";
    return;
  }
  if (page !== "chat") closeChatSocket();
  try {
    switch (page) {
      case "signin": return authForm("signin");
      case "signup": return authForm("signup");
      case "knowledge": return await knowledgeView(arg ? decodeURIComponent(arg) : "");
      case "keys": return await keysView();
      case "admin": return await adminView();
      default: return await chatView(arg || null);
    }
  } catch (e) {
    if (state.session && gen === generation) show(errorLine(e));
  }
}

document.getElementById("signout").addEventListener("click", guarded(async () => {
  await api("POST", "/auth/signout");
  closeChatSocket();
  signedOut();
}));

translate(document);
try {
  setSession(await api("GET", "/auth/session"));
} catch {
  setSession(null);
}
window.addEventListener("hashchange", route);
route();
