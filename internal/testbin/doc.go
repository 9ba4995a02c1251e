// Package testbin gives tests the project's binaries (ragway and the plugins ragway-echo, ragway-llamacpp, ragway-vllm-proxy):
// the ones `task build` wrote into $RAGWAY_BIN_DIR when it is set, otherwise
// built once per test process into a temporary directory. It is for tests
// only.
package testbin
