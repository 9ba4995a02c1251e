package rag

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"github.com/ragway/ragway/gateway/store"
	"github.com/ragway/ragway/gateway/vectorstore"
)

// Settings tune retrieval. The gateway's come from its rag block; a knowledge base
// may have its own (stored with it), which replace the gateway's one field at a time;
// a search may try its own on top (what `ragway eval --compare` does), for the fields
// that act at search time. A zero field is not set.
type Settings struct {
	// Fusion is how hybrid search fuses the dense and sparse lists:
	// vectorstore.FusionRRF or vectorstore.FusionWeighted.
	Fusion string `json:"fusion,omitempty"`
	// RRFK is rrf's rank constant, 1 to vectorstore.MaxRRFK.
	RRFK int `json:"rrf_k,omitempty"`
	// DenseWeight is weighted's share of the dense list, 0 to 1.
	DenseWeight *float64 `json:"dense_weight,omitempty"`
	// Rerank, when false, turns the gateway's reranker (rag.rerank_model) off;
	// true asks for it (an error where the gateway has none).
	Rerank *bool `json:"rerank,omitempty"`
	// RerankCandidates is how many of the best hits the reranker re-scores, 1 to
	// MaxRerankCandidates.
	RerankCandidates int `json:"rerank_candidates,omitempty"`
	// ChunkTokens and ChunkOverlap size the chunks of documents indexed from now
	// on (Options); they do not act on a search.
	ChunkTokens  int  `json:"chunk_tokens,omitempty"`
	ChunkOverlap *int `json:"chunk_overlap,omitempty"`
}

// MaxChunkTokens bounds Settings.ChunkTokens: a chunk is a passage to cite, not a
// document.
const MaxChunkTokens = 8192

// SettingsError is a setting that is not valid: Field names it as a client wrote it
// ("retrieval.fusion").
type SettingsError struct {
	Field, Reason string
}

func (e *SettingsError) Error() string { return e.Field + ": " + e.Reason }

// ParseSettings reads settings from a JSON object (empty: none) and checks them
// (Check); field names in errors start with prefix ("retrieval").
func ParseSettings(data []byte, prefix string) (Settings, error) {
	var s Settings
	if len(bytes.TrimSpace(data)) == 0 {
		return s, nil
	}
	// Keys are matched exactly (encoding/json would take "FUSION" for "fusion"), and
	// once each.
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err == nil && keys != nil {
		for _, k := range sortedKeys(keys) {
			if !slices.Contains(settingNames, k) {
				return Settings{}, &SettingsError{Field: prefix + "." + k,
					Reason: "unknown setting (known: " + strings.Join(settingNames, ", ") + ")"}
			}
		}
		if n := countKeys(data); n != len(keys) {
			return Settings{}, &SettingsError{Field: prefix, Reason: "a setting is given twice"}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&s); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			reason := "wrong type: want " + kindName(te.Type.Kind())
			if strings.HasPrefix(te.Value, "number") {
				reason = "the number is not " + kindName(te.Type.Kind()) + " in range"
			}
			return Settings{}, &SettingsError{Field: prefix + "." + te.Field, Reason: reason}
		}
		return Settings{}, &SettingsError{Field: prefix, Reason: "must be a JSON object of settings"}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Settings{}, &SettingsError{Field: prefix, Reason: "must be one JSON object"}
	}
	return s, s.Check(prefix)
}

// StoredSettings are knowledge base k's own settings as stored, checked when they were
// written: settings that no longer read (the rules changed since) are logged and
// left out, and the gateway's act. Not the asker's to fix.
func StoredSettings(k store.KnowledgeBase, log *slog.Logger) Settings {
	set, err := ParseSettings([]byte(k.Retrieval), "retrieval")
	if err != nil {
		log.Warn("a knowledge base's retrieval settings are not valid: the gateway's are used", "kb", k.ID, "error", err)
		return Settings{}
	}
	return set
}

