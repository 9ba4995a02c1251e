// Command ragway is the ragway gateway and its command-line tools.
//
//	ragway serve [-c FILE] [-log-level LEVEL]    run the gateway
//	ragway migrate up [-c FILE]                  apply the pending database migrations
//	ragway migrate status [-c FILE]              show which migrations the database has
//	ragway keys create --user NAME [--scopes chat,ingest,admin] [--name LABEL]
//	                   [--rpm N] [--tpm N] [--if-none] [-c FILE]
//	                                             make an API key (printed once, alone, on stdout)
//	ragway keys list [--user NAME] [-c FILE]     list API keys
//	ragway keys revoke PREFIX|KEY [-c FILE]      revoke an API key
//	ragway users quota --user NAME [--daily N] [--monthly N] [-c FILE]
//	                                             show a user's token quotas and usage,
//	                                             after setting those given
//	ragway ingest --kb NAME [--create] [--url URL] [--api-key KEY]
//	              [--concurrency N] PATH...
//	                                             upload files and directories through the HTTP API
//	ragway reindex --kb NAME|ID [--user NAME] [-c FILE]
//	                                             rebuild a knowledge base's vector index from Postgres
//	ragway models list|add|replace|scale|alias|remove|changes
//	                                             manage the models served, through the admin API
//	ragway reload                                re-read the gateway's config file (as SIGHUP)
//
// The database commands use database_url from the config file (-c) or
// RAGWAY_DATABASE_URL, else DATABASE_URL.
//
// main parses flags and the config, wires the packages and runs; nothing
// else lives here.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

