package main

import (
	"math"
	"testing"

	"github.com/blindbank/blindbank/cmd/internal/node"
)

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

// Readings that do not compare give no report: another set of buckets,
// or counts that went back (a bank restarted between them).
func TestCommitsSinceIncomparable(t *testing.T) {
	bounds := []float64{0.001, 0.002}
	before := commitCounts{bounds: bounds, under: []uint64{5, 6}, total: 7}
	for name, after := range map[string]commitCounts{
		"other buckets": {bounds: []float64{0.001, 0.004}, under: []uint64{9, 10}, total: 11},
		"total back":    {bounds: bounds, under: []uint64{1, 2}, total: 3},
		"bucket back":   {bounds: bounds, under: []uint64{4, 9}, total: 10},
	} {
		if r := after.since(before); r != nil {
			t.Errorf("%s: got %+v, want none", name, r)
		}
	}
}

// The help texts name the bound from which a commit counts as slow: 6.4 ms
// with bankd's buckets.
func TestSlowCommitBound(t *testing.T) {
	for _, b := range node.CommitSecondsBuckets {
		if b >= slowCommitFrom {
			if math.Abs(b-0.0064) > 1e-12 {
				t.Fatalf("the first bucket bound from %g s is %g s; the help texts say 6.4 ms", slowCommitFrom, b)
			}
			return
		}
	}
	t.Fatalf("no bucket bound reaches %g s", slowCommitFrom)
}
