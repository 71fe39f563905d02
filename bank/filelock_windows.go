//go:build windows

package bank

import (
	"os"

	"golang.org/x/sys/windows"
)

// tryLockFile takes f's exclusive lock without waiting. On Windows the
// lock is mandatory for other handles, which the signer never opens:
// it writes through the handle it locked.
func tryLockFile(f *os.File) error {
	var ol windows.Overlapped
	return windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
}
