// Package web serves the website: the page and its assets, embedded in the binary
// (static/), at / and /assets/. The page is plain HTML, CSS and JavaScript modules,
// with no build step; its two libraries (marked for Markdown, DOMPurify to sanitise
// what Markdown makes) are copied from pinned npm packages by `task gen:web` into
// static/vendor and checked by `task check:web`.
//
// Every answer carries a strict Content-Security-Policy (scripts and styles from this
// origin only, no inline script, no framing), and assets are served compressed
// (Brotli or gzip, computed once at start) with an ETag. The page talks to the
// gateway's own API: /auth for the session, /v1/ws for chats, the knowledge-base
// and conversation routes; it holds no key or session token itself (the session is
// an HttpOnly cookie; the CSRF token lives in a JavaScript variable).
package web
