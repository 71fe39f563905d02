package main

import (
	"fmt"
	"math"
	"slices"

	"github.com/blindbank/blindbank/cmd/internal/node"
)

// The bank's synced group commits over the timed phase. Each is one fsync
// of the bank's write-ahead log, so a disk that stalls now and then, which
// sets the tail of a lone payment's latency (docs/PERFORMANCE.md, "The
// disk's slow syncs"), shows here.

// slowCommitFrom is where a commit starts to count as slow: alone it takes
// a payment past issue 7's latency goal (5 ms). The report counts from the
// histogram's first bucket bound at or above it.
const slowCommitFrom = 0.005

// commitReport is the bank's synced group commits in the timed phase, from
// its blindbank_commit_seconds histogram: times are the upper bounds of the
// buckets holding them. Only for the Pebble banks loadgen runs itself.
type commitReport struct {
	Commits      uint64  `json:"commits"`
	OpsPerCommit float64 `json:"ops_per_commit"`
	P50Ms        float64 `json:"p50_ms_at_most"`
	P99Ms        float64 `json:"p99_ms_at_most"`
	MaxMs        float64 `json:"max_ms_at_most"`
	// SlowOverMs is the bucket bound from which commits count as Slow
	// (see slowCommitFrom; 0 if no bound reaches it). A time of -1 is
	// beyond the last bound, LastMs.
	SlowOverMs float64 `json:"slow_over_ms"`
	Slow       uint64  `json:"slow"`
	LastMs     float64 `json:"last_bucket_ms"`
}

// commitCounts is the banks' synced group commits so far: the histogram's
// bucket bounds (seconds), the commits at or under each, all commits, and
// the operations they carried.
type commitCounts struct {
	bounds []float64
	under  []uint64
	total  uint64
	ops    float64
}

// commitsSoFar reads the commit histograms of the banks this process runs;
// false when it runs none (daemons) or they are not on Pebble, which alone
// observes its commits.
func (e *environment) commitsSoFar() (commitCounts, bool) {
	var c commitCounts
	if len(e.daemons) > 0 || len(e.bankNodes) == 0 || e.pg != nil {
		return c, false
	}
	for _, bank := range e.bankNodes {
		fams, err := bank.Registry.Gather()
		if err != nil {
			return c, false
		}
		for _, f := range fams {
			for _, m := range f.GetMetric() {
				h := m.GetHistogram()
				switch f.GetName() {
				case node.CommitOpsMetric:
					c.ops += h.GetSampleSum()
				case node.CommitSecondsMetric:
					if c.bounds == nil {
						for _, b := range h.GetBucket() {
							c.bounds = append(c.bounds, b.GetUpperBound())
						}
						c.under = make([]uint64, len(c.bounds))
					}
					bs := h.GetBucket()
					if len(bs) != len(c.bounds) {
						return c, false
					}
					for i, b := range bs {
						if b.GetUpperBound() != c.bounds[i] {
							return c, false
						}
						c.under[i] += b.GetCumulativeCount()
					}
					c.total += h.GetSampleCount()
				}
			}
		}
	}
	return c, len(c.bounds) > 0
}

// since is the report of the commits between before and c; nil if none,
// or if the two readings do not compare (other buckets, or counts that
// went back: a bank restarted).
func (c commitCounts) since(before commitCounts) *commitReport {
	if !slices.Equal(c.bounds, before.bounds) || c.total <= before.total {
		return nil
	}
	for i := range c.under {
		if c.under[i] < before.under[i] {
			return nil
		}
	}
	n := c.total - before.total
	last := len(c.bounds) - 1
	under := func(i int) uint64 { return c.under[i] - before.under[i] }
	// at is the bound of the bucket holding the k-th fastest commit, -1
	// beyond the last.
	at := func(k uint64) float64 {
		for i := range c.bounds {
			if under(i) >= k {
				return c.bounds[i] * 1000
			}
		}
		return -1
	}
	r := &commitReport{
		Commits:      n,
		OpsPerCommit: (c.ops - before.ops) / float64(n),
		P50Ms:        at(uint64(math.Ceil(0.50 * float64(n)))),
		P99Ms:        at(uint64(math.Ceil(0.99 * float64(n)))),
		MaxMs:        at(n),
		LastMs:       c.bounds[last] * 1000,
	}
	for i, b := range c.bounds {
		if b >= slowCommitFrom {
			r.SlowOverMs, r.Slow = b*1000, n-under(i)
			break
		}
	}
	return r
}

// describe is the report's line: "1500 synced group commits (1.0 ops
// each): p50 ≤ 0.4 ms, ...".
func (r *commitReport) describe() string {
	le := func(ms float64) string {
		if ms < 0 {
			return fmt.Sprintf("> %g ms", r.LastMs)
		}
		return fmt.Sprintf("≤ %g ms", ms)
	}
	s := fmt.Sprintf("%d synced group commits (%.1f ops each): p50 %s, p99 %s, slowest %s",
		r.Commits, r.OpsPerCommit, le(r.P50Ms), le(r.P99Ms), le(r.MaxMs))
	if r.SlowOverMs > 0 {
		s += fmt.Sprintf("; %d over %g ms", r.Slow, r.SlowOverMs)
	}
	return s
}
