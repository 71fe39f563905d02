package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/blindbank/blindbank/bank/pebblestore"
)

// Bounds of cache_size: Pebble charges its memtables (two of
// pebblestore.MemTableSize at most) to the cache, so below that and some
// room for blocks every lookup would read the file; 1 TiB is beyond any
// machine this runs on, so more is a typo.
const (
	MinCacheSize = 2*pebblestore.MemTableSize + 32<<20
	MaxCacheSize = 1 << 40
)

// sizeUnits are the units ParseSize accepts, binary and decimal.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// ParseSize reads a size in bytes: a whole number with an optional unit,
// B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (of 1000), in
// any case, with optional space between: "512MiB", "2 GiB", "1000000".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, errors.New("want a whole number of bytes with an optional unit, e.g. 512MiB or 2GiB")
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, errors.New("number out of range")
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q: want B, KiB, MiB, GiB, TiB, KB, MB, GB or TB", strings.TrimSpace(t[i:]))
	}
	if n > math.MaxInt64/mult {
		return 0, errors.New("number out of range")
	}
	return n * mult, nil
}

// FormatSize writes n in the largest binary unit that divides it, as
// ParseSize reads it back.
func FormatSize(n int64) string {
	for _, u := range []struct {
		name string
		v    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
