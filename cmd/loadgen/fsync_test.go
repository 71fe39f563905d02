package main

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// The summary's percentiles, and the slow syncs, slowest first.
func TestFsyncSummary(t *testing.T) {
	var times []time.Duration
	for i := range 1000 {
		times = append(times, time.Duration(i%10+1)*100*time.Microsecond) // 0.1 to 1 ms, 100 each
	}
	times[100], times[500], times[900] = 80*time.Millisecond, 6*time.Millisecond, 21*time.Millisecond
	slow := []fsyncSync{{At: 1, Ms: 80}, {At: 5, Ms: 6}, {At: 9, Ms: 21}}
	r := fsyncSummary(times, slow)
	if r.Syncs != 1000 || r.P50 != 0.6 || r.P99 != 1 || r.P999 != 21 || r.Max != 80 {
		t.Errorf("syncs %d, p50 %v, p99 %v, p99.9 %v, max %v", r.Syncs, r.P50, r.P99, r.P999, r.Max)
	}
	want := []fsyncSync{{At: 1, Ms: 80}, {At: 9, Ms: 21}, {At: 5, Ms: 6}}
	if r.SlowOverMs != 5 || r.Slow != 3 || len(r.Slowest) != 3 {
		t.Fatalf("slow: over %v ms %d, %+v", r.SlowOverMs, r.Slow, r.Slowest)
	}
	for i, w := range want {
		if r.Slowest[i] != w {
			t.Errorf("slowest %d: %+v, want %+v", i, r.Slowest[i], w)
		}
	}
	var text strings.Builder
	r.Dir = "/data"
	r.writeText(&text)
	if !strings.Contains(text.String(), "over 5 ms     3; the slowest: 80.0 ms at 1.0s, 21.0 ms at 9.0s, 6.0 ms at 5.0s") {
		t.Errorf("text report:\n%s", text.String())
	}
}

// fakeSyncFile records what measureFsync writes, and makes one sync slow.
type fakeSyncFile struct {
	mu       sync.Mutex
	appended int
	at       []int64 // offsets written at
	syncs    int
	slowSync int           // 1-based; 0: none
	slowFor  time.Duration // how long it takes
}

func (f *fakeSyncFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.appended += len(p)
	return len(p), nil
}

func (f *fakeSyncFile) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.at = append(f.at, off)
	return len(p), nil
}

func (f *fakeSyncFile) SyncData() error {
	f.mu.Lock()
	f.syncs++
	slow := f.syncs == f.slowSync
	f.mu.Unlock()
	if slow {
		time.Sleep(f.slowFor)
	}
	return nil
}

// Every write is synced; a slow sync is reported with its time, and the
// planned syncs it overran are skipped, not made up for in a burst.
func TestMeasureFsyncPacing(t *testing.T) {
	f := &fakeSyncFile{slowSync: 5, slowFor: 60 * time.Millisecond}
	start := time.Now()
	r, err := measureFsync(context.Background(), f, 100, 0, 100, 300*time.Millisecond, func(time.Duration, int, time.Duration) {})
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed < 290*time.Millisecond {
		t.Errorf("took %s of the 300ms planned", elapsed) // a lower bound: the pacing waits
	}
	if r.Syncs != f.syncs || f.appended != 100*r.Syncs || r.Syncs+r.Missed != 30 || r.Missed < 5 {
		t.Errorf("%d syncs (%d made), %d missed, %d bytes appended; want 30 planned, 5 or more missed behind a 60 ms sync", r.Syncs, f.syncs, r.Missed, f.appended)
	}
	// The fifth sync is planned at 40 ms.
	if r.Slow != 1 || len(r.Slowest) != 1 || r.Slowest[0].Ms < 60 || r.Slowest[0].At < 0.04 || r.Max != r.Slowest[0].Ms {
		t.Errorf("slow syncs %d: %+v, max %v ms", r.Slow, r.Slowest, r.Max)
	}
}

// With a region, writes go over it in turn.
func TestMeasureFsyncReuse(t *testing.T) {
	f := &fakeSyncFile{}
	r, err := measureFsync(context.Background(), f, 10, 30, 100, 70*time.Millisecond, func(time.Duration, int, time.Duration) {})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{0, 10, 20, 0, 10, 20, 0}
	if f.appended != 0 || r.Syncs != len(f.at) || len(f.at) != 7-r.Missed || !slicesPrefix(want, f.at) {
		t.Errorf("offsets %v (%d syncs, %d missed), appended %d", f.at, r.Syncs, r.Missed, f.appended)
	}
}

func slicesPrefix(want, got []int64) bool {
	if len(got) > len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// An interrupt ends the measurement with what it measured.
func TestMeasureFsyncInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	r, err := measureFsync(ctx, &fakeSyncFile{}, 10, 0, 100, time.Hour, func(time.Duration, int, time.Duration) {
		if n++; n == 1 {
			cancel()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// The first status comes after a second: the schedule's first 100
	// syncs, less those a late wake-up on a busy machine skipped.
	if !r.Interrupted || r.Syncs == 0 || r.Syncs+r.Missed < 100 || r.Elapsed > 60 {
		t.Errorf("interrupted %v after %d syncs (%d skipped), %vs", r.Interrupted, r.Syncs, r.Missed, r.Elapsed)
	}
	cancel()
	if _, err := measureFsync(ctx, &fakeSyncFile{}, 10, 0, 100, time.Hour, func(time.Duration, int, time.Duration) {}); err == nil {
		t.Error("interrupted before the first sync: no error")
	}
}

// A real measurement, appending and reusing: the syncs the schedule holds
// (less those a slow disk skipped), in the directory given, the file gone
// after.
func TestFsync(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		dir := t.TempDir()
		args := []string{"fsync", "--dir", dir, "--duration", "1s", "--rate", "40", "--size", "100", "--json"}
		if reuse {
			args = append(args, "--reuse")
		}
		var r fsyncReport
		loadgenJSON(t, &r, args...)
		if r.Dir != dir || r.Reuse != reuse || r.Syncs+r.Missed != 40 || r.Syncs == 0 || r.Size != 100 || r.Elapsed < 0.97 ||
			!(0 < r.P50 && r.P50 <= r.P99 && r.P99 <= r.P999 && r.P999 <= r.Max) || r.Slow < len(r.Slowest) {
			t.Errorf("report: %+v", r)
		}
		if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
			t.Errorf("left in %s: %v %v", dir, left, err)
		}
	}
	if _, stderr, code := loadgen(t, "fsync", "--dir", "/dev/shm", "--duration", "1s"); code == cli.ExitOK && inMemory("/dev/shm") {
		t.Errorf("tmpfs measured: %s", stderr)
	}
}
