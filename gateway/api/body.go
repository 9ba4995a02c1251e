package api

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/ragway/ragway/gateway/accounts"
	"github.com/ragway/ragway/gateway/auth"
	"github.com/ragway/ragway/gateway/oai"
)

// preAuthBodyBytes is the largest body read before its key is verified against the
// database: smaller bodies with a well-formed bearer key are read with the headers
// (the key is checked before the handler runs, as for every request); larger ones,
// chunked ones and any body without a key only once the key is known to be valid.
const preAuthBodyBytes = 64 << 10

// verifyTimeout bounds the key check of a large body's headers.
const verifyTimeout = 5 * time.Second

// headerWithheld marks, for the handler, a request whose body headerReceived did not
// read. Any value a client sends in it is dropped first.
const headerWithheld = "X-Ragway-Body-Withheld"

// headerReceived runs when a request's headers have arrived, before fasthttp reads
// its body. A body the request cannot be entitled to — no bearer key of a ragway key's
// shape, or a large (or chunked) body whose key does not verify — is not read at all:
// the request goes on with an empty body, marked withheld, on a connection that closes
// after the answer (requireScope answers it). It also gives the body its own read
// deadline.
func (s *server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	cfg := fasthttp.RequestConfig{ReadTimeout: s.opts.BodyTimeout}
	h.Del(headerWithheld)
	n := h.ContentLength() // -1: chunked; -2: none (identity without a length)
	if n == 0 || n == -2 {
		return cfg
	}
	if s.mayReadBody(h, n) {
		return cfg
	}
	h.SetContentLength(0)
	h.Del(fiber.HeaderExpect)
	h.SetConnectionClose()
	h.Set(headerWithheld, "1")
	return cfg
}

// mayReadBody reports whether a body of n bytes (-1: chunked) may be read for the
// request whose headers are h.
func (s *server) mayReadBody(h *fasthttp.RequestHeader, n int) bool {
	if s.opts.Accounts != nil && string(h.Method()) == fiber.MethodPost && n > 0 && n <= authBodyBytes {
		// Signing up or in: the body is the credential.
		switch path, _, _ := strings.Cut(string(h.RequestURI()), "?"); path {
		case "/auth/signup", "/auth/signin":
			return true
		}
	}
	key, err := auth.BearerToken(string(h.Peek(fiber.HeaderAuthorization)))
	if errors.Is(err, auth.ErrNoKey) && s.opts.Accounts != nil {
		// The website's session cookie is a key too.
		key, err = accounts.SessionCookie(false, func(name string) string { return string(h.Cookie(name)) }), nil
	}
	if err != nil {
		return false
	}
	if _, ok := auth.PrefixOf(key); !ok {
		return false
	}
	if n > 0 && n <= preAuthBodyBytes {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), verifyTimeout)
	defer cancel()
	// Any valid key may send a body: the route checks the scope.
	_, err = s.opts.Gate.Verify(ctx, key, auth.ScopeChat)
	return err == nil || errors.Is(err, auth.ErrMissingScope)
}

// authBodyBytes bounds the body of a sign-up or sign-in, read before any credential.
const authBodyBytes = 16 << 10

// withheld is the answer to a request whose key is valid but whose body was not read
// (its key could not be verified in time when its headers came).
var withheld = &oai.Error{Status: http.StatusServiceUnavailable, Type: oai.TypeServer, Code: "key_check_timeout", RetryAfter: time.Second,
	Message: "the request's key could not be verified before its body arrived; try again"}

// decodeBody makes the request's body what its Content-Encoding encodes, bounded by
// MaxBodyBytes as it is decoded (a compressed body may not expand past the limit that
// holds for plain ones: 413). It accepts identity, gzip and deflate, once; anything
// else is 415 naming the header. Handlers then read the decoded body with c.Body().
func (s *server) decodeBody(c *fiber.Ctx) error {
	// Every Content-Encoding header counts, an empty one too: Fiber's own decoding
	// (c.Body()) reads the last one, so none may be left behind.
	var codings []string
	headers := 0
	for _, v := range c.Request().Header.PeekAll(fiber.HeaderContentEncoding) {
		headers++
		for _, cd := range strings.Split(string(v), ",") {
			if cd = strings.ToLower(strings.TrimSpace(cd)); cd != "" && cd != "identity" {
				codings = append(codings, cd)
			}
		}
	}
	if headers == 0 {
		return nil
	}
	c.Request().Header.Del(fiber.HeaderContentEncoding)
	if len(codings) == 0 {
		return nil
	}
	if len(codings) > 1 || (codings[0] != "gzip" && codings[0] != "x-gzip" && codings[0] != "deflate") {
		return &oai.Error{Status: http.StatusUnsupportedMediaType, Type: oai.TypeInvalidRequest, Code: "unsupported_encoding",
			Param:   fiber.HeaderContentEncoding,
			Message: "unsupported Content-Encoding: send the body plain, or compressed once with gzip or deflate"}
	}
	raw := c.Request().Body()
	var r io.Reader
	var err error
	if codings[0] == "deflate" {
		r, err = zlib.NewReader(bytes.NewReader(raw))
	} else {
		r, err = gzip.NewReader(bytes.NewReader(raw))
	}
	if err != nil {
		return badEncoding(codings[0])
	}
	limit := s.opts.MaxBodyBytes
	var out bytes.Buffer
	n, err := out.ReadFrom(io.LimitReader(r, int64(limit)+1))
	switch {
	case n > int64(limit):
		return &oai.Error{Status: http.StatusRequestEntityTooLarge, Type: oai.TypeInvalidRequest, Code: oai.CodeTooLarge,
			Message: fmt.Sprintf("the request body decodes to more than the limit of %d bytes", limit)}
	case err != nil:
		return badEncoding(codings[0])
	}
	c.Request().SetBodyRaw(out.Bytes())
	return nil
}

func badEncoding(coding string) *oai.Error {
	return &oai.Error{Status: http.StatusBadRequest, Type: oai.TypeInvalidRequest, Code: "invalid_encoding",
		Param: fiber.HeaderContentEncoding, Message: fmt.Sprintf("the request body is not valid %s data", coding)}
}