// Check reports the first setting that is not valid, its field name after prefix.
func (s Settings) Check(prefix string) error {
	bad := func(field, reason string, args ...any) error {
		return &SettingsError{Field: prefix + "." + field, Reason: fmt.Sprintf(reason, args...)}
	}
	switch s.Fusion {
	case "", vectorstore.FusionRRF, vectorstore.FusionWeighted:
	default:
		return bad("fusion", "must be %q or %q, not %q", vectorstore.FusionRRF, vectorstore.FusionWeighted, s.Fusion)
	}
	if s.RRFK < 0 || s.RRFK > vectorstore.MaxRRFK {
		return bad("rrf_k", "must be 1 to %d, not %d", vectorstore.MaxRRFK, s.RRFK)
	}
	if w := s.DenseWeight; w != nil && !(*w >= 0 && *w <= 1) { // NaN too
		return bad("dense_weight", "must be 0 to 1, not %v", *w)
	}
	if s.RerankCandidates < 0 || s.RerankCandidates > MaxRerankCandidates {
		return bad("rerank_candidates", "must be 1 to %d, not %d", MaxRerankCandidates, s.RerankCandidates)
	}
	if s.ChunkTokens < 0 || s.ChunkTokens > MaxChunkTokens {
		return bad("chunk_tokens", "must be 1 to %d, not %d", MaxChunkTokens, s.ChunkTokens)
	}
	if o := s.ChunkOverlap; o != nil {
		if *o < 0 || *o > MaxChunkTokens/2 {
			return bad("chunk_overlap", "must be 0 to %d, not %d", MaxChunkTokens/2, *o)
		}
		if s.ChunkTokens > 0 && *o > s.ChunkTokens/2 {
			return bad("chunk_overlap", "must be at most half of chunk_tokens (%d), not %d", s.ChunkTokens/2, *o)
		}
	}
	return nil
}

// settingNames are the JSON names of Settings' fields, in their order.
var settingNames = func() []string {
	t := reflect.TypeFor[Settings]()
	names := make([]string, t.NumField())
	for i := range names {
		names[i], _, _ = strings.Cut(t.Field(i).Tag.Get("json"), ",")
	}
	return names
}()

// sortedKeys returns m's keys in order.
func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// countKeys counts the keys of the JSON object data (repeats included).
func countKeys(data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0
	}
	n := 0
	for dec.More() {
		if _, err := dec.Token(); err != nil { // the key
			return n
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return n
		}
		n++
	}
	return n
}

// kindName names a Go kind the way a JSON client reads it.
func kindName(k reflect.Kind) string {
	switch k {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	}
	return "another type"
}

// CheckSearch is Check for the settings of one search, which may only set what acts
// at search time.
func (s Settings) CheckSearch(prefix string) error {
	switch {
	case s.ChunkTokens != 0:
		return &SettingsError{Field: prefix + ".chunk_tokens", Reason: "sizes the chunks of documents as they are indexed; a search cannot change it"}
	case s.ChunkOverlap != nil:
		return &SettingsError{Field: prefix + ".chunk_overlap", Reason: "sizes the chunks of documents as they are indexed; a search cannot change it"}
	}
	return s.Check(prefix)
}

// Over returns s with the fields it does not set taken from base.
func (s Settings) Over(base Settings) Settings {
	if s.Fusion == "" {
		s.Fusion = base.Fusion
	}
	if s.RRFK == 0 {
		s.RRFK = base.RRFK
	}
	if s.DenseWeight == nil {
		s.DenseWeight = base.DenseWeight
	}
	if s.Rerank == nil {
		s.Rerank = base.Rerank
	}
	if s.RerankCandidates == 0 {
		s.RerankCandidates = base.RerankCandidates
	}
	if s.ChunkTokens == 0 {
		s.ChunkTokens = base.ChunkTokens
	}
	if s.ChunkOverlap == nil {
		s.ChunkOverlap = base.ChunkOverlap
	}
	return s
}

// VectorFusion is the fusion the settings choose.
func (s Settings) VectorFusion() vectorstore.Fusion {
	f := vectorstore.Fusion{Method: s.Fusion, K: s.RRFK}
	if s.DenseWeight != nil {
		f.DenseWeight = *s.DenseWeight
	}
	return f
}

// ChunkOptions are the chunk sizes the settings choose over base.
func (s Settings) ChunkOptions(base Options) Options {
	if s.ChunkTokens > 0 {
		base.ChunkTokens = s.ChunkTokens
		if s.ChunkOverlap == nil {
			base.Overlap = 0 // the default share of the new size
		}
	}
	if s.ChunkOverlap != nil {
		base.Overlap = *s.ChunkOverlap
		if base.Overlap == 0 {
			base.Overlap = -1 // Options: 0 is the default, negative none
		}
	}
	return base
}

// String is the settings as JSON, "{}" when none are set.
func (s Settings) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}
