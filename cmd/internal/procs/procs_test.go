package procs

import (
	"os"
	"runtime"
	"strconv"
	"testing"
)

// restore puts GOMAXPROCS back after a test that changes it.
func restore(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(before) })
}

// Cores is never above the CPUs the process may use, whatever GOMAXPROCS
// it started with.
func TestCores(t *testing.T) {
	saved := cores
	t.Cleanup(func() { cores = saved })
	for _, start := range []int{1, runtime.NumCPU(), runtime.NumCPU() + 5} {
		cores = start
		if got, want := Cores(), min(start, runtime.NumCPU()); got != want {
			t.Errorf("started with GOMAXPROCS %d on %d CPUs: Cores() = %d, want %d", start, runtime.NumCPU(), got, want)
		}
	}
}

func TestRaise(t *testing.T) {
	restore(t)
	t.Setenv("GOMAXPROCS", "") // t.Setenv restores the variable afterwards
	os.Unsetenv("GOMAXPROCS")
	runtime.GOMAXPROCS(1)
	want := Cores() + Extra
	if got := Raise(); got != want {
		t.Fatalf("Raise() = %d, want Cores()+Extra = %d", got, want)
	}
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Fatalf("GOMAXPROCS after Raise = %d, want %d", got, want)
	}
	// A second call leaves it where it is: Cores is what the process
	// started with, not what Raise set.
	if got := Raise(); got != want {
		t.Fatalf("second Raise() = %d, want %d", got, want)
	}
	// Values the runtime ignores do not stop Raise either.
	for _, v := range []string{"0", "-2", "abc"} {
		t.Setenv("GOMAXPROCS", v)
		runtime.GOMAXPROCS(1)
		if got := Raise(); got != want {
			t.Errorf("Raise() with GOMAXPROCS=%q = %d, want %d", v, got, want)
		}
	}
}

// The operator's GOMAXPROCS wins: Raise changes nothing.
func TestRaiseHonoursEnvironment(t *testing.T) {
	restore(t)
	n := Cores() + Extra + 1 // not what Raise would set
	t.Setenv("GOMAXPROCS", strconv.Itoa(n))
	runtime.GOMAXPROCS(n) // what the runtime read from the variable at start
	if got := Raise(); got != n {
		t.Fatalf("Raise() with GOMAXPROCS=%d in the environment = %d, want %d", n, got, n)
	}
	if got := runtime.GOMAXPROCS(0); got != n {
		t.Fatalf("GOMAXPROCS = %d after Raise, want %d (unchanged)", got, n)
	}
}
