package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const transportRule = "a transport (gateway/api, gateway/ws) imports no storage or domain package (store, rag, conversation, vectorstore, ingest, usage, db) and no other transport: it calls the chat core or a service, and cmd/ragway wires them"

func TestCheck(t *testing.T) {
	const (
		sdk     = "github.com/ragway/ragway/plugin-sdk"
		gw      = "github.com/ragway/ragway/gateway/config"
		llama   = "github.com/ragway/ragway/plugins/llamacpp"
		vllm    = "github.com/ragway/ragway/plugins/vllm-proxy"
		echo    = "github.com/ragway/ragway/plugin-sdk/examples/echo"
		sdkPB   = "github.com/ragway/ragway/plugin-sdk/internal/pb"
		sdktest = "github.com/ragway/ragway/plugin-sdk/sdktest"
	)
	tests := []struct {
		name string
		pkgs []Package
		want []string
	}{
		{
			name: "allowed imports",
			pkgs: []Package{
				{ImportPath: sdk, Imports: []string{"context", sdkPB, "github.com/hashicorp/go-plugin"}},
				{ImportPath: sdktest, Imports: []string{sdk}, XTestImports: []string{sdktest, echo}},
				{ImportPath: echo, Imports: []string{sdk, "log/slog"}},
				{ImportPath: llama, Imports: []string{sdk, llama + "/internal/batch", "github.com/hybridgroup/yzma"}, TestImports: []string{sdktest}},
				{ImportPath: llama + "/internal/batch", Imports: []string{"sync"}},
				// The gateway may import anything of its own.
				{ImportPath: "github.com/ragway/ragway/gateway/workers", Imports: []string{gw, sdk}},
				// A module whose path only starts with the same letters is not ours.
				{ImportPath: vllm, Imports: []string{"github.com/ragway/ragwayx/thing"}},
			},
		},
		{
			name: "plugin importing the gateway",
			pkgs: []Package{{ImportPath: llama, Imports: []string{sdk, gw}}},
			want: []string{llama + " imports " + gw + ": plugins may import only plugin-sdk (and their own packages) from this repository"},
		},
		{
			name: "plugin importing another plugin, in tests",
			pkgs: []Package{{ImportPath: vllm + "/upstream", XTestImports: []string{llama}}},
			want: []string{vllm + "/upstream imports (in tests) " + llama + ": plugins may import only plugin-sdk (and their own packages) from this repository"},
		},
		{
			name: "plugin importing the repository root package",
			pkgs: []Package{{ImportPath: llama, Imports: []string{"github.com/ragway/ragway"}}},
			want: []string{llama + " imports github.com/ragway/ragway: plugins may import only plugin-sdk (and their own packages) from this repository"},
		},
		{
			name: "sdk importing the gateway",
			pkgs: []Package{{ImportPath: sdktest, Imports: []string{sdk}, TestImports: []string{gw}}},
			want: []string{sdktest + " imports (in tests) " + gw + ": plugin-sdk may import nothing from the rest of the repository"},
		},
		{
			name: "example importing generated code",
			pkgs: []Package{{ImportPath: echo, Imports: []string{sdk, sdkPB}}},
			want: []string{echo + " imports " + sdkPB + ": plugin-sdk examples may import only the public plugin-sdk packages from this repository"},
		},
		{
			name: "the wire package importing a domain package",
			pkgs: []Package{
				{ImportPath: "github.com/ragway/ragway/gateway/oai", Imports: []string{sdk, "github.com/ragway/ragway/gateway/text"}},
				{ImportPath: "github.com/ragway/ragway/gateway/oai", Imports: []string{"github.com/ragway/ragway/gateway/store"}},
			},
			want: []string{"github.com/ragway/ragway/gateway/oai imports github.com/ragway/ragway/gateway/store: " +
				"the OpenAI wire package (gateway/oai) knows only the wire: it may import plugin-sdk and the leaf packages, no domain package"},
		},
		{
			name: "a transport importing storage, a domain package or another transport",
			pkgs: []Package{
				// The core, the wire, auth: allowed; tests may build the core over a store.
				{ImportPath: "github.com/ragway/ragway/gateway/ws", Imports: []string{sdk, "github.com/ragway/ragway/gateway/chat", "github.com/ragway/ragway/gateway/oai", "github.com/ragway/ragway/gateway/auth"},
					XTestImports: []string{"github.com/ragway/ragway/gateway/store", "github.com/ragway/ragway/gateway/conversation"}},
				{ImportPath: "github.com/ragway/ragway/gateway/api", Imports: []string{"github.com/ragway/ragway/gateway/store", "github.com/ragway/ragway/gateway/vectorstore/embedded", "github.com/ragway/ragway/gateway/ws", "github.com/ragway/ragway/db/models"}},
				// A package under a transport (its test helpers) is not one.
				{ImportPath: "github.com/ragway/ragway/gateway/api/apitest", Imports: []string{"github.com/ragway/ragway/gateway/store"}},
			},
			want: []string{
				"github.com/ragway/ragway/gateway/api imports github.com/ragway/ragway/db/models: " + transportRule,
				"github.com/ragway/ragway/gateway/api imports github.com/ragway/ragway/gateway/store: " + transportRule,
				"github.com/ragway/ragway/gateway/api imports github.com/ragway/ragway/gateway/vectorstore/embedded: " + transportRule,
				"github.com/ragway/ragway/gateway/api imports github.com/ragway/ragway/gateway/ws: " + transportRule,
			},
		},
		{
			name: "a leaf importing the gateway",
			pkgs: []Package{
				{ImportPath: "github.com/ragway/ragway/gateway/tokens", Imports: []string{sdk}},
				{ImportPath: "github.com/ragway/ragway/gateway/text", TestImports: []string{"github.com/ragway/ragway/gateway/conversation"}},
			},
			want: []string{"github.com/ragway/ragway/gateway/text imports (in tests) github.com/ragway/ragway/gateway/conversation: " +
				"the gateway's leaf packages (text, tokens) may import only the public plugin-sdk packages from this repository"},
		},
		{
			name: "duplicates reported once, sorted",
			pkgs: []Package{
				{ImportPath: vllm, Imports: []string{gw, "github.com/ragway/ragway/gateway/api"}, TestImports: []string{gw, "github.com/ragway/ragway/gateway/ws"}, XTestImports: []string{gw}},
				{ImportPath: llama, Imports: []string{gw}},
			},
			want: []string{
				llama + " imports " + gw + ": plugins may import only plugin-sdk (and their own packages) from this repository",
				vllm + " imports github.com/ragway/ragway/gateway/api: plugins may import only plugin-sdk (and their own packages) from this repository",
				vllm + " imports " + gw + ": plugins may import only plugin-sdk (and their own packages) from this repository",
				vllm + " imports (in tests) github.com/ragway/ragway/gateway/ws: plugins may import only plugin-sdk (and their own packages) from this repository",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range Check(tt.pkgs) {
				got = append(got, v.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Check() =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestRun runs the checker, `go list` included, over small repositories on disk.
func TestRun(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	tests := []struct {
		name     string
		files    map[string]string
		wantCode int
		wantErr  []string // substrings of stderr
	}{
		{
			name: "no plugins directory yet",
			files: map[string]string{
				"gateway/x/x.go": "package x\n\nimport _ \"github.com/ragway/ragway/plugin-sdk\"\n",
			},
			wantCode: 0,
		},
		{
			name: "good plugin",
			files: map[string]string{
				"plugins/good/main.go":        "package main\n\nimport (\n\t_ \"github.com/ragway/ragway/plugin-sdk\"\n\t_ \"github.com/ragway/ragway/plugins/good/inner\"\n)\n\nfunc main() {}\n",
				"plugins/good/inner/inner.go": "package inner\n",
			},
			wantCode: 0,
		},
		{
			name: "plugin importing the gateway",
			files: map[string]string{
				"gateway/x/x.go":      "package x\n",
				"plugins/bad/main.go": "package main\n\nimport _ \"github.com/ragway/ragway/gateway/x\"\n\nfunc main() {}\n",
			},
			wantCode: 1,
			wantErr:  []string{"github.com/ragway/ragway/plugins/bad imports github.com/ragway/ragway/gateway/x: plugins may import only plugin-sdk"},
		},
		{
			name: "sdk importing the gateway (in a test)",
			files: map[string]string{
				"gateway/x/x.go":          "package x\n",
				"plugin-sdk/sdk_test.go":  "package sdk_test\n\nimport _ \"github.com/ragway/ragway/gateway/x\"\n",
				"plugin-sdk/sdktest/k.go": "package sdktest\n",
			},
			wantCode: 1,
			wantErr:  []string{"github.com/ragway/ragway/plugin-sdk imports (in tests) github.com/ragway/ragway/gateway/x: plugin-sdk may import nothing"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			files := map[string]string{
				"go.mod": "module github.com/ragway/ragway\n\ngo 1.24\n\n" +
					"require github.com/ragway/ragway/plugin-sdk v0.0.0\n\n" +
					"replace github.com/ragway/ragway/plugin-sdk => ./plugin-sdk\n",
				"plugin-sdk/go.mod":  "module github.com/ragway/ragway/plugin-sdk\n\ngo 1.24\n",
				"plugin-sdk/sdk.go":  "package sdk\n",
				"tools/go.mod":       "module github.com/ragway/ragway/tools\n\ngo 1.24\n",
				"tools/bad/bad.go":   "package bad\n\nimport _ \"github.com/ragway/ragway/gateway/x\"\n",
				"testdata/x/go.mod":  "module ignored\n",
				"plugin-sdk/.hidden": "",
			}
			for k, v := range tt.files {
				files[k] = v
			}
			for name, content := range files {
				p := filepath.Join(root, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			code := run([]string{"-C", root}, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not contain %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestFindRoot(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "plugin-sdk", "examples")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "go.mod"), "// comment\nmodule github.com/ragway/ragway\n")
	write(filepath.Join(root, "plugin-sdk", "go.mod"), "module github.com/ragway/ragway/plugin-sdk\n")

	got, err := findRoot(sub)
	if err != nil || got != root {
		t.Errorf("findRoot(%s) = %q, %v; want %q", sub, got, err, root)
	}
	if _, err := findRoot(t.TempDir()); err == nil {
		t.Error("findRoot outside a repository succeeded")
	}
}
