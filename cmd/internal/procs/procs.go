// Package procs sizes GOMAXPROCS for processes whose goroutines wait in
// fsync: bankd, merchantd and loadgen.
//
// A goroutine in a system call keeps its P, the runtime's licence to run Go
// code, until the runtime's monitor thread notices and hands the P to
// another thread. The monitor looks every 20 µs to 10 ms, the longer the
// quieter it has been (golang/go#29734), and a synced commit's fdatasync
// takes 0.5 to 1 ms on the disks measured here: often it returns before
// the monitor has looked. With GOMAXPROCS at the number of cores, each sync
// so idles a core while goroutines wait to run (docs/PERFORMANCE.md, "A core
// idle in every fsync").
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
)

// Extra is how many Ps Raise adds to the cores. Two measured no better
// than one on payments, and cost CPU-bound issuing more.
const Extra = 1

// cores is GOMAXPROCS as the process started, before Raise.
var cores = runtime.GOMAXPROCS(0)

// Cores returns the number of cores the process may run on: GOMAXPROCS as
// the process started (by default the CPUs it may use, within any cgroup
// CPU limit; or the GOMAXPROCS environment variable), at most the CPUs it
// may use.
func Cores() int { return min(cores, runtime.NumCPU()) }

// Raise sets GOMAXPROCS to Cores()+Extra and returns the GOMAXPROCS in
// effect. A GOMAXPROCS environment variable is the operator's choice and
// wins: Raise then changes nothing. Setting GOMAXPROCS ends the runtime's
// own updates of it when a cgroup's CPU limit changes: restart the process
// after changing the limit.
func Raise() int {
	if os.Getenv("GOMAXPROCS") != "" {
		return runtime.GOMAXPROCS(0)
	}
	runtime.GOMAXPROCS(Cores() + Extra)
	return runtime.GOMAXPROCS(0)
}
