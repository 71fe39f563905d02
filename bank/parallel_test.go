package bank

import (
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
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
	old := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(old)
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
