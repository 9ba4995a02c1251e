package config

import (
	"errors"
	"strings"
	"testing"
)

func TestResolveDatabaseURL(t *testing.T) {
	const fromConfig, fromEnv = "postgres://cfg@db/one", "postgres://env@db/two"
	tests := []struct {
		name      string
		configURL string
		env       map[string]string
		want      string
	}{
		{"config wins", fromConfig, map[string]string{"DATABASE_URL": fromEnv}, fromConfig},
		{"DATABASE_URL", "", map[string]string{"DATABASE_URL": fromEnv}, fromEnv},
		{"none", "", map[string]string{"DATABASE_URL": ""}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.DatabaseURL = tt.configURL
			got, err := c.ResolveDatabaseURL(func(k string) string { return tt.env[k] })
			if got != tt.want {
				t.Fatalf("ResolveDatabaseURL = %q, %v; want %q", got, err, tt.want)
			}
			if tt.want == "" {
				if !errors.Is(err, ErrNoDatabase) || !strings.Contains(err.Error(), "RAGWAY_DATABASE_URL") ||
					!strings.Contains(err.Error(), "task db:up") {
					t.Fatalf("error %v, want ErrNoDatabase naming the ways to set it", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
		})
	}

	// RAGWAY_DATABASE_URL sets database_url, so it wins over DATABASE_URL too.
	c, err := Parse(nil, []string{"RAGWAY_DATABASE_URL=" + fromConfig})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.ResolveDatabaseURL(func(string) string { return fromEnv }); got != fromConfig {
		t.Fatalf("with RAGWAY_DATABASE_URL: %q, want %q", got, fromConfig)
	}
}
