//go:build !linux

package main

import "os/exec"

// interruptWithParent: only Linux can have a child signalled when its
// parent dies.
func interruptWithParent(*exec.Cmd) {}
