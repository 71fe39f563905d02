package bank

import (
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestParallelPanicIsAnError: a task's panic comes back as parallel's
// error instead of ending the process, on one worker or several.
func TestParallelPanicIsAnError(t *testing.T) {
	for _, procs := range []int{1, 4} {
		old := runtime.GOMAXPROCS(procs)
		err := parallel(64, func(i int) error {
			if i == 40 {
				panic("task 40")
			}
			return nil
		})
		runtime.GOMAXPROCS(old)
		if err == nil || !strings.Contains(err.Error(), "task 40") {
			t.Fatalf("GOMAXPROCS %d: %v, want the panic as an error", procs, err)
		}
	}
}

// TestParallelStopsAtAnError: after a task fails no further task starts
// (shown on one worker, where the order is fixed), and the error is the
// failed task's.
func TestParallelStopsAtAnError(t *testing.T) {
	old, oldStart := runtime.GOMAXPROCS(1), startProcs
	startProcs = 1
	defer func() { runtime.GOMAXPROCS(old); startProcs = oldStart }()
	var ran atomic.Int64
	bad := errors.New("task 3 failed")
	err := parallel(100, func(i int) error {
		ran.Add(1)
		if i == 3 {
			return bad
		}
		return nil
	})
	if !errors.Is(err, bad) || ran.Load() != 4 {
		t.Fatalf("%v after %d tasks; want task 3's error after 4", err, ran.Load())
	}
}

// TestParallelKeepsStartWorkers: with GOMAXPROCS lowered to one (a daemon
// all but idle, procs.Adapt), a request still gets as many workers as the
// process started with, to spread over the Ps once GOMAXPROCS is raised
// again. Two tasks must run at once: each waits for the other to start.
func TestParallelKeepsStartWorkers(t *testing.T) {
	old, oldStart := runtime.GOMAXPROCS(1), startProcs
	startProcs = 2
	defer func() { runtime.GOMAXPROCS(old); startProcs = oldStart }()
	var started [2]chan struct{}
	for i := range started {
		started[i] = make(chan struct{})
	}
	err := parallel(2, func(i int) error {
		close(started[i])
		select {
		case <-started[1-i]:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("the other task never started: one worker")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}
