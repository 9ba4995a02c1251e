// Markdown to safe HTML: marked renders, DOMPurify removes anything that could run
// (an answer and a document are untrusted text), and citations [n] become links.
import { marked } from "/assets/vendor/marked.esm.js";
import DOMPurify from "/assets/vendor/purify.es.mjs";

// Raw HTML in Markdown is shown as text, not passed on: an answer that writes
// <img onerror=…> shows those characters.
const escapeHTML = (s) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
marked.use({ gfm: true, breaks: false, renderer: { html: (token) => escapeHTML(token.text) } });

// Links open apart, and a link off this site says where it goes: an answer may be
// steered by a document to show a harmless-looking link.
DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
    const href = node.getAttribute("href");
    if (href) {
      try {
        const u = new URL(href, location.href);
        if (u.origin !== location.origin) node.setAttribute("data-host", u.host);
      } catch { node.removeAttribute("href"); }
    }
  }
});

// Images are not shown: a Markdown image in an answer would make requests (with the
// session) every time the answer is drawn.
const purifyConfig = {
  FORBID_TAGS: ["img", "picture", "source", "video", "audio", "style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed", "svg", "math"],
  FORBID_ATTR: ["style"],
  ALLOW_DATA_ATTR: false,
  ADD_ATTR: ["data-host"],
  RETURN_TRUSTED_TYPE: true,
};

// render sets el's content to text rendered as Markdown, sanitised, with [n]
// citations linked to the sources (onCite(n) when one is followed).
export function render(el, text, onCite) {
  // Trusted HTML (the page's CSP takes no other): sanitised, no script, no handler,
  // no style.
  el.innerHTML = DOMPurify.sanitize(marked.parse(text), purifyConfig);
  for (const a of el.querySelectorAll("a[data-host]")) a.append(` ↗ ${a.dataset.host}`);
  if (onCite) linkCitations(el, onCite);
}

// linkCitations turns "[n]" in el's text (not in code) into links.
function linkCitations(el, onCite) {
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  const nodes = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.parentElement.closest("code, pre, a") && /\[\d+\]/.test(n.data)) nodes.push(n);
  }
  for (const node of nodes) {
    const frag = document.createDocumentFragment();
    let last = 0;
    for (const m of node.data.matchAll(/\[(\d+)\]/g)) {
      frag.append(node.data.slice(last, m.index));
      const a = document.createElement("a");
      a.href = "#";
      a.className = "cite";
      a.textContent = m[0];
      const n = Number(m[1]);
      a.addEventListener("click", (e) => { e.preventDefault(); onCite(n); });
      frag.append(a);
      last = m.index + m[0].length;
    }
    frag.append(node.data.slice(last));
    node.replaceWith(frag);
  }
}
