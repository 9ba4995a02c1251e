package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

const (
	rootModule = "github.com/ragway/ragway"
	sdkModule  = rootModule + "/plugin-sdk"
	sdkPrefix  = sdkModule + "/"
	sdkInt     = sdkModule + "/internal"
	sdkExamp   = sdkModule + "/examples"
	pluginsDir = rootModule + "/plugins"
	gatewayDir = rootModule + "/gateway"
	wirePkg    = gatewayDir + "/oai"
)

// transports are the gateway's transports: they translate their wire to the chat core
// and the services, and import no storage or domain package, nor each other.
var transports = []string{gatewayDir + "/api", gatewayDir + "/ws"}

// domain are the storage and domain packages (with their subpackages) a transport may
// not import: it calls the chat core or a service instead.
var domain = []string{
	gatewayDir + "/store", gatewayDir + "/rag", gatewayDir + "/conversation", gatewayDir + "/vectorstore",
	gatewayDir + "/ingest", gatewayDir + "/usage", rootModule + "/db",
}

// leaves are the gateway's leaf packages: they import nothing of the gateway, so
// that any package may use them without depending on storage or the domain.
var leaves = []string{gatewayDir + "/text", gatewayDir + "/tokens"}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its exit status returned: 0 clean, 1 violations, 2 could not check.
func run(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("importcheck", flag.ContinueOnError)
	fl.SetOutput(stderr)
	root := fl.String("C", "", "repository root (default: found from the working directory)")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() > 0 {
		fmt.Fprintf(stderr, "importcheck: unexpected arguments %q\n", fl.Args())
		return 2
	}
	if *root == "" {
		wd, err := os.Getwd()
		if err == nil {
			*root, err = findRoot(wd)
		}
		if err != nil {
			fmt.Fprintln(stderr, "importcheck:", err)
			return 2
		}
	}

	modules, err := findModules(*root)
	if err != nil {
		fmt.Fprintln(stderr, "importcheck:", err)
		return 2
	}
	var pkgs []Package
	for _, dir := range modules {
		p, err := listPackages(dir)
		if err != nil {
			fmt.Fprintln(stderr, "importcheck:", err)
			return 2
		}
		pkgs = append(pkgs, p...)
	}

	violations := Check(pkgs)
	for _, v := range violations {
		fmt.Fprintln(stderr, "importcheck:", v)
	}
	if len(violations) > 0 {
		fmt.Fprintf(stderr, "importcheck: %d forbidden import(s); see docs/architecture.md (Import rules)\n", len(violations))
		return 1
	}
	fmt.Fprintf(stdout, "importcheck: %d packages in %d modules follow the import rules\n", len(pkgs), len(modules))
	return 0
}

// Package is the part of `go list -json` output the rules need.
type Package struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

// Violation is one forbidden import.
type Violation struct {
	Package string // importing package
	Import  string // forbidden import path
	Test    bool   // imported by the package's tests only
	Rule    string // the rule broken
}

func (v Violation) String() string {
	what := "imports"
	if v.Test {
		what = "imports (in tests)"
	}
	return fmt.Sprintf("%s %s %s: %s", v.Package, what, v.Import, v.Rule)
}

