package main

import (
	"os/exec"
	"syscall"
)

// interruptWithParent has Linux interrupt cmd if this process dies first
// (even by SIGKILL), so that the child still removes its directory, which
// holds gigabytes for the store-size target.
func interruptWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGINT}
}
