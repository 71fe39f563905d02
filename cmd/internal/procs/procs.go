// Package procs sizes GOMAXPROCS for processes whose goroutines wait in
// fsync: bankd, merchantd and loadgen.
//
// A goroutine in a system call keeps its P, the runtime's licence to run Go
// code, until the runtime's monitor thread has seen it there twice and hands
// the P to another thread (see golang/go#29734). The monitor looks every
// 20 µs while it keeps finding Ps to hand off, and backs off to 10 ms after
// 50 looks that found none; a synced commit's fdatasync takes 0.3 to 1 ms on
// the disks measured here, so it mostly returns before it has been seen
// twice, and the monitor stays backed off. With GOMAXPROCS at the number of
// cores, each sync so idles a core while goroutines wait to run
// (docs/PERFORMANCE.md, "A core idle in every fsync").
//
// One P more than cores lets a thread wait in a sync while the cores run Go
// code: Pebble syncs each store's write-ahead log from one goroutine, one
// sync at a time. When no thread waits, the kernel shares the cores among
// the threads: CPU-bound work loses a little to switching, which the
// measurements include.
package procs

import (
	"os"
	"runtime"
	"strconv"
)

// Extra is how many Ps Raise adds to the cores. Two measured no better
// than one on payments, and cost CPU-bound issuing more.
const Extra = 1

// cores is GOMAXPROCS as the process started, before Raise.
var cores = runtime.GOMAXPROCS(0)

// Cores returns the number of cores the process may run on: GOMAXPROCS as
// the process started (by default the CPUs it may use, within any cgroup
// CPU limit rounded up; or the GOMAXPROCS environment variable), at most the
// CPUs it may use.
func Cores() int { return min(cores, runtime.NumCPU()) }

// Raise sets GOMAXPROCS to Cores()+Extra and returns the GOMAXPROCS in
// effect. A GOMAXPROCS environment variable is the operator's choice and
// wins: Raise then changes nothing. Setting GOMAXPROCS ends the runtime's
// own updates of it when a cgroup's CPU limit changes: restart the process
// after changing the limit.
func Raise() int {
	// The runtime ignores a value that is not a positive number, and so
	// does Raise.
	if n, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); err == nil && n > 0 {
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(Cores() + Extra)
	return runtime.GOMAXPROCS(0)
}
