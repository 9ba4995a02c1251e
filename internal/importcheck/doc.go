// Command importcheck enforces the repository's import rules (docs/architecture.md), the ones the
// Go toolchain cannot:
//
//   - plugin-sdk imports nothing from the rest of the repository: from
//     github.com/ragway/ragway/... it may import only github.com/ragway/ragway/plugin-sdk/...
//   - a plugin under plugins/NAME imports from this repository only plugin-sdk (and its own
//     packages under plugins/NAME), never gateway/ or another plugin;
//   - the plugin-sdk examples, which plugin authors copy, import only the public
//     plugin-sdk packages (not plugin-sdk/internal/...).
//
// Test imports count: a plugin's tests may not reach into the gateway either.
//
// It lists every package of every module in the repository (the root module, plugin-sdk and
// any other go.mod below the root, except tools/) with `go list -e -json` and exits with
// status 1, naming each offending package and import, if a rule is broken; with status 2
// if the packages could not be listed. Directories that do not exist yet (plugins/) are
// simply not checked.
//
// Usage, from the repository root (`task check` runs it); -C names the root otherwise:
//
//	go run ./internal/importcheck [-C repo-root]
//
// It checks imports only; formatting, vet and staticcheck are separate steps of `task check`.
package main
