//go:build unix

package bank

import (
	"os"
	"syscall"
)

// tryLockFile takes f's exclusive advisory lock without waiting.
func tryLockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
