package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseModelJSON(t *testing.T) {
	m, err := ParseModelJSON([]byte(`{"name":"chat@v2","backend":"echo","aliases":["chat"],"idle_timeout":"5m","options":{"delay_ms":20,"scale":0.5,"list":[1,"a"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	// Defaults as in the file; numbers as the YAML decoder gives them.
	if m.Replicas != DefaultReplicas || m.MaxConcurrency != DefaultMaxConcurrency || m.IdleTimeout.Std() != 5*time.Minute ||
		m.Options["delay_ms"] != 20 || m.Options["scale"] != 0.5 || m.Options["list"].([]any)[0] != 1 {
		t.Fatalf("parsed %+v", m)
	}
	for _, c := range []struct{ body, path, msg string }{
		{`{"name":"x","backend":"echo","replica":2}`, "replica", "unknown key"},
		{`{"name":"x","backend":"echo","replicas":"two"}`, "replicas", "want"},
		{`{"name":"x","backend":"echo","replicas":0}`, "replicas", "must be >= 1"},
		{`{"name":"x","backend":"echo","idle_timeout":"soon"}`, "", "soon"},
		{`{"name":"x","backend":"echo"} {}`, "", "one JSON object"},
		{`{"name":"x",`, "", "cut short"},
		{`[]`, "", "want"},
		{`{"backend":"echo"}`, "name", "required"},
	} {
		_, err := ParseModelJSON([]byte(c.body))
		var fe *FieldError
		if err == nil || !errors.As(err, &fe) || fe.Path != c.path || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseModelJSON(%s) = %v (path %q); want %q at %q", c.body, err, func() string {
				if fe != nil {
					return fe.Path
				}
				return ""
			}(), c.msg, c.path)
		}
	}
}
