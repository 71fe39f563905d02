package main

import (
	"cmp"
	"context"
	"errors"
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
	Dir   string  `json:"dir"`
	Size  int     `json:"size_bytes"`
	Reuse bool    `json:"reuse"` // overwriting a written file, not appending
	Rate  float64 `json:"rate_per_s"`
	// Elapsed is the measurement's time, Interrupted whether an interrupt
	// ended it before --duration.
	Elapsed     float64 `json:"elapsed_s"`
	Interrupted bool    `json:"interrupted,omitempty"`
	Syncs       int     `json:"syncs"`
	// Missed counts the planned syncs skipped because the one before
	// them ended after their time: a slow disk gets fewer syncs, as a
	// store's commits share one sync when they queue behind it.
	Missed int `json:"missed"`
	// Times of one sync, in milliseconds.
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
	// Slow counts the syncs over SlowOverMs (slowCommitFrom: alone more
	// than a lone payment's latency goal); Slowest are the slowest of them
	// (up to maxSlowest), slowest first.
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

const (
	maxSlowest   = 10        // slow syncs the report lists
	maxSyncs     = 1_000_000 // --rate × --duration: the times are kept in memory
	maxReuseSize = 64 << 20  // the region --reuse overwrites, at most
)

func fsyncCommand() *cli.Command {
	var (
		dir      string
		duration time.Duration
		rate     float64
		size     int
		reuse    bool
	)
	return &cli.Command{
		Name:  "fsync",
		Short: "measure how long the disk takes to make a small write durable",
		Long: `fsync measures the disk's synced writes, which the bank's and the merchant's
stores make for every commit: it writes --size bytes to a file in --dir and
calls fdatasync (elsewhere than Linux, the sync Go's os.File.Sync makes, as
Pebble does), --rate times a second for --duration, and reports the time of
one sync (the write itself not counted): p50, p99, p99.9 and the slowest;
how many took over 5 ms, alone more than a lone payment's latency goal; and
the slowest of those, with when they happened. A sync that ends after the
next one's time skips the syncs it overran (counted as missed), as a store's
commits that queue behind a slow sync share the next one. The file is
removed at the end; an interrupt ends the measurement early and reports it.

By default each write is appended, so every sync also records the file's
new size, as in a fresh write-ahead log: the worse case. Pebble reuses its
old logs, overwriting them in place; --reuse measures that: it writes the
region first (--size × the syncs planned, at most 64 MiB), then overwrites
it in turn.

A disk that stalls now and then, for tens of milliseconds or more, makes
every payment waiting behind it late, and sets the 99th percentile of
payments while it does (docs/PERFORMANCE.md, "The disk's slow syncs").
Measure the filesystem that holds, or will hold, the bank's data
directory, with nothing else running. A directory in memory (tmpfs) is
refused: its syncs say nothing of a disk.`,
		Example: `loadgen fsync --dir /var/lib/blindbank
loadgen fsync --dir /var/lib/blindbank --duration 5m --reuse --json`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "dir", "", "`DIR` to write the file in, on the filesystem to measure (default: the system's temporary directory)")
			fs.DurationVar(&duration, "duration", time.Minute, "how long to measure (1s to 1h)")
			fs.Float64Var(&rate, "rate", 100, "`N` syncs a second (1 to 10000; --rate × --duration at most 1,000,000)")
			fs.IntVar(&size, "size", 2048, "`BYTES` written before each sync (1 to 1048576: a commit's write-ahead log record)")
			fs.BoolVar(&reuse, "reuse", false, "overwrite a region written first, as Pebble reuses its logs, instead of appending")
		},
		NArgs: 0,
		Run: func(ctx context.Context, inv *cli.Invocation) error {
			if duration < time.Second || duration > time.Hour {
				return cli.Usagef("bad --duration %s: want 1s to 1h", duration)
			}
			if !(rate >= 1 && rate <= 10000) {
				return cli.Usagef("bad --rate %g: want 1 to 10000", rate)
			}
			if rate*duration.Seconds() > maxSyncs {
				return cli.Usagef("bad --rate %g with --duration %s: at most %d syncs in all", rate, duration, maxSyncs)
			}
			if size < 1 || size > 1<<20 {
				return cli.Usagef("bad --size %d: want 1 to 1048576", size)
			}
			if dir == "" {
				dir = os.TempDir()
			}
			if inMemory(dir) {
				return fmt.Errorf("%s is in memory (tmpfs): its syncs say nothing of a disk; give --dir on the disk to measure", dir)
			}
			f, err := os.CreateTemp(dir, "loadgen-fsync-")
			if err != nil {
				return fmt.Errorf("--dir: %w", err)
			}
			defer os.Remove(f.Name())
			defer f.Close()
			var region int64
			if reuse {
				region = min(int64(size)*int64(math.Ceil(rate*duration.Seconds())), maxReuseSize)
				region = max(region/int64(size), 1) * int64(size)
				if err := writeRegion(f, region); err != nil {
					return err
				}
			}
			prog := newProgress(inv)
			rep, err := measureFsync(ctx, osSyncFile{f}, size, region, rate, duration, func(elapsed time.Duration, n int, slowest time.Duration) {
				prog.Status("fsync: %4.0fs/%s  %d syncs, slowest %.1f ms", elapsed.Seconds(), duration, n, ms(slowest))
			})
			prog.Clear()
			if err != nil {
				return err
			}
			rep.Dir, rep.Reuse, rep.Machine = dir, reuse, machine()
			if err := inv.Print(rep, rep.writeText); err != nil {
				return err
			}
			return ctx.Err()
		},
	}
}

