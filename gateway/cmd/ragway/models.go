package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"
)

// modelsCmd runs `ragway models list|add|replace|remove|scale|alias|changes` through
// the admin API.
func modelsCmd(args []string, stdout, stderr io.Writer) error {
	sub, err := subcommand("models", args, stderr, "list", "add", "replace", "remove", "scale", "alias", "changes", "pull")
	if err != nil {
		return err
	}
	if sub == "pull" {
		return modelsPull(args[1:], stdout, stderr)
	}
	usage := map[string]string{
		"list":    "",
		"add":     "FILE|-",
		"replace": "NAME FILE|-",
		"remove":  "NAME",
		"scale":   "NAME REPLICAS",
		"alias":   "ALIAS MODEL | --remove ALIAS",
		"changes": "[--limit N]",
	}[sub]
	c := newCommand("models "+sub, usage+" [--url URL] [--api-key KEY]")
	gwURL := c.fs.String("url", "", "the gateway's URL (default $RAGWAY_URL, else "+defaultURL+")")
	apiKey := c.fs.String("api-key", "", "an API key with the admin scope (default $RAGWAY_API_KEY)")
	limit := c.fs.Int("limit", 20, "changes: how many, newest first (1 to 1000)")
	remove := c.fs.Bool("remove", false, "alias: remove the alias")
	pos, err := c.parse(args[1:], stdout, stderr)
	if err != nil {
		return err
	}
	want := map[string]int{"list": 0, "add": 1, "replace": 2, "remove": 1, "scale": 2, "alias": 2, "changes": 0}[sub]
	if sub == "alias" && *remove {
		want = 1
	}
	if err := c.wantArgs(pos, want, stderr); err != nil {
		return err
	}
	cl, err := newAdminClient(*gwURL, *apiKey, "models "+sub, "admin")
	if err != nil {
		return fmt.Errorf("models %s: %w", sub, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fail := func(err error) error { return fmt.Errorf("models %s: %w", sub, err) }
	switch sub {
	case "list":
		var out adminModels
		if err := cl.do(ctx, http.MethodGet, "/admin/models", nil, &out); err != nil {
			return fail(err)
		}
		printModels(stdout, out)
	case "add", "replace":
		file := pos[len(pos)-1]
		entry, err := readEntry(file)
		if err != nil {
			return fail(err)
		}
		var m adminModel
		if sub == "add" {
			err = cl.do(ctx, http.MethodPost, "/admin/models", entry, &m)
		} else {
			err = cl.do(ctx, http.MethodPost, "/admin/models/"+url.PathEscape(pos[0])+"/replace", entry, &m)
		}
		if err != nil {
			return fail(err)
		}
		printModels(stdout, adminModels{Data: []adminModel{m}})
	case "remove":
		if err := cl.do(ctx, http.MethodDelete, "/admin/models/"+url.PathEscape(pos[0]), nil, nil); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "model %s removed: new requests for it are refused; the ones it has finish\n", pos[0])
	case "scale":
		n, err := strconv.Atoi(pos[1])
		if err != nil || n < 1 {
			return fail(fmt.Errorf("REPLICAS must be a whole number >= 1, got %q", pos[1]))
		}
		var m adminModel
		body, _ := json.Marshal(map[string]int{"replicas": n})
		if err := cl.do(ctx, http.MethodPost, "/admin/models/"+url.PathEscape(pos[0])+"/scale", body, &m); err != nil {
			return fail(err)
		}
		printModels(stdout, adminModels{Data: []adminModel{m}})
	case "alias":
		if *remove {
			if err := cl.do(ctx, http.MethodDelete, "/admin/aliases/"+url.PathEscape(pos[0]), nil, nil); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "alias %s removed\n", pos[0])
			return nil
		}
		body, _ := json.Marshal(map[string]string{"model": pos[1]})
		if err := cl.do(ctx, http.MethodPut, "/admin/aliases/"+url.PathEscape(pos[0]), body, nil); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "alias %s now names model %s\n", pos[0], pos[1])
	case "changes":
		if *limit < 1 || *limit > 1000 {
			return fail(errors.New("--limit must be from 1 to 1000"))
		}
		var out struct {
			Data []struct {
				At, Actor, Gateway, Action, Model, Error string
				OK                                       bool
			} `json:"data"`
		}
		if err := cl.do(ctx, http.MethodGet, "/admin/models/changes?limit="+strconv.Itoa(*limit), nil, &out); err != nil {
			return fail(err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "WHEN\tWHO\tACTION\tMODEL\tRESULT\tGATEWAY")
		for _, ch := range out.Data {
			result := "ok"
			if !ch.OK {
				result = "failed: " + printable(truncate(ch.Error, 120))
			}
			at, _ := time.Parse(time.RFC3339Nano, ch.At)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", at.Local().Format("2006-01-02 15:04:05"), printable(ch.Actor), ch.Action,
				printable(ch.Model), result, printable(ch.Gateway))
		}
		tw.Flush()
	}
	return nil
}

