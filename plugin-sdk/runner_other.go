//go:build !linux

package sdk

import "os/exec"

func setParentDeathSignal(*exec.Cmd) {}
