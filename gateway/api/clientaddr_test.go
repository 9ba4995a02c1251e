package api

import (
	"net/netip"
	"strings"
	"testing"
)

// TestClientAddr: the peer, unless it is a trusted proxy; then the rightmost
// forwarded address that is not a trusted proxy, never one the client wrote left of
// it.
func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		peer      string
		forwarded []string
		want      string
	}{
		{"203.0.113.7", []string{"198.51.100.1"}, "203.0.113.7"},                              // not a proxy: its header is ignored
		{"10.0.0.2", nil, "10.0.0.2"},                                                         // a proxy that forwarded nothing
		{"10.0.0.2", []string{"198.51.100.1"}, "198.51.100.1"},                                // one proxy
		{"10.0.0.2", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1"},                       // the client's own entry is left of the truth
		{"10.0.0.2", []string{"6.6.6.6", "198.51.100.1, 10.0.0.9"}, "198.51.100.1"},           // two proxies, two header lines
		{"10.0.0.2", []string{"198.51.100.1:5123"}, "198.51.100.1"},                           // with a port
		{"10.0.0.2", []string{"[2001:db8::1]:443"}, "2001:db8::1"},                            // IPv6 with a port
		{"10.0.0.2", []string{"::ffff:198.51.100.1"}, "198.51.100.1"},                         // mapped
		{"10.0.0.2", []string{"198.51.100.1, garbage, 10.0.0.3"}, "10.0.0.3"},                 // garbage ends the walk at the trusted hop
		{"10.0.0.2", []string{"10.0.0.4, 10.0.0.3"}, "10.0.0.4"},                              // only proxies: the leftmost
		{"10.0.0.2", []string{"198.51.100.1" + strings.Repeat(", 10.0.0.1", 40)}, "10.0.0.1"}, // beyond the hops read
		{"::ffff:10.0.0.2", []string{"198.51.100.1"}, "198.51.100.1"},                         // a mapped peer
		{"fd00::1", []string{"2001:db8::5"}, "2001:db8::5"},
	} {
		var fwd [][]byte
		for _, f := range tc.forwarded {
			fwd = append(fwd, []byte(f))
		}
		if got := clientAddr(netip.MustParseAddr(tc.peer), fwd, trusted); got != tc.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", tc.peer, tc.forwarded, got, tc.want)
		}
	}
}
