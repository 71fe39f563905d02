package main

import (
	"os"
	"syscall"
)

// datasync makes f's data durable as Pebble's write-ahead log does on
// Linux: fdatasync, without the metadata a plain fsync also flushes.
func datasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }

// tmpfsMagic is Linux's statfs type of tmpfs.
const tmpfsMagic = 0x01021994

// inMemory reports whether dir is on tmpfs.
func inMemory(dir string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(dir, &st) == nil && st.Type == tmpfsMagic
}
