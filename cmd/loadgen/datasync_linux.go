package main

import "syscall"

// datasync makes fd's data durable as Pebble's write-ahead log does on
// Linux: fdatasync, without the metadata a plain fsync also flushes.
func datasync(fd uintptr) error { return syscall.Fdatasync(int(fd)) }
