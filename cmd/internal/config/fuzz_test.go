package config

import (
	"strings"
	"testing"
)

// FuzzParseSize: a size parses to a whole number of bytes, never negative
// and never overflowed, and prints (FormatSize) as a value that parses to
// the same size.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"512MiB", "2 GiB", "1000000", "1kb", "8EiB", "9223372036854775807", "8388608TiB", "8388607 tib", "-1", " 7 ", "1.5GiB", "0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("%q: %d with error %v", s, n, err)
			}
			return
		}
		if n < 0 || strings.TrimSpace(s) == "" {
			t.Fatalf("%q parses to %d", s, n)
		}
		back := FormatSize(n)
		if again, err := ParseSize(back); err != nil || again != n {
			t.Fatalf("%q parses to %d, printed %q, which parses to %d (%v)", s, n, back, again, err)
		}
	})
}
