package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

func TestParseOptions(t *testing.T) {
	base := func(extra map[string]any) map[string]any {
		m := map[string]any{"upstreams": []any{"http://10.0.0.5:8000"}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	defaults := options{Upstreams: []string{"http://10.0.0.5:8000"}, Timeout: defaultTimeout, MaxIdleConns: defaultMaxIdleConns, HealthInterval: defaultHealthInterval}
	tests := []struct {
		name string
		in   map[string]any
		want *options // nil: an error naming wantErr
		err  string
	}{
		{name: "defaults", in: base(nil), want: &defaults},
		{
			name: "everything set",
			in: map[string]any{
				"upstreams":      []any{"http://a:8000/v1", "https://b.example/vllm/v1/", "http://c:8000/"},
				"upstream_model": "Qwen/Qwen2.5-7B-Instruct", "api_key_env": "VLLM_KEY",
				"timeout": "1m30s", "max_idle_conns": 8.0, "health_interval": 2.5,
				"extra_body": map[string]any{"ignore_eos": true},
			},
			want: &options{
				Upstreams:     []string{"http://a:8000", "https://b.example/vllm", "http://c:8000"},
				UpstreamModel: "Qwen/Qwen2.5-7B-Instruct", APIKeyEnv: "VLLM_KEY",
				Timeout: 90 * time.Second, MaxIdleConns: 8, HealthInterval: 2500 * time.Millisecond,
				ExtraBody: map[string]any{"ignore_eos": true},
			},
		},
		{name: "one upstream as a string", in: map[string]any{"upstreams": "http://10.0.0.5:8000/v1"}, want: &defaults},
		{name: "upstreams missing", in: map[string]any{}, err: "option upstreams: required"},
		{name: "upstreams empty", in: map[string]any{"upstreams": []any{}}, err: "option upstreams: want at least one"},
		{name: "upstream not http", in: map[string]any{"upstreams": []any{"ftp://x"}}, err: "option upstreams:"},
		{name: "upstream without host", in: map[string]any{"upstreams": []any{"http://"}}, err: "option upstreams:"},
		{name: "upstream listed twice", in: map[string]any{"upstreams": []any{"http://a:1", "http://a:1/v1"}}, err: "listed twice"},
		{name: "upstream with credentials", in: map[string]any{"upstreams": []any{"http://user:hunter2@a:1"}}, err: "api_key_env"},
		{name: "upstream not a string", in: map[string]any{"upstreams": []any{1.0}}, err: "option upstreams:"},
		{name: "upstream_model empty", in: base(map[string]any{"upstream_model": ""}), err: "option upstream_model:"},
		{name: "api_key_env not a name", in: base(map[string]any{"api_key_env": "sk-123 456"}), err: "option api_key_env:"},
		{name: "timeout not a duration", in: base(map[string]any{"timeout": "soon"}), err: "option timeout:"},
		{name: "timeout zero", in: base(map[string]any{"timeout": 0.0}), err: "option timeout: must be positive"},
		{name: "timeout negative", in: base(map[string]any{"timeout": "-1s"}), err: "option timeout: must be positive"},
		{name: "health_interval bool", in: base(map[string]any{"health_interval": true}), err: "option health_interval:"},
		{name: "max_idle_conns fraction", in: base(map[string]any{"max_idle_conns": 1.5}), err: "option max_idle_conns:"},
		{name: "max_idle_conns zero", in: base(map[string]any{"max_idle_conns": 0.0}), err: "option max_idle_conns:"},
		{name: "extra_body not a map", in: base(map[string]any{"extra_body": "x"}), err: "option extra_body:"},
		{name: "extra_body sets stream", in: base(map[string]any{"extra_body": map[string]any{"stream": false}}), err: `option extra_body: may not set "stream"`},
		{name: "unknown option", in: base(map[string]any{"model_path": "x"}), err: "option model_path: unknown option"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseOptions(tc.in)
			if tc.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, *tc.want) {
					t.Errorf("got %+v\nwant %+v", got, *tc.want)
				}
				return
			}
			if !sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want ErrInvalidRequest containing %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error %q repeats a password", err)
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	t.Setenv("RAGWAY_TEST_KEY_SET", " sk-abc ")
	t.Setenv("RAGWAY_TEST_KEY_EMPTY", "")
	tests := []struct {
		name, env, want, err string
	}{
		{name: "no api_key_env", want: ""},
		{name: "set", env: "RAGWAY_TEST_KEY_SET", want: "sk-abc"},
		{name: "empty", env: "RAGWAY_TEST_KEY_EMPTY", err: "option api_key_env: environment variable RAGWAY_TEST_KEY_EMPTY is empty"},
		{name: "missing", env: "RAGWAY_TEST_KEY_MISSING", err: "option api_key_env: environment variable RAGWAY_TEST_KEY_MISSING is not set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := options{APIKeyEnv: tc.env}.apiKey()
			switch {
			case tc.err == "" && (err != nil || got != tc.want):
				t.Errorf("apiKey = %q, %v; want %q", got, err, tc.want)
			case tc.err != "" && (!sdk.IsInvalidRequest(err) || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("apiKey error %v, want ErrInvalidRequest %q", err, tc.err)
			}
		})
	}
}
