//go:build unix

package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

// runAs is the unprivileged user a server started by root runs as.
type runAs struct {
	uid, gid uint32
	name     string
}

// serverUser returns nil when the current user can run the server itself,
// and otherwise (as root, which initdb and postgres refuse) the "postgres"
// user, or "nobody".
func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			continue
		}
		return &runAs{uid: uint32(uid), gid: uint32(gid), name: name}, nil
	}
	return nil, fmt.Errorf("running as root, and neither a postgres nor a nobody user exists to run the server as")
}

// own hands dir to the server's user.
func (r *runAs) own(dir string) error {
	if r == nil {
		return nil
	}
	if err := os.Chown(dir, int(r.uid), int(r.gid)); err != nil {
		return fmt.Errorf("pgtest: chown %s to %s: %w", dir, r.name, err)
	}
	return nil
}

// apply makes cmd run as the server's user.
func (r *runAs) apply(cmd *exec.Cmd) {
	if r == nil {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: r.uid, Gid: r.gid}}
}

// processAlive reports whether a process with id pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// quit asks the postmaster pid for an immediate shutdown.
func quit(pid int) { syscall.Kill(pid, syscall.SIGQUIT) }
