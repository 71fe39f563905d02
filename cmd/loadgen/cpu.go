package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/blindbank/blindbank/bank/pebblestore"
)

// clockTicks converts the CPU times of /proc (clock ticks) to a duration:
// USER_HZ is 100 on every Linux platform Go supports.
func clockTicks(n int64) time.Duration { return time.Duration(n) * 10 * time.Millisecond }

// systemBusy is the CPU time all processes have used on all CPUs since
// boot (Linux /proc/stat: user, nice, system, irq, softirq and steal;
// guest time is inside user), or false where that cannot be read.
func systemBusy() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, false
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += v
	}
	return clockTicks(ticks), true
}

// roleLabel is the profiler label that says whose work a goroutine does.
// Goroutines inherit the labels of the goroutine that starts them, so the
// bank started under role=bank labels its gRPC server, handlers, commit
// pipeline and Pebble's background work alike.
const roleLabel = "role"

// Roles.
const (
	roleBank     = "bank"
	roleMerchant = "merchant"
	roleClient   = "client"
)

// pebbleLabel is the label Pebble puts on its background goroutines (WAL
// writer and syncer, flushes, compactions, file deletion). Pebble sets it
// on a fresh context, which drops the role label: samples carrying it but
// no role are counted as roleStorage.
const pebbleLabel = "pebble"

// roleStorage is Pebble's background work, of every store in the process.
const roleStorage = "storage"

// cpuByLabel sums the CPU time of a gzipped pprof CPU profile by the value
// of one sample label; samples without it count under roleStorage if they
// carry pebbleLabel, else under "". It reads
// the profile.proto wire format directly (see
// github.com/google/pprof/proto/profile.proto): the fields used are
// Profile.sample_type (1), sample (2) and string_table (6), Sample.value
// (2) and label (3), Label.key (1) and str (2), ValueType.type (1).
func cpuByLabel(profile []byte, key string) (map[string]time.Duration, error) {
	zr, err := gzip.NewReader(bytes.NewReader(profile))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	type label struct{ key, str int64 }
	type sample struct {
		values []int64
		labels []label
	}
	var (
		strs    []string
		types   []int64 // string index of each sample type
		samples []sample
	)
	bad := errors.New("malformed CPU profile")
	err = eachField(raw, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch {
		case num == 6 && typ == protowire.BytesType:
			strs = append(strs, string(b))
		case num == 1 && typ == protowire.BytesType:
			var t int64
			err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
				if num == 1 && typ == protowire.VarintType {
					t = int64(v)
				}
				return nil
			})
			types = append(types, t)
			return err
		case num == 2 && typ == protowire.BytesType:
			var s sample
			err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
				switch {
				case num == 2 && typ == protowire.VarintType:
					s.values = append(s.values, int64(v))
				case num == 2 && typ == protowire.BytesType: // packed
					for len(b) > 0 {
						x, n := protowire.ConsumeVarint(b)
						if n < 0 {
							return bad
						}
						s.values = append(s.values, int64(x))
						b = b[n:]
					}
				case num == 3 && typ == protowire.BytesType:
					var l label
					err := eachField(b, func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
						switch {
						case num == 1 && typ == protowire.VarintType:
							l.key = int64(v)
						case num == 2 && typ == protowire.VarintType:
							l.str = int64(v)
						}
						return nil
					})
					s.labels = append(s.labels, l)
					return err
				}
				return nil
			})
			samples = append(samples, s)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	str := func(i int64) string {
		if i < 0 || i >= int64(len(strs)) {
			return ""
		}
		return strs[i]
	}
	// The CPU profile's sample types are samples/count and cpu/nanoseconds.
	col := -1
	for i, t := range types {
		if str(t) == "cpu" {
			col = i
		}
	}
	if col < 0 {
		return nil, fmt.Errorf("%w: no cpu sample type", bad)
	}
	out := map[string]time.Duration{}
	for _, s := range samples {
		if col >= len(s.values) {
			return nil, bad
		}
		role, pebble := "", false
		for _, l := range s.labels {
			switch str(l.key) {
			case key:
				role = str(l.str)
			case pebbleLabel:
				pebble = true
			}
		}
		if role == "" && pebble {
			role = roleStorage
		}
		out[role] += time.Duration(s.values[col])
	}
	return out, nil
}

// eachField calls f for every field of a protobuf message: v holds a
// varint or fixed value, b the bytes of a length-delimited one.
func eachField(msg []byte, f func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		var (
			v uint64
			b []byte
		)
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(msg)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(msg)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(msg)
			v = uint64(x)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(msg)
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		if err := f(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}

// compactedSize opens the Pebble store in dir (closed by its owner),
// flushes and fully compacts it, and returns the size of its tables: what
// the data occupies at rest, without the write-ahead log.
func compactedSize(dir string) (int64, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebblestore.NewLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return 0, err
	}
	err = db.Flush()
	if err == nil {
		err = db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, true)
	}
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("compacting %s: %w", dir, err)
	}
	var total int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".sst" {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return 0, err
		}
		total += fi.Size()
	}
	return total, nil
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (an obsolete WAL or table)
			}
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			total += fi.Size()
		}
		return nil
	})
	return total, err
}
