package rag

import (
	"sync"

	"github.com/kljensen/snowball/english"
)

// stem returns the English (Porter2) stem of word (lower-case ASCII letters), in
// memory the caller must not modify.
//
// The stemmer allocates; stems are remembered in a bounded cache (a word's stem never
// changes), which a document of random words can fill but not grow: a full shard is
// emptied and starts again.
func stem(word []byte) []byte {
	sh := &stems[shardOf(word)]
	sh.mu.RLock()
	s, ok := sh.m[string(word)]
	sh.mu.RUnlock()
	if !ok {
		s = []byte(english.Stem(string(word), true))
		sh.mu.Lock()
		if len(sh.m) >= stemShardSize {
			clear(sh.m)
		}
		sh.m[string(word)] = s
		sh.mu.Unlock()
	}
	return s
}

const (
	stemShards    = 16
	stemShardSize = 4096
)

type stemShard struct {
	mu sync.RWMutex
	m  map[string][]byte
}

var stems [stemShards]stemShard

func init() {
	for i := range stems {
		stems[i].m = make(map[string][]byte, stemShardSize)
	}
}

func shardOf(word []byte) int {
	return int(termIDBytes(word) % stemShards)
}
