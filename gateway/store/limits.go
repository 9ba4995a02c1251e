package store

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/lib/pq"
)

// LimitTake is one key's part in TakeLimits: its limits and what its bucket holds;
// the requests this gateway leases from the key's shared bucket (negative: gives back
// unused ones) and, of those it leased, the ones it used since it last said; and the
// tokens it debits (what the key's requests used).
type LimitTake struct {
	KeyID              string
	RPM, TPM           int // per minute; 0: not limited
	RPMBurst, TPMBurst int // the most the bucket holds, leases included
	Requests           int
	Used               int
	Tokens             int64
}

// LimitLevel is a key's bucket after TakeLimits: the requests granted (of those
// asked), the requests the gateway holds leased (granted included: the ones it may
// use) and the tokens left (negative: a debt).
type LimitLevel struct {
	Granted    int
	Leased     int
	TokensLeft float64
}

// TakeLimits applies takes to the keys' shared buckets for this gateway (Options.
// Origin; db/migrations/00009_limit_bursts.sql: refilled to now, then taken from) in
// one round trip, and returns each key's level, in the order of takes. The requests
// this gateway leased and has not said it used stay counted in the bucket for 3 s
// after its last take for the key; it must not use them past that. A key that no
// longer exists is granted nothing and has no tokens left; a malformed key id is
// ErrNotFound.
func (s *Store) TakeLimits(ctx context.Context, takes []LimitTake) ([]LimitLevel, error) {
	// Buckets are locked in key order: two gateways taking for the same keys cannot
	// deadlock.
	order := lockOrder(len(takes), func(i int) string { return takes[i].KeyID })
	var (
		keys     = make([]string, len(takes))
		rpm, tpm = make([]int64, len(takes)), make([]int64, len(takes))
		rb, tb   = make([]int64, len(takes)), make([]int64, len(takes))
		reqs     = make([]int64, len(takes))
		used     = make([]int64, len(takes))
		toks     = make([]int64, len(takes))
	)
	for j, i := range order {
		t := takes[i]
		if !validID(t.KeyID) {
			return nil, fmt.Errorf("store: take limits: %w: key %q", ErrNotFound, t.KeyID)
		}
		keys[j], rpm[j], tpm[j], rb[j], tb[j] = t.KeyID, int64(t.RPM), int64(t.TPM), int64(t.RPMBurst), int64(t.TPMBurst)
		reqs[j], used[j], toks[j] = int64(t.Requests), int64(t.Used), t.Tokens
	}
	out := make([]LimitLevel, len(takes))
	err := s.do(ctx, "take limits", func(ctx context.Context) error {
		rows, err := s.db.QueryContext(ctx, `SELECT t.i, l.granted, l.held, l.tokens_left
			FROM unnest($2::uuid[], $3::int[], $4::int[], $5::int[], $6::int[], $7::int[], $8::int[], $9::bigint[])
				WITH ORDINALITY AS t(k, rpm, rb, tpm, tb, req, used, tok, i),
			LATERAL ragway_limit(t.k, $1, t.rpm, t.rb, t.tpm, t.tb, t.req, t.used, t.tok) l ORDER BY t.i`,
			s.opts.Origin, pq.Array(keys), pq.Array(rpm), pq.Array(rb), pq.Array(tpm), pq.Array(tb), pq.Array(reqs), pq.Array(used), pq.Array(toks))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				j int
				l LimitLevel
			)
			if err := rows.Scan(&j, &l.Granted, &l.Leased, &l.TokensLeft); err != nil {
				return err
			}
			out[order[j-1]] = l
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockOrder returns the indexes 0..n-1 sorted by the row each names (id(i)): rows
// locked in one order by every gateway cannot deadlock.
func lockOrder(n int, id func(int) string) []int {
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(id(a), id(b)) })
	return order
}