// writeRegion writes n bytes to f and syncs them, for --reuse to overwrite.
func writeRegion(f *os.File, n int64) error {
	buf := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			return err
		}
	}
	return f.Sync()
}

// syncFile is what measureFsync writes to and syncs.
type syncFile interface {
	io.WriterAt
	io.Writer
	SyncData() error
}

// osSyncFile syncs a file's data as Pebble does (datasync).
type osSyncFile struct{ *os.File }

func (f osSyncFile) SyncData() error { return datasync(f.File) }

// measureFsync writes size bytes to f and syncs it, rate times a second
// for d or until ctx ends: appended, or with region > 0 written over the
// region's bytes in turn. A sync that ends after the next one's planned
// time skips the planned syncs it overran. It calls status about once a
// second.
func measureFsync(ctx context.Context, f syncFile, size int, region int64, rate float64, d time.Duration, status func(elapsed time.Duration, n int, slowest time.Duration)) (*fsyncReport, error) {
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i)
	}
	planned := func(i int) time.Duration { return time.Duration(float64(i) * float64(time.Second) / rate) }
	var (
		times   []time.Duration
		slow    []fsyncSync
		slowest time.Duration
		missed  int
		off     int64
	)
	start := time.Now()
	lastStatus := start
	interrupted := false
	for i := 0; planned(i) < d; i++ {
		if wait := time.Until(start.Add(planned(i))); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		if ctx.Err() != nil {
			interrupted = true
			break
		}
		var err error
		if region > 0 {
			_, err = f.WriteAt(buf, off)
			off = (off + int64(size)) % region
		} else {
			_, err = f.Write(buf)
		}
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := f.SyncData(); err != nil {
			return nil, fmt.Errorf("sync: %w", err)
		}
		took := time.Since(t0)
		times = append(times, took)
		slowest = max(slowest, took)
		if took > time.Duration(slowCommitFrom*float64(time.Second)) {
			slow = append(slow, fsyncSync{At: t0.Sub(start).Seconds(), Ms: ms(took)})
		}
		// Skip the planned syncs this one overran.
		for now := time.Since(start); planned(i+1) < now && planned(i+1) < d; i++ {
			missed++
		}
		if now := time.Now(); now.Sub(lastStatus) >= time.Second {
			status(now.Sub(start), len(times), slowest)
			lastStatus = now
		}
	}
	rep := fsyncSummary(times, slow)
	rep.Size, rep.Rate, rep.Missed = size, rate, missed
	rep.Elapsed, rep.Interrupted = time.Since(start).Seconds(), interrupted
	if len(times) == 0 && interrupted {
		return nil, errors.Join(ctx.Err(), errors.New("interrupted before the first sync"))
	}
	return rep, nil
}

// fsyncSummary is the report of syncs that took times, of which slow were
// over slowCommitFrom.
func fsyncSummary(times []time.Duration, slow []fsyncSync) *fsyncReport {
	rep := &fsyncReport{Syncs: len(times), SlowOverMs: slowCommitFrom * 1000, Slow: len(slow)}
	if len(times) == 0 {
		return rep
	}
	s := slices.Sorted(slices.Values(times))
	pct := func(p float64) float64 { return ms(nearestRank(s, p)) }
	rep.P50, rep.P99, rep.P999, rep.Max = pct(0.50), pct(0.99), pct(0.999), ms(s[len(s)-1])
	slowest := slices.Clone(slow)
	slices.SortStableFunc(slowest, func(a, b fsyncSync) int { return cmp.Compare(b.Ms, a.Ms) })
	rep.Slowest = slowest[:min(len(slowest), maxSlowest)]
	return rep
}

func (r *fsyncReport) writeText(w io.Writer) {
	how := "appends"
	if r.Reuse {
		how = "overwrites"
	}
	fmt.Fprintf(w, "loadgen fsync: %d syncs of %d-byte %s in %s, %g a second planned (%d missed), %.0fs, on %s\n",
		r.Syncs, r.Size, how, r.Dir, r.Rate, r.Missed, r.Elapsed, r.Machine.describe())
	if r.Interrupted {
		fmt.Fprintln(w, "  interrupted   before its time: what was measured")
	}
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