const usageText = `ragway: a gateway for retrieval-augmented chat

Usage:
  ragway serve [-c FILE] [-log-level LEVEL]   run the gateway (no -c: embedded defaults)
  ragway migrate up [-c FILE]                 apply the pending database migrations
  ragway migrate status [-c FILE]             show each migration: applied (when) or pending
  ragway keys create --user NAME [--scopes chat,ingest,admin] [--name LABEL]
                     [--rpm N] [--tpm N] [--if-none] [-c FILE]
                                              make an API key for user NAME (created if
                                              needed); the key is printed once, alone, on
                                              stdout. Scopes default to chat; --rpm/--tpm
                                              limit requests/tokens per minute (0: none);
                                              --if-none does nothing if NAME has an active key
  ragway keys list [--user NAME] [-c FILE]    list API keys (every user's without --user)
  ragway keys revoke PREFIX|KEY [-c FILE]     revoke a key, named by its prefix (rgw_xxxxxxxx)
  ragway users quota --user NAME [--daily N] [--monthly N] [-c FILE]
                                              show a user's token quotas and usage today and
                                              this month, after setting those given (0: none);
                                              shared by every gateway; over one, 429
                                              quota_exceeded
  ragway users invite [--name NAME] [--admin] [-c FILE]
                                              make an invitation to sign up on the website
                                              (web.signup: invite); the code is printed once
  ragway users password --user NAME [--admin|--no-admin] [-c FILE]
                                              set a user's website password, read from
                                              stdin (the user is made if needed)
  ragway ingest --kb NAME [--create] [--url URL] [--api-key KEY]
                [--concurrency N] PATH...
                                              upload files and directories (recursively:
                                              .txt .md .html .pdf ...; hidden files skipped)
                                              to knowledge base NAME through the gateway's
                                              HTTP API, N at once (default 2), with a progress
                                              bar; --create makes NAME if missing. The URL
                                              and key default to RAGWAY_URL (else
                                              http://127.0.0.1:8080) and RAGWAY_API_KEY
  ragway reindex --kb NAME|ID [--user NAME] [-c FILE]
                                              rebuild a knowledge base's entries in the
                                              vector store (Qdrant) from the database; a
                                              name needs --user. The embedded store needs
                                              none: every gateway rebuilds it at start
  ragway models list                          the models, their source, state and replicas
  ragway models add FILE|-                    serve a models entry (YAML or JSON, as in the
                                              config file) on every gateway of the database
  ragway models replace NAME FILE|-           serve a new version: it starts beside the old
                                              one, which finishes its requests
  ragway models scale NAME REPLICAS           run that many replicas
  ragway models alias ALIAS MODEL             point ALIAS at MODEL at once (--remove ALIAS)
  ragway models remove NAME                   stop serving NAME once its requests finish
  ragway models changes [--limit N]           who changed which model, when, and the result
                                              (models commands: --url URL, --api-key KEY
                                              with the admin scope, or RAGWAY_URL and
                                              RAGWAY_API_KEY)
  ragway models pull URL|hf:ORG/REPO/FILE.gguf[@REVISION] [--sha256 HEX|none] [--dir DIR]
                                              download a GGUF file into models_dir (resumable;
                                              checked against the SHA-256 given or published;
                                              HF_ENDPOINT names a mirror, HF_TOKEN a token)
  ragway reload                               re-read the gateway's config file and serve
                                              its models as it says (as SIGHUP does)
  ragway eval --kb NAME --qa FILE             run a question file (JSON Lines: q, expect or
                                              docs, kind) through the gateway's search: recall@1,
                                              5, 10, MRR@10 and nDCG@10, per kind, and the misses
  ragway help                                 show this help

The migrate, keys and reindex commands use database_url from the config file (-c) or
RAGWAY_DATABASE_URL, else DATABASE_URL (task db:up starts a local Postgres and prints
its URL). Flags may be written -flag or --flag, before or after arguments; -c FILE
may also come before the command or its subcommand (ragway -c FILE keys list).
Every config key can also be set by environment: RAGWAY_LISTEN, RAGWAY_PLUGINS_DIR, ...
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ragway:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	err := dispatch(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // -h: the usage was printed
	}
	return err
}

func dispatch(args []string, stdout, stderr io.Writer) error {
	args, err := hoistGlobals(args)
	if err != nil {
		fmt.Fprint(stderr, usageText)
		return err
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return errors.New("missing command")
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "migrate":
		return migrate(args[1:], stdout, stderr)
	case "keys":
		return keys(args[1:], stdout, stderr)
	case "users":
		return users(args[1:], stdout, stderr)
	case "ingest":
		return ingestCmd(args[1:], stdout, stderr)
	case "reindex":
		return reindex(args[1:], stdout, stderr)
	case "models":
		return modelsCmd(args[1:], stdout, stderr)
	case "reload":
		return reloadCmd(args[1:], stdout, stderr)
	case "eval":
		return evalCmd(args[1:], stdout, stderr)
	case "ingest-extract":
		// Internal: the gateway runs PDF extraction in a child process (ingest.Isolated).
		return ingestExtract(args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	fmt.Fprint(stderr, usageText)
	return fmt.Errorf("unknown command %q", args[0])
}

// configCommands are the commands that take the global flag -c FILE, and of them
// those whose first argument is a subcommand.
var (
	configCommands = []string{"serve", "migrate", "keys", "users", "reindex"}
	subcommands    = []string{"migrate", "keys", "users"}
)

// hoistGlobals moves the global flag -c FILE (also --c, -c=FILE) from before the
// command, and from between the command and its subcommand, to after them, where
// the command's own flags are parsed:
//
//	ragway -c FILE migrate up, ragway migrate -c FILE up  =>  ragway migrate up -c FILE
//
// Flags after the subcommand come after the hoisted ones, so a later -c wins, as with
// any flag given twice. Any other flag in those positions is an error naming where it
// goes. "-h"/"--help" as the command is left to dispatch.
func hoistGlobals(args []string) ([]string, error) {
	globals, rest, err := leadingGlobals(args, "")
	if err != nil {
		return nil, err
	}
	if len(rest) == 0 {
		if len(globals) > 0 {
			return nil, errors.New("missing command after -c FILE")
		}
		return rest, nil
	}
	cmd := rest[0]
	head := []string{cmd}
	rest = rest[1:]
	if slices.Contains(subcommands, cmd) {
		more, after, err := leadingGlobals(rest, cmd)
		if err != nil {
			return nil, err
		}
		globals = append(globals, more...)
		if len(after) == 0 {
			return head, nil // subcommand reports the missing subcommand
		}
		head = append(head, after[0])
		rest = after[1:]
	}
	if len(globals) > 0 && !slices.Contains(configCommands, cmd) {
		if cmd == "help" || cmd == "-h" || cmd == "--help" || cmd == "-help" {
			return head, nil
		}
		return nil, fmt.Errorf("%s takes no config file: -c FILE is for %s", cmd, strings.Join(configCommands, ", "))
	}
	out := append(head, globals...)
	return append(out, rest...), nil
}

// leadingGlobals splits the -c flags args starts with from the rest; cmd is the
// command they follow ("" before the command), for the error that names a flag
// that cannot go there.
func leadingGlobals(args []string, cmd string) (globals, rest []string, err error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && len(args[0]) > 1 {
		a := args[0]
		name, _, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		switch {
		case name == "c" && hasValue:
			globals = append(globals, a)
			args = args[1:]
		case name == "c":
			if len(args) < 2 {
				return nil, nil, errors.New("flag needs an argument: -c (the config file)")
			}
			globals = append(globals, a, args[1])
			args = args[2:]
		case a == "-h" || a == "--help" || a == "-help":
			return globals, args, nil // dispatch prints the help, subcommand the usage
		case cmd == "":
			return nil, nil, fmt.Errorf("flag %s before the command: only -c FILE may come before it; a command's own flags go after its name (ragway serve %s ...)", a, a)
		default:
			return nil, nil, fmt.Errorf("%s: flag %s before the subcommand: only -c FILE may come before it; the subcommand's flags go after it (ragway %s SUBCOMMAND %s ...)", cmd, a, cmd, a)
		}
	}
	return globals, args, nil
}

// subcommand returns the subcommand args start with, one of names; it prints the
// usage and fails if there is none or another.
func subcommand(cmd string, args []string, stderr io.Writer, names ...string) (string, error) {
	want := strings.Join(names, ", ")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, usageText)
		return "", fmt.Errorf("%s: missing subcommand (%s)", cmd, want)
	}
	for _, n := range names {
		if args[0] == n {
			return n, nil
		}
	}
	fmt.Fprint(stderr, usageText)
	return "", fmt.Errorf("%s: unknown subcommand %q (want %s)", cmd, args[0], want)
}

// command is one subcommand's flags and how to print its usage.
type command struct {
	name  string // "keys create"
	synop string // its arguments, for the usage line
	fs    *flag.FlagSet
}

func newCommand(name, synop string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are returned; parse prints the usage
	fs.Usage = func() {}
	return &command{name: name, synop: synop, fs: fs}
}

func (c *command) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: ragway %s %s\n", c.name, c.synop)
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

// parse parses args, flags and positional arguments in any order ("--" ends the
// flags), and returns the positional ones. -h prints the usage on stdout and returns
// flag.ErrHelp; a bad flag prints it on stderr.
func (c *command) parse(args []string, stdout, stderr io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printUsage(stdout)
				return nil, err
			}
			c.printUsage(stderr)
			return nil, fmt.Errorf("%s: %w", c.name, err)
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseFlags is parse for a command that takes flags only.
func (c *command) parseFlags(args []string, stdout, stderr io.Writer) error {
	pos, err := c.parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	return c.wantArgs(pos, 0, stderr)
}

// wantArgs checks the number of positional arguments.
func (c *command) wantArgs(pos []string, n int, stderr io.Writer) error {
	switch {
	case len(pos) > n:
		c.printUsage(stderr)
		return fmt.Errorf("%s: unexpected argument %q", c.name, pos[n])
	case len(pos) < n:
		c.printUsage(stderr)
		return fmt.Errorf("%s: missing argument (%s)", c.name, c.synop)
	}
	return nil
}

// required trims the value of the string flag name in place and refuses it empty.
func (c *command) required(name string, v *string, stderr io.Writer) error {
	*v = strings.TrimSpace(*v)
	if *v == "" {
		c.printUsage(stderr)
		return fmt.Errorf("%s: --%s is required", c.name, name)
	}
	return nil
}

// formatTime formats t for tables, in local time ("-" for the zero time).
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
