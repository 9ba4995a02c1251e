package api

import (
	"bytes"
	"net/netip"

	"github.com/gofiber/fiber/v2"
)

// maxForwardedHops bounds the X-Forwarded-For entries read, from the right.
const maxForwardedHops = 32

// clientAddr is the address of a request's client, for per-address limits (sign-in
// and sign-up throttles): the connection's peer, unless the peer is a trusted proxy
// (web.trusted_proxies). Then it is the rightmost address of X-Forwarded-For that is
// not a trusted proxy: each proxy appends the address it got the request from, so
// only the part right of the first untrusted hop is true; what is left of it is the
// client's own writing. An entry that is not an address ends the walk at the trusted
// hop right of it.
func clientAddr(peer netip.Addr, forwarded [][]byte, trusted []netip.Prefix) string {
	peer = peer.Unmap()
	if !isTrusted(peer, trusted) {
		return peer.String()
	}
	addr := peer
	hops := 0
	for i := len(forwarded) - 1; i >= 0; i-- {
		line := forwarded[i]
		for len(line) > 0 && hops < maxForwardedHops {
			hops++
			var entry []byte
			if j := bytes.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, nil
			}
			a, ok := parseHop(bytes.TrimSpace(entry))
			if !ok {
				return addr.String()
			}
			addr = a
			if !isTrusted(a, trusted) {
				return a.String()
			}
		}
	}
	return addr.String()
}

// parseHop reads one X-Forwarded-For entry: an address, with or without a port.
func parseHop(b []byte) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(string(b)); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(string(b)); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddrOf is clientAddr of a request.
func (s *server) clientAddrOf(c *fiber.Ctx) string {
	peer, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	if len(s.opts.TrustedProxies) == 0 {
		return peer.Unmap().String()
	}
	return clientAddr(peer, c.Request().Header.PeekAll(fiber.HeaderXForwardedFor), s.opts.TrustedProxies)
}
