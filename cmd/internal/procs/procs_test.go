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

func TestCores(t *testing.T) {
	if c := Cores(); c < 1 || c > runtime.NumCPU() {
		t.Fatalf("Cores() = %d, want 1..NumCPU (%d)", c, runtime.NumCPU())
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
