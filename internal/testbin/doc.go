// Package testbin gives tests the project's binaries (ragway, ragway-echo, ragway-llamacpp):
// the ones `task build` wrote into $RAGWAY_BIN_DIR when it is set, otherwise
// built once per test process into a temporary directory. It is for tests
// only.
package testbin
