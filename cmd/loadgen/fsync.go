package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"time"

	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// fsyncReport is the result of "loadgen fsync": the disk's synced writes.
type fsyncReport struct {
	Dir      string  `json:"dir"`
	Size     int     `json:"size_bytes"`
	Rate     float64 `json:"rate_per_s"`
	Duration float64 `json:"duration_s"`
	Syncs    int     `json:"syncs"`
	// Times of one sync, in milliseconds.
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
	// Slow counts the syncs over SlowOverMs (slowCommitFrom: alone more
	// than a lone payment's latency goal); Slowest are the slowest syncs
	// (up to maxSlowest, over SlowOverMs), slowest first.
	SlowOverMs float64     `json:"slow_over_ms"`
	Slow       int         `json:"slow"`
	Slowest    []fsyncSync `json:"slowest,omitempty"`
	Machine    machineInfo `json:"machine"`
}

// fsyncSync is one slow sync: when it started (seconds into the
// measurement) and how long it took.
type fsyncSync struct {
	At float64 `json:"at_s"`
	Ms float64 `json:"ms"`
}

// maxSlowest bounds the slow syncs the report lists.
const maxSlowest = 10

func fsyncCommand() *cli.Command {
	var (
		dir      string
		duration time.Duration
		rate     float64
		size     int
	)
	return &cli.Command{
		Name:  "fsync",
		Short: "measure how long the disk takes to make a small write durable",
		Long: `fsync measures the disk's synced writes, which the bank's and the merchant's
stores make for every commit: it appends --size bytes to a file in --dir,
calls fdatasync (fsync where the system has none), --rate times a second
for --duration, and reports the time of one sync (the write itself not
counted): p50, p99, p99.9 and the slowest; how many took over 5 ms, alone
more than a lone payment's latency goal; and the slowest of those, with
when they happened. The file is removed at the end.

A disk that stalls now and then, for tens of milliseconds or more, makes
every payment waiting behind it late, and sets the 99th percentile of
payments while it does (docs/PERFORMANCE.md, "The disk's slow syncs").
Measure the filesystem that holds, or will hold, the bank's data
directory, with nothing else running.`,
		Example: `loadgen fsync
loadgen fsync --dir /var/lib/blindbank --duration 5m --json`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "dir", "", "`DIR` to write the file in, on the filesystem to measure (default: the system's temporary directory)")
			fs.DurationVar(&duration, "duration", time.Minute, "how long to measure (1s to 1h)")
			fs.Float64Var(&rate, "rate", 100, "syncs a second (1 to 10000); fewer if the disk is slower")
			fs.IntVar(&size, "size", 2048, "bytes appended before each sync (1 to 1048576: a commit's write-ahead log record)")
		},
		NArgs: 0,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if duration < time.Second || duration > time.Hour {
				return cli.Usagef("bad --duration %s: want 1s to 1h", duration)
			}
			if !(rate >= 1 && rate <= 10000) {
				return cli.Usagef("bad --rate %g: want 1 to 10000", rate)
			}
			if size < 1 || size > 1<<20 {
				return cli.Usagef("bad --size %d: want 1 to 1048576", size)
			}
			if dir == "" {
				dir = os.TempDir()
			}
			f, err := os.CreateTemp(dir, "loadgen-fsync-")
			if err != nil {
				return err
			}
			defer os.Remove(f.Name())
			defer f.Close()
			prog := newProgress(inv)
			rep, err := measureFsync(ctx, f, size, rate, duration, func(elapsed time.Duration, n int, slowest time.Duration) {
				prog.Status("fsync: %4.0fs/%s  %d syncs, slowest %.1f ms", elapsed.Seconds(), duration, n, ms(slowest))
			})
			prog.Clear()
			if err != nil {
				return err
			}
			rep.Dir = dir
			rep.Machine = machine()
			return inv.Print(rep, rep.writeText)
		},
	}
}

// syncFile is what measureFsync writes to and syncs.
type syncFile interface {
	io.Writer
	Fd() uintptr
}

// measureFsync appends size bytes to f and syncs it, rate times a second
// for d (or until ctx ends), calling status about once a second.
func measureFsync(ctx context.Context, f syncFile, size int, rate float64, d time.Duration, status func(elapsed time.Duration, n int, slowest time.Duration)) (*fsyncReport, error) {
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i)
	}
	var times []time.Duration
	var at []time.Duration // start of each sync, from start
	var slowest time.Duration
	start := time.Now()
	lastStatus := start
	interval := time.Duration(float64(time.Second) / rate)
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * interval)
		if next.Sub(start) >= d {
			break
		}
		if wait := time.Until(next); wait > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(wait):
			}
		} else if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if _, err := f.Write(buf); err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := datasync(f.Fd()); err != nil {
			return nil, fmt.Errorf("sync: %w", err)
		}
		took := time.Since(t0)
		times = append(times, took)
		at = append(at, t0.Sub(start))
		slowest = max(slowest, took)
		if now := time.Now(); now.Sub(lastStatus) >= time.Second {
			status(now.Sub(start), len(times), slowest)
			lastStatus = now
		}
	}
	return fsyncSummary(times, at, size, rate, d), nil
}

// fsyncSummary is the report of syncs that took times, started at at.
func fsyncSummary(times, at []time.Duration, size int, rate float64, d time.Duration) *fsyncReport {
	rep := &fsyncReport{Size: size, Rate: rate, Duration: d.Seconds(), Syncs: len(times), SlowOverMs: slowCommitFrom * 1000}
	if len(times) == 0 {
		return rep
	}
	s := slices.Sorted(slices.Values(times))
	pct := func(p float64) float64 { return ms(s[min(max(int(math.Ceil(p*float64(len(s))))-1, 0), len(s)-1)]) }
	rep.P50, rep.P99, rep.P999, rep.Max = pct(0.50), pct(0.99), pct(0.999), ms(s[len(s)-1])
	var slow []fsyncSync
	for i, t := range times {
		if ms(t) > rep.SlowOverMs {
			slow = append(slow, fsyncSync{At: at[i].Seconds(), Ms: ms(t)})
		}
	}
	rep.Slow = len(slow)
	slices.SortStableFunc(slow, func(a, b fsyncSync) int {
		switch {
		case a.Ms > b.Ms:
			return -1
		case a.Ms < b.Ms:
			return 1
		}
		return 0
	})
	rep.Slowest = slow[:min(len(slow), maxSlowest)]
	return rep
}

func (r *fsyncReport) writeText(w io.Writer) {
	fmt.Fprintf(w, "loadgen fsync: %d syncs of %d-byte appends in %s, %g a second, %.0fs, on %s\n",
		r.Syncs, r.Size, r.Dir, r.Rate, r.Duration, r.Machine.describe())
	fmt.Fprintf(w, "  sync time     p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, slowest %.1f ms\n", r.P50, r.P99, r.P999, r.Max)
	fmt.Fprintf(w, "  over %g ms     %d", r.SlowOverMs, r.Slow)
	for i, s := range r.Slowest {
		if i == 0 {
			fmt.Fprint(w, "; the slowest:")
		}
		fmt.Fprintf(w, " %.1f ms at %.1fs", s.Ms, s.At)
		if i < len(r.Slowest)-1 {
			fmt.Fprint(w, ",")
		}
	}
	fmt.Fprintln(w)
}
