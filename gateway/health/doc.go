// Package health says whether what the gateway depends on is ready, in words fit for
// /readyz, which answers without a key: a state names no host, user or query (those
// go to the log, at a level that says how much an operator should care).
//
// It checks; it does not fix, retry or wait (the store reconnects on its own).
package health
