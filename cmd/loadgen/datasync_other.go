//go:build !linux

package main

import "syscall"

// datasync makes fd's data durable: fsync, where there is no fdatasync.
func datasync(fd uintptr) error { return syscall.Fsync(int(fd)) }
