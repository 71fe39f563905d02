package main

import "testing"

// The commits of a phase are the difference of two readings of the
// histogram, their times the bounds of the buckets holding them.
func TestCommitsSince(t *testing.T) {
	bounds := []float64{0.001, 0.002, 0.004, 0.008}
	before := commitCounts{bounds: bounds, under: []uint64{1, 1, 1, 1}, total: 1, ops: 3}
	after := commitCounts{bounds: bounds, under: []uint64{51, 90, 98, 100}, total: 101, ops: 203}
	r := after.since(before)
	want := commitReport{Commits: 100, OpsPerCommit: 2, P50Ms: 1, P99Ms: 8, MaxMs: -1, SlowOverMs: 8, Slow: 1, LastMs: 8}
	if r == nil || *r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if got, want := r.describe(), "100 synced group commits (2.0 ops each): p50 ≤ 1 ms, p99 ≤ 8 ms, slowest > 8 ms; 1 over 8 ms"; got != want {
		t.Errorf("describe:\n got %s\nwant %s", got, want)
	}
	if r := before.since(before); r != nil {
		t.Errorf("no commits, got %+v", r)
	}
}
