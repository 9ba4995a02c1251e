//go:build !unix

package netguard

import "net"

// WatchClose does nothing on this platform: a client that leaves is noticed when the
// answer is written.
func WatchClose(nc net.Conn, gone func()) (stop func()) { return func() {} }
