package procs

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Adapt lets GOMAXPROCS follow the load.
//
// Raise's P above the cores serves a busy process. A process that is all
// but idle, serving one payment at a time, pays for its spare Ps instead: a
// goroutine made runnable while a P is idle wakes another thread to run it,
// and a thread that finds nothing to do spins before it sleeps, so each
// hand-off between goroutines crosses threads. On the reference machine a
// lone payment (bank, merchant and wallet in one process) took 2.2-2.4 ms of
// CPU on one P against 2.4-3.2 ms on three, and its median latency was
// 2.4-2.6 ms against 2.8-3.4 (docs/PERFORMANCE.md, "One P while idle").
//
// So the process runs on one P while it uses less than lowerBelow of a
// core over a second, and goes back to Cores()+Extra as soon as it uses
// more than raiseAbove of a core over one tick: a burst of work runs on
// one core for at most a tick or two before it has them all. The band
// between the two thresholds keeps a steady load from switching back and
// forth (the same load costs more CPU on more Ps). Each switch stops the
// world for some microseconds; the ticks cost a system call each, about
// 40 a second.
const (
	tick       = 25 * time.Millisecond
	settle     = time.Second // how long the process must stay quiet
	raiseAbove = 0.5         // of a core, over a tick
	lowerBelow = 0.35        // of a core, over settle
)

// Adapt starts adapting GOMAXPROCS to the process's load, between one and
// Cores()+Extra, and returns a function that stops it and leaves
// GOMAXPROCS at Cores()+Extra. It adapts nothing, and stop does nothing,
// when the environment sets GOMAXPROCS (the operator's choice, as for
// Raise) or when the process may use one core only. Call it after the
// servers have sized their pools by Raise's value. Calls share one
// governor, for a process serving as bank and merchant at once (loadgen,
// tests): it stops when every caller has stopped it.
func Adapt() (stop func()) {
	if !Adaptive() {
		return func() {}
	}
	adapting.Lock()
	defer adapting.Unlock()
	if adapting.users == 0 {
		adapting.quit, adapting.done = make(chan struct{}), make(chan struct{})
		go govern(Cores()+Extra, adapting.quit, adapting.done)
	}
	adapting.users++
	var once sync.Once
	return func() {
		once.Do(func() {
			adapting.Lock()
			defer adapting.Unlock()
			if adapting.users--; adapting.users == 0 {
				close(adapting.quit)
				<-adapting.done
			}
		})
	}
}

// adapting is the process's one governor and how many callers use it.
var adapting struct {
	sync.Mutex
	users      int
	quit, done chan struct{}
}

// govern sets GOMAXPROCS as a governor decides, every tick, until quit
// closes; it leaves high.
func govern(high int, quit <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	runtime.GOMAXPROCS(high)
	defer runtime.GOMAXPROCS(high)
	cpu, err := CPUTime()
	if err != nil {
		return // no measure of the load: keep Raise's value
	}
	g := newGovernor(1, high, time.Now(), cpu)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case now := <-t.C:
			if g.n == g.low {
				onOne.Add(int64(now.Sub(g.last)))
			}
			cpu, err := CPUTime()
			if err != nil {
				return
			}
			if n, changed := g.step(now, cpu); changed {
				runtime.GOMAXPROCS(n)
			}
		}
	}
}

// onOne is how long the process has run on one P, in nanoseconds, counted
// a tick at a time.
var onOne atomic.Int64

// OnOneP returns how long Adapt has kept the process on one P so far: a
// report of a load test tells by it whether its phase ran with every P.
func OnOneP() time.Duration { return time.Duration(onOne.Load()) }

// Adaptive reports whether Adapt would adapt GOMAXPROCS: unless the
// environment sets it, on two cores or more.
func Adaptive() bool { return !fromEnv() && Cores() >= 2 }

// governor decides GOMAXPROCS from samples of the process's CPU time; it
// does no I/O, so that its rules can be tested with made-up samples.
type governor struct {
	low, high int
	n         int // the GOMAXPROCS chosen
	// The sample before, and the start of the window that decides a
	// lowering (used while n is high).
	last, since       time.Time
	lastCPU, sinceCPU time.Duration
}

// newGovernor starts at high, with a first sample of cpu at now.
func newGovernor(low, high int, now time.Time, cpu time.Duration) *governor {
	return &governor{low: low, high: high, n: high, last: now, since: now, lastCPU: cpu, sinceCPU: cpu}
}

// step takes the process's CPU time at now and returns the GOMAXPROCS to
// run at, and whether it differs from the one before.
func (g *governor) step(now time.Time, cpu time.Duration) (int, bool) {
	before := g.n
	if g.n == g.low {
		if dt := now.Sub(g.last); dt > 0 && float64(cpu-g.lastCPU) > raiseAbove*float64(dt) {
			g.n = g.high
			g.since, g.sinceCPU = now, cpu
		}
	} else if w := now.Sub(g.since); w >= settle {
		if float64(cpu-g.sinceCPU) < lowerBelow*float64(w) {
			g.n = g.low
		}
		g.since, g.sinceCPU = now, cpu
	}
	g.last, g.lastCPU = now, cpu
	return g.n, g.n != before
}
