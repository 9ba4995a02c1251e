package api

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	"github.com/ragway/ragway/gateway/oai"
)

// CORS answers of a listed origin. Nothing a request sends is echoed but its Origin,
// and only when that is one of the listed origins, byte for byte.
const (
	// corsAllowMethods are the methods the routes serve (GET covers HEAD).
	corsAllowMethods = "GET, POST, DELETE"
	// corsAllowHeaders are the request headers the routes read, those OpenAI's SDKs
	// send from a browser (OpenAI-*, X-Stainless-*), and "*" for headers other clients
	// add: browsers honour "*" for requests without credentials (the gateway never
	// allows credentials), but never for Authorization, hence the explicit list.
	corsAllowHeaders = "Authorization, Content-Type, Content-Encoding, " + headerRequestID + ", " + headerKB + ", " +
		"OpenAI-Organization, OpenAI-Project, OpenAI-Beta, " +
		"X-Stainless-Arch, X-Stainless-Async, X-Stainless-Custom-Poll-Interval, X-Stainless-Helper-Method, " +
		"X-Stainless-Lang, X-Stainless-OS, X-Stainless-Package-Version, X-Stainless-Poll-Helper, " +
		"X-Stainless-Retry-Count, X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Timeout, *"
	// corsExposeHeaders are the response headers a page may read besides the
	// CORS-safelisted ones.
	corsExposeHeaders = headerRequestID + ", " + headerConversationID + ", " + headerMessageID + ", " +
		fiber.HeaderRetryAfter + ", " + headerShouldRetry
	// corsMaxAge is how long (seconds) a browser may keep a preflight's answer: 2h, the
	// most Chromium keeps.
	corsMaxAge = "7200"
)

// newCORS returns the middleware that serves browsers on other origins (README, "Browsers";
// server.cors_origins): p lists the origins allowed, exactly as browsers send them in
// Origin; none means CORS is off.
//
// A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered here
// and never reaches a route or the key check (a browser sends no key with it): 204 with
// the approval for a listed origin, else 403 origin_not_allowed in the OpenAI shape,
// without any Access-Control-* header. Other requests go on; the answer to one from a
// listed origin carries Access-Control-Allow-Origin (that origin) and
// Access-Control-Expose-Headers, errors included, so that the page can read why it
// failed. Credentials are never allowed. While CORS is on every answer varies on Origin.
// A request with more than one Origin header is from no listed origin.
func newCORS(p *corsPolicy) fiber.Handler {
	return func(c *fiber.Ctx) error {
		h := &c.Request().Header
		preflight := c.Method() == fiber.MethodOptions && len(h.PeekAll(fiber.HeaderOrigin)) > 0 &&
			len(h.PeekAll(fiber.HeaderAccessControlRequestMethod)) > 0
		if !p.on {
			if preflight {
				return originNotAllowed("cross-origin requests are off: list this page's origin in server.cors_origins to call the API from it")
			}
			return c.Next()
		}
		if preflight {
			c.Vary(fiber.HeaderOrigin)
			origin := p.origin(c)
			if origin == "" {
				return originNotAllowed("this page's origin is not listed in server.cors_origins")
			}
			c.Set(fiber.HeaderAccessControlAllowOrigin, origin)
			c.Set(fiber.HeaderAccessControlAllowMethods, corsAllowMethods)
			c.Set(fiber.HeaderAccessControlAllowHeaders, corsAllowHeaders)
			c.Set(fiber.HeaderAccessControlMaxAge, corsMaxAge)
			c.Status(http.StatusNoContent)
			return nil
		}
		p.mark(c)
		return c.Next()
	}
}

// corsPolicy is the set of origins allowed (server.cors_origins).
type corsPolicy struct {
	allowed map[string]bool
	on      bool
}

func newCORSPolicy(origins []string) *corsPolicy {
	p := &corsPolicy{allowed: make(map[string]bool, len(origins))}
	for _, o := range origins {
		p.allowed[o] = true
	}
	p.on = len(p.allowed) > 0
	return p
}

// origin returns the request's Origin when it is exactly one listed origin, else "".
func (p *corsPolicy) origin(c *fiber.Ctx) string {
	// PeekAll's result is valid until its next call only.
	values := c.Request().Header.PeekAll(fiber.HeaderOrigin)
	if len(values) != 1 || !p.allowed[string(values[0])] {
		return ""
	}
	return string(values[0])
}

// mark gives the answer to a (non-preflight) request the CORS headers it is due: Vary
// while CORS is on, and for a listed origin Allow-Origin and Expose-Headers. Errors
// fasthttp raises before any middleware (a body over the limit, a malformed request)
// get them from the error handler.
func (p *corsPolicy) mark(c *fiber.Ctx) {
	if !p.on {
		return
	}
	c.Vary(fiber.HeaderOrigin)
	if origin := p.origin(c); origin != "" {
		c.Set(fiber.HeaderAccessControlAllowOrigin, origin)
		c.Set(fiber.HeaderAccessControlExposeHeaders, corsExposeHeaders)
	}
}

// originNotAllowed is the answer to a preflight that gets no CORS approval.
func originNotAllowed(msg string) *oai.Error {
	return &oai.Error{Status: http.StatusForbidden, Type: oai.TypePermission, Code: "origin_not_allowed", Message: msg}
}
