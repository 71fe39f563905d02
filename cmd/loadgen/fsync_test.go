package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// The summary's percentiles, and the slow syncs, slowest first, when they
// started.
func TestFsyncSummary(t *testing.T) {
	var times, at []time.Duration
	for i := range 1000 {
		times = append(times, time.Duration(i%10+1)*100*time.Microsecond) // 0.1 to 1 ms, 100 each
		at = append(at, time.Duration(i)*10*time.Millisecond)
	}
	times[100], times[500], times[900] = 80*time.Millisecond, 6*time.Millisecond, 21*time.Millisecond
	r := fsyncSummary(times, at, 2048, 100, 10*time.Second)
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

// A real measurement: as many syncs as the schedule holds, in the
// directory given, and the file gone after.
func TestFsync(t *testing.T) {
	dir := t.TempDir()
	out, stderr, code := loadgen(t, "fsync", "--dir", dir, "--duration", "1s", "--rate", "40", "--size", "100", "--json")
	if code != cli.ExitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r fsyncReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if r.Dir != dir || r.Syncs != 40 || r.Size != 100 || !(0 < r.P50 && r.P50 <= r.P99 && r.P99 <= r.P999 && r.P999 <= r.Max) || r.Slow < len(r.Slowest) {
		t.Errorf("report: %+v", r)
	}
	if left, err := os.ReadDir(dir); err != nil || len(left) != 0 {
		t.Errorf("left in %s: %v %v", dir, left, err)
	}
}
