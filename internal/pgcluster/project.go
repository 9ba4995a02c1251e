package pgcluster

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
)

// ProjectDatabase is the database of the project-local cluster that `task db:up`
// prints the URL of and `task run` serves from.
const ProjectDatabase = "ragway"

// modulePath is the module a checkout's go.mod declares.
const modulePath = "github.com/ragway/ragway"

// FindRoot returns the root of the ragway checkout a program belongs to: the one
// whose bin/ holds the executable exe (where `task build` puts it), else wd's, or
// that of wd's nearest parent that is a checkout (`go run` builds elsewhere). A
// checkout is a directory whose go.mod declares module github.com/ragway/ragway.
// ok is false when there is none.
func FindRoot(exe, wd string) (root string, ok bool) {
	if exe != "" {
		if r := filepath.Dir(filepath.Dir(exe)); filepath.Base(filepath.Dir(exe)) == "bin" && isCheckout(r) {
			return r, true
		}
	}
	if wd == "" {
		return "", false
	}
	for d := filepath.Clean(wd); ; d = filepath.Dir(d) {
		if isCheckout(d) {
			return d, true
		}
		if d == filepath.Dir(d) {
			return "", false
		}
	}
}

// isCheckout reports whether dir's go.mod declares the ragway module.
func isCheckout(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == modulePath
		}
	}
	return false
}