// Check applies the import rules to pkgs and returns the violations, sorted.
func Check(pkgs []Package) []Violation {
	var out []Violation
	for _, p := range pkgs {
		allowed, rule, codeOnly := ruleFor(p.ImportPath)
		if allowed == nil {
			continue
		}
		check := func(imports []string, test bool) {
			for _, imp := range imports {
				if ownRepo(imp) && !allowed(imp) {
					out = append(out, Violation{Package: p.ImportPath, Import: imp, Test: test, Rule: rule})
				}
			}
		}
		check(p.Imports, false)
		if !codeOnly {
			check(p.TestImports, true)
			check(p.XTestImports, true)
		}
	}
	// Sorted by package, non-test imports first, then import path; an import made by the
	// package itself is not repeated for its tests.
	slices.SortFunc(out, func(a, b Violation) int {
		return cmp.Or(
			strings.Compare(a.Package, b.Package),
			cmp.Compare(btoi(a.Test), btoi(b.Test)),
			strings.Compare(a.Import, b.Import),
		)
	})
	out = slices.Compact(out)
	return slices.DeleteFunc(out, func(v Violation) bool {
		return v.Test && slices.Contains(out, Violation{Package: v.Package, Import: v.Import, Rule: v.Rule})
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ruleFor returns which of this repository's packages pkg may import, and the rule's
// wording; nil if pkg is not restricted. codeOnly rules leave the package's tests
// free (a transport's tests build the core over a real store).
func ruleFor(pkg string) (allowed func(string) bool, rule string, codeOnly bool) {
	switch {
	case slices.Contains(transports, pkg):
		return func(imp string) bool {
				return !slices.Contains(transports, imp) && !slices.ContainsFunc(domain, func(d string) bool { return within(imp, d) })
			},
			"a transport (gateway/api, gateway/ws) imports no storage or domain package (store, rag, conversation, vectorstore, ingest, usage, db) and no other transport: it calls the chat core or a service, and cmd/ragway wires them",
			true
	case within(pkg, sdkExamp):
		return func(imp string) bool { return within(imp, sdkModule) && !within(imp, sdkInt) },
			"plugin-sdk examples may import only the public plugin-sdk packages from this repository", false
	case within(pkg, sdkModule):
		return func(imp string) bool { return within(imp, sdkModule) },
			"plugin-sdk may import nothing from the rest of the repository", false
	case slices.Contains(leaves, pkg):
		return func(imp string) bool { return within(imp, sdkModule) && !within(imp, sdkInt) },
			"the gateway's leaf packages (text, tokens) may import only the public plugin-sdk packages from this repository", false
	case pkg == wirePkg:
		return func(imp string) bool {
				return within(imp, sdkModule) && !within(imp, sdkInt) || slices.Contains(leaves, imp)
			},
			"the OpenAI wire package (gateway/oai) knows only the wire: it may import plugin-sdk and the leaf packages, no domain package", false
	case within(pkg, pluginsDir) && pkg != pluginsDir:
		// plugins/NAME/... may also import its own packages.
		name, _, _ := strings.Cut(strings.TrimPrefix(pkg, pluginsDir+"/"), "/")
		own := pluginsDir + "/" + name
		return func(imp string) bool { return within(imp, sdkModule) || within(imp, own) },
			"plugins may import only plugin-sdk (and their own packages) from this repository", false
	}
	return nil, "", false
}

// ownRepo reports whether imp is a package of this repository.
func ownRepo(imp string) bool { return within(imp, rootModule) }

// within reports whether pkg is dir or below it.
func within(pkg, dir string) bool {
	return pkg == dir || strings.HasPrefix(pkg, dir+"/")
}

// findRoot walks up from dir to the directory whose go.mod declares the root module.
func findRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if modulePath(filepath.Join(d, "go.mod")) == rootModule {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod for module %s in %s or above; run inside the repository or pass -C", rootModule, dir)
		}
	}
}

// modulePath reads the module line of a go.mod file ("" if there is none).
func modulePath(gomod string) string {
	data, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module"); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// findModules returns the directories of the repository's Go modules: root and every
// directory below it with a go.mod, except the pinned-tools module and directories the go
// command ignores (testdata, names starting with "." or "_").
func findModules(root string) ([]string, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if path == filepath.Join(root, "tools") {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Name() == "go.mod" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find modules under %s: %w", root, err)
	}
	if !slices.Contains(dirs, root) {
		return nil, fmt.Errorf("%s has no go.mod", root)
	}
	return dirs, nil
}

// listPackages runs `go list -e -json ./...` in a module directory. Packages that do not
// build are listed too (-e): their imports are still known, and reporting build errors is
// the compiler's job.
func listPackages(dir string) ([]Package, error) {
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,TestImports,XTestImports", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list in %s: %w\n%s", dir, err, strings.TrimSpace(stderr.String()))
	}
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("go list in %s: decode output: %w", dir, err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, nil
}