// reloadCmd runs `ragway reload`: the gateway reads its config file again and serves
// its models as the file now says (as SIGHUP does).
func reloadCmd(args []string, stdout, stderr io.Writer) error {
	c := newCommand("reload", "[--url URL] [--api-key KEY]")
	gwURL := c.fs.String("url", "", "the gateway's URL (default $RAGWAY_URL, else "+defaultURL+")")
	apiKey := c.fs.String("api-key", "", "an API key with the admin scope (default $RAGWAY_API_KEY)")
	if err := c.parseFlags(args, stdout, stderr); err != nil {
		return err
	}
	cl, err := newAdminClient(*gwURL, *apiKey, "reload", "admin")
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	var rep struct{ Added, Changed, Removed, Unchanged []string }
	if err := cl.do(context.Background(), http.MethodPost, "/admin/reload", nil, &rep); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	list := func(s []string) string {
		if len(s) == 0 {
			return "none"
		}
		return strings.Join(s, ", ")
	}
	fmt.Fprintf(stdout, "added: %s\nchanged: %s\nremoved: %s\nunchanged: %s\n", list(rep.Added), list(rep.Changed), list(rep.Removed), list(rep.Unchanged))
	return nil
}

type adminReplica struct {
	ID          int    `json:"id"`
	State       string `json:"state"`
	Pid         int    `json:"pid"`
	Restarts    int    `json:"restarts"`
	Outstanding int    `json:"outstanding"`
	LastError   string `json:"last_error"`
}

type adminModel struct {
	Name     string         `json:"name"`
	Aliases  []string       `json:"aliases"`
	Backend  string         `json:"backend"`
	Source   string         `json:"source"`
	State    string         `json:"state"`
	Queued   int            `json:"queued"`
	Replicas []adminReplica `json:"replicas"`
}

type adminModels struct {
	Data     []adminModel `json:"data"`
	Draining []adminModel `json:"draining"`
}

// printModels writes the state table a person reads: one line per model, one per
// replica under it.
func printModels(w io.Writer, ms adminModels) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tSOURCE\tBACKEND\tSTATE\tREADY\tQUEUED/IN FLIGHT\tALIASES")
	row := func(m adminModel, source string) {
		ready := 0
		for _, r := range m.Replicas {
			if r.State == "ready" || r.State == "busy" {
				ready++
			}
		}
		aliases := strings.Join(m.Aliases, ",")
		if aliases == "" {
			aliases = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\n", printable(m.Name), source, printable(m.Backend), m.State, ready, len(m.Replicas), m.Queued, printable(aliases))
		for _, r := range m.Replicas {
			pid := "-"
			if r.Pid > 0 {
				pid = strconv.Itoa(r.Pid)
			}
			lastErr := ""
			if r.LastError != "" {
				lastErr = "last error: " + printable(truncate(r.LastError, 160))
			}
			fmt.Fprintf(tw, "  replica %d\tpid %s\trestarts %d\t%s\t\t%d\t%s\n", r.ID, pid, r.Restarts, r.State, r.Outstanding, lastErr)
		}
	}
	for _, m := range ms.Data {
		row(m, m.Source)
	}
	for _, m := range ms.Draining {
		row(m, "(old version)")
	}
	tw.Flush()
}

// readEntry reads a models entry, YAML (as in the config file) or JSON, from a file
// or stdin ("-"), and returns it as JSON.
func readEntry(file string) ([]byte, error) {
	const most = 1 << 20 // an entry is a few lines
	in := io.Reader(os.Stdin)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		in = f
	}
	data, err := io.ReadAll(io.LimitReader(in, most+1))
	if err != nil {
		return nil, err
	}
	if len(data) > most {
		return nil, fmt.Errorf("%s: more than %d bytes: not a models entry", file, most)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("%s: not a YAML or JSON models entry: %w", file, err)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, fmt.Errorf("%s: a models entry is a mapping (name: …, backend: …)", file)
	}
	return json.Marshal(v)
}

// adminClient calls the gateway's API and decodes JSON answers (the models, reload
// and eval commands).
type adminClient struct{ api *apiClient }

// newAdminClient returns a client of the gateway --url (else RAGWAY_URL) names, with
// the key --api-key (else RAGWAY_API_KEY) gives, for command cmd, whose calls need
// scope needs.
func newAdminClient(flagURL, flagKey, cmd, needs string) (*adminClient, error) {
	base, err := gatewayURL(flagURL, os.Getenv("RAGWAY_URL"))
	if err != nil {
		return nil, err
	}
	key := flagKey
	if key == "" {
		key = os.Getenv("RAGWAY_API_KEY")
	}
	if key == "" {
		return nil, fmt.Errorf("no API key was given: set RAGWAY_API_KEY or --api-key (a key with the %s scope)", needs)
	}
	return &adminClient{api: &apiClient{base: base, key: key, cmd: cmd, needs: needs, http: &http.Client{}}}, nil
}

// do sends a request and decodes a 2xx answer into out (when not nil); an error
// answer is returned as the API's message.
func (c *adminClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	var (
		rd          io.Reader
		contentType string
	)
	if body != nil {
		rd, contentType = bytes.NewReader(body), "application/json"
	}
	status, ae, data, err := c.api.do(ctx, method, path, contentType, rd, int64(len(body)))
	switch {
	case err != nil:
		return err
	case status >= 300:
		return errors.New(ae.Error.Message)
	case out != nil:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("the gateway's answer is not what this ragway expects: %w", err)
		}
	}
	return nil
}
