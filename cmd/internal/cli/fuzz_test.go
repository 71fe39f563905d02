package cli

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseDuration: every duration flag's value (ParseDuration) is never
// negative, a number of days is at most 65535, and what parses prints
// (FormatDuration) as a value that parses to the same duration.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"90m", "720h", "1h30m", "30d", "0d", "65535d", "65536d", "-1h", "1.5h", "d", "+3d", "-0d", "0", "9223372036854775807ns", "2562047h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			if d != 0 {
				t.Fatalf("%q: %v with error %v", s, d, err)
			}
			return
		}
		if d < 0 {
			t.Fatalf("%q parses to %v", s, d)
		}
		if n, ok := strings.CutSuffix(s, "d"); ok && d > 65535*24*time.Hour {
			t.Fatalf("%q (%s days) parses to %v", s, n, d)
		}
		back := FormatDuration(d)
		if again, err := ParseDuration(back); err != nil || again != d {
			t.Fatalf("%q parses to %v, printed %q, which parses to %v (%v)", s, d, back, again, err)
		}
	})
}
