// Package feed follows the change feed that gateways sharing a database keep in
// step by: an append-only, ordered log in Postgres (table changes, written by triggers
// in the transaction of each change; db/migrations/00005_changes.sql) of what changes
// state a gateway holds in memory — a document indexed or deleted, a knowledge base
// deleted, a key revoked.
//
// A Follower reads the log on from its position, applying each change it did not make
// itself, in order. LISTEN/NOTIFY wakes it at once; a poll every Options.Poll catches
// what a lost notification would miss, and the listening connection's (re)connection
// wakes it too. A follower whose position fell below what was pruned (it was away
// longer than the feed keeps changes) reloads everything instead. Prune keeps the log
// short.
//
// The log is the truth, notifications only a hint: a gateway that restarts loads what
// the database holds and follows from the position it read before loading (changes
// made during the load are applied again, which is harmless: applying is idempotent).
package feed
