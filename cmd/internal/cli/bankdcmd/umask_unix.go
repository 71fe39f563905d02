//go:build unix

package bankdcmd

import "syscall"

// makeFilesPrivate makes everything this process creates from now on
// readable by its owner only.
func makeFilesPrivate() error {
	syscall.Umask(0o077)
	return nil
}
