package procs

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// feed gives a governor ticks at a steady share of a core; run returns the
// GOMAXPROCS after each.
type feed struct {
	g   *governor
	now time.Time
	cpu time.Duration
}

func (f *feed) run(ticks int, share float64) []int {
	var got []int
	for range ticks {
		f.now = f.now.Add(tick)
		f.cpu += time.Duration(share * float64(tick))
		n, _ := f.g.step(f.now, f.cpu)
		got = append(got, n)
	}
	return got
}

func newFeed() *feed {
	t0 := time.Unix(1e9, 0)
	return &feed{g: newGovernor(1, 3, t0, 5*time.Second), now: t0, cpu: 5 * time.Second}
}

func TestGovernorLowersAfterAQuietSecond(t *testing.T) {
	f := newFeed()
	perSettle := int(settle / tick)
	got := f.run(perSettle-1, 0.1)
	for i, n := range got {
		if n != 3 {
			t.Fatalf("tick %d of the first quiet second: GOMAXPROCS %d, want 3 (no lowering before a whole second)", i, n)
		}
	}
	if got := f.run(1, 0.1); got[0] != 1 {
		t.Fatalf("after a second at 0.1 of a core: GOMAXPROCS %d, want 1", got[0])
	}
}

func TestGovernorKeepsBusyProcessHigh(t *testing.T) {
	f := newFeed()
	// Between the thresholds, and far above: never lowered.
	for _, share := range []float64{lowerBelow + 0.01, 0.45, 1.9} {
		for i, n := range f.run(3*int(settle/tick), share) {
			if n != 3 {
				t.Fatalf("at %.2f of a core, tick %d: GOMAXPROCS %d, want 3", share, i, n)
			}
		}
	}
}

func TestGovernorRaisesWithinATick(t *testing.T) {
	f := newFeed()
	f.run(int(settle/tick), 0.05)
	if f.g.n != 1 {
		t.Fatalf("idle: GOMAXPROCS %d, want 1", f.g.n)
	}
	// Between the thresholds on one P: stays low (no flapping).
	for i, n := range f.run(3*int(settle/tick), 0.45) {
		if n != 1 {
			t.Fatalf("at 0.45 of a core on one P, tick %d: GOMAXPROCS %d, want 1", i, n)
		}
	}
	f.now = f.now.Add(tick)
	f.cpu += time.Duration(0.9 * float64(tick))
	n, changed := f.g.step(f.now, f.cpu)
	if n != 3 || !changed {
		t.Fatalf("a tick at 0.9 of a core: GOMAXPROCS %d (changed %v), want 3 (changed)", n, changed)
	}
	// Raised, it waits a whole second again before lowering, however
	// quiet that second is.
	got := f.run(int(settle/tick)-1, 0)
	for i, n := range got {
		if n != 3 {
			t.Fatalf("tick %d after the raise: GOMAXPROCS %d, want 3", i, n)
		}
	}
	if got := f.run(1, 0); got[0] != 1 {
		t.Fatalf("a quiet second after the raise: GOMAXPROCS %d, want 1", got[0])
	}
}

// A clock that does not move (or a CPU time that goes back) raises nothing
// and does not panic.
func TestGovernorOddSamples(t *testing.T) {
	f := newFeed()
	f.run(int(settle/tick), 0)
	if n, changed := f.g.step(f.now, f.cpu+time.Second); n != 1 || changed {
		t.Fatalf("a sample at the same instant: GOMAXPROCS %d (changed %v), want 1 unchanged", n, changed)
	}
	if n, _ := f.g.step(f.now.Add(tick), f.cpu-time.Second); n != 1 {
		t.Fatalf("CPU time going back: GOMAXPROCS %d, want 1", n)
	}
}

// Adapt on the real process: idle, it drops to one P; busy, it raises
// GOMAXPROCS back; stopped, it leaves Cores()+Extra.
func TestAdapt(t *testing.T) {
	if Cores() < 2 {
		t.Skip("Adapt does nothing on one core")
	}
	restore(t)
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	high := Cores() + Extra
	stop := Adapt()
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	waitFor := func(what string, want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for runtime.GOMAXPROCS(0) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GOMAXPROCS still %d after 20 s, want %d", what, runtime.GOMAXPROCS(0), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("idle", 1)
	was := OnOneP()
	time.Sleep(4 * tick)
	if OnOneP() <= was {
		t.Errorf("on one P for 4 ticks: OnOneP went from %v to %v", was, OnOneP())
	}

	var quit atomic.Bool
	spun := make(chan struct{})
	for range 2 {
		go func() {
			defer func() { spun <- struct{}{} }()
			for !quit.Load() {
			}
		}()
	}
	waitFor("two goroutines spinning", high)
	quit.Store(true)
	<-spun
	<-spun

	waitFor("idle again", 1)
	stop()
	stopped = true
	if got := runtime.GOMAXPROCS(0); got != high {
		t.Fatalf("after stop: GOMAXPROCS %d, want Cores()+Extra = %d", got, high)
	}
}

// The operator's GOMAXPROCS wins: Adapt changes nothing.
func TestAdaptHonoursEnvironment(t *testing.T) {
	restore(t)
	t.Setenv("GOMAXPROCS", "2")
	runtime.GOMAXPROCS(2)
	stop := Adapt()
	time.Sleep(settle + 4*tick)
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("with GOMAXPROCS=2 in the environment, an idle second later: GOMAXPROCS %d, want 2", got)
	}
	stop()
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("after stop: GOMAXPROCS %d, want 2", got)
	}
}

// Two callers share one governor: the first stop leaves it running, the
// second ends it, and a stop called twice counts once.
func TestAdaptShared(t *testing.T) {
	if Cores() < 2 {
		t.Skip("Adapt does nothing on one core")
	}
	restore(t)
	t.Setenv("GOMAXPROCS", "")
	os.Unsetenv("GOMAXPROCS")
	stop1, stop2 := Adapt(), Adapt()
	stop1()
	stop1()
	adapting.Lock()
	users := adapting.users
	adapting.Unlock()
	if users != 1 {
		t.Fatalf("after one of two stops (called twice): %d users, want 1", users)
	}
	deadline := time.Now().Add(20 * time.Second)
	for runtime.GOMAXPROCS(0) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("idle with one user left: GOMAXPROCS still %d after 20 s, want 1", runtime.GOMAXPROCS(0))
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop2()
	if got, want := runtime.GOMAXPROCS(0), Cores()+Extra; got != want {
		t.Fatalf("after the last stop: GOMAXPROCS %d, want %d", got, want)
	}
}
