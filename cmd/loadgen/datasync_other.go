//go:build !linux

package main

import "os"

// datasync makes f's data durable as Pebble does here: os.File.Sync
// (F_FULLFSYNC on macOS, which flushes the drive's cache too).
func datasync(f *os.File) error { return f.Sync() }

// inMemory reports whether dir is in memory: not known here.
func inMemory(string) bool { return false }
