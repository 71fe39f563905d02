package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/blindbank/blindbank/ecash"
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

// FuzzPrintJSON: whatever text a result carries, --json output decodes to
// it (encoding/json's replacement of bad UTF-8 aside) and carries no rune a
// terminal would act on as it is.
func FuzzPrintJSON(f *testing.F) {
	for _, s := range []string{"plain", "c1 \u009b[2J", "bidi \u202e", "tag \U000e0041", "del \x7f", "bad \xff", "👨\u200d👩"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b bytes.Buffer
		inv := &Invocation{Env: &Env{Stdout: &b}, JSON: true}
		if err := inv.Print([]string{s}, nil); err != nil {
			t.Fatal(err)
		}
		if i := bytes.IndexFunc(b.Bytes(), func(r rune) bool { return r >= 0x7f && ecash.Hidden(r) }); i >= 0 {
			t.Fatalf("output carries a hidden rune at %d: %q", i, b.String())
		}
		var back []string
		if err := json.Unmarshal(b.Bytes(), &back); err != nil || len(back) != 1 {
			t.Fatalf("output does not decode (%v): %q", err, b.String())
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); utf8.ValidString(s) && back[0] != want {
			t.Fatalf("decodes to %q, want %q", back[0], want)
		}
	})
}
