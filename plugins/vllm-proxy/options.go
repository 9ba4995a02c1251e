package main

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	sdk "github.com/ragway/ragway/plugin-sdk"
)

// options are the model's `options:` from the gateway config.
type options struct {
	// Upstreams are the upstreams' base URLs, normalised: scheme://host[:port][/path]
	// without a trailing slash or /v1.
	Upstreams []string
	// UpstreamModel is the model id sent upstream ("": the model's name).
	UpstreamModel string
	// APIKeyEnv names the environment variable holding the upstream key.
	APIKeyEnv string
	// Timeout bounds connecting, waiting for response headers and every gap
	// between two reads of a response body, and all the attempts of a
	// request before its first event; not a whole generation.
	Timeout time.Duration
	// MaxIdleConns is the number of idle keep-alive connections kept per
	// upstream.
	MaxIdleConns int
	// HealthInterval is how often every upstream's /health and /metrics are
	// probed.
	HealthInterval time.Duration
	// ExtraBody is merged into every generation request body; the
	// request's own sampling fields take precedence.
	ExtraBody map[string]any
}

// Defaults of the optional options.
const (
	defaultTimeout        = 60 * time.Second
	defaultMaxIdleConns   = 64
	defaultHealthInterval = 5 * time.Second
)

var optionNames = []string{"upstreams", "upstream_model", "api_key_env", "timeout", "max_idle_conns", "health_interval", "extra_body"}

// generatedFields are the request fields the plugin sets itself; extra_body
// may not set them.
var generatedFields = []string{"model", "messages", "prompt", "stream", "stream_options", "n"}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// parseOptions validates the options map; every problem names its option.
func parseOptions(m map[string]any) (options, error) {
	o := options{Timeout: defaultTimeout, MaxIdleConns: defaultMaxIdleConns, HealthInterval: defaultHealthInterval}
	var problems []string
	bad := func(k, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("option %s: %s", k, fmt.Sprintf(format, args...)))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := m[k]
		switch k {
		case "upstreams":
			ups, err := parseUpstreams(v)
			if err != nil {
				bad(k, "%v", err)
				continue
			}
			o.Upstreams = ups
		case "upstream_model":
			s, ok := v.(string)
			if !ok || strings.TrimSpace(s) == "" {
				bad(k, "want a non-empty string, got %v", v)
				continue
			}
			o.UpstreamModel = s
		case "api_key_env":
			s, ok := v.(string)
			if !ok || !envName.MatchString(s) {
				bad(k, "want the name of an environment variable (letters, digits, _), got %v", v)
				continue
			}
			o.APIKeyEnv = s
		case "timeout":
			d, err := parseDuration(v)
			if err != nil {
				bad(k, "%v", err)
				continue
			}
			o.Timeout = d
		case "health_interval":
			d, err := parseDuration(v)
			if err != nil {
				bad(k, "%v", err)
				continue
			}
			o.HealthInterval = d
		case "max_idle_conns":
			f, ok := v.(float64)
			if !ok || f != float64(int(f)) || f < 1 {
				bad(k, "want an integer >= 1, got %v", v)
				continue
			}
			o.MaxIdleConns = int(f)
		case "extra_body":
			eb, ok := v.(map[string]any)
			if !ok {
				bad(k, "want a map of request fields, got %v", v)
				continue
			}
			for _, f := range generatedFields {
				if _, ok := eb[f]; ok {
					bad(k, "may not set %q (the plugin sets it)", f)
				}
			}
			o.ExtraBody = eb
		default:
			bad(k, "unknown option (known: %s)", strings.Join(optionNames, ", "))
		}
	}
	if _, ok := m["upstreams"]; !ok {
		bad("upstreams", `required: the base URLs of the OpenAI-compatible servers, e.g. ["http://10.0.0.5:8000"]`)
	}
	if len(problems) > 0 {
		return options{}, sdk.InvalidRequestf("%s", strings.Join(problems, "; "))
	}
	return o, nil
}

// parseUpstreams accepts a list of base URLs (or one URL as a string) and
// normalises each: a trailing slash and a trailing /v1 are removed.
func parseUpstreams(v any) ([]string, error) {
	var raw []any
	switch x := v.(type) {
	case string:
		raw = []any{x}
	case []any:
		raw = x
	default:
		return nil, fmt.Errorf("want a list of base URLs, got %v", v)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("want at least one base URL")
	}
	seen := map[string]bool{}
	out := make([]string, 0, len(raw))
	for _, r := range raw {
		s, ok := r.(string)
		if !ok {
			return nil, fmt.Errorf("want base URLs as strings, got %v", r)
		}
		base, err := normaliseBase(s)
		if err != nil {
			return nil, err
		}
		if seen[base] {
			return nil, fmt.Errorf("%s is listed twice", base)
		}
		seen[base] = true
		out = append(out, base)
	}
	return out, nil
}

func normaliseBase(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	switch {
	case err != nil:
		return "", fmt.Errorf("%q is not a URL: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: want an http:// or https:// URL", s)
	case u.Host == "":
		return "", fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return "", fmt.Errorf("%q: put credentials in api_key_env, not in the URL", redactUserinfo(u))
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q: a base URL has no query or fragment", s)
	}
	p := strings.TrimRight(u.Path, "/")
	p = strings.TrimSuffix(p, "/v1")
	p = strings.TrimRight(p, "/")
	return u.Scheme + "://" + u.Host + p, nil
}

func redactUserinfo(u *url.URL) string {
	c := *u
	c.User = url.User("REDACTED")
	return c.String()
}

// parseDuration accepts a Go duration string ("30s", "1m30s") or a number of
// seconds; the result must be positive.
func parseDuration(v any) (time.Duration, error) {
	var d time.Duration
	switch x := v.(type) {
	case string:
		p, err := time.ParseDuration(x)
		if err != nil {
			return 0, fmt.Errorf(`want a duration such as "30s" or a number of seconds, got %q`, x)
		}
		d = p
	case float64:
		d = time.Duration(x * float64(time.Second))
	default:
		return 0, fmt.Errorf(`want a duration such as "30s" or a number of seconds, got %v`, v)
	}
	if d <= 0 {
		return 0, fmt.Errorf("must be positive, got %v", v)
	}
	return d, nil
}

// apiKey reads the upstream key named by o.APIKeyEnv ("" when none is
// configured). The error names the variable, never a value.
func (o options) apiKey() (string, error) {
	if o.APIKeyEnv == "" {
		return "", nil
	}
	v, ok := os.LookupEnv(o.APIKeyEnv)
	switch {
	case !ok:
		return "", sdk.InvalidRequestf("option api_key_env: environment variable %s is not set", o.APIKeyEnv)
	case strings.TrimSpace(v) == "":
		return "", sdk.InvalidRequestf("option api_key_env: environment variable %s is empty", o.APIKeyEnv)
	}
	return strings.TrimSpace(v), nil
}
