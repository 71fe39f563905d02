package cli

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DurationForms names the forms every duration flag of the commands
// takes (ParseDuration), for help and errors.
const DurationForms = "a Go duration (90m, 720h, 1h30m) or a whole number of days (30d), optionally followed by a Go duration (30d10h)"

// maxDays bounds the days of a duration flag's value: far beyond any
// window the commands take, and its hours fit a time.Duration.
const maxDays = 65535

// ParseDuration reads the value of a duration flag: a Go duration ("90m",
// "720h", "1h30m"), a whole number of days ("30d", up to 65535), or days
// followed by a Go duration ("30d10h", "1d1h30m0s"): every form
// FormatDuration prints. It is never negative. Every duration flag of
// bankd, merchantd and wallet reads its value with it (DurationVar), so
// that one form works everywhere (audit has none).
func ParseDuration(s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return d, nil
}

// parseDuration is ParseDuration with errors that do not repeat s (the
// flag package's error names the value).
func parseDuration(s string) (time.Duration, error) {
	var days time.Duration
	if n, rest, ok := strings.Cut(s, "d"); ok {
		v, err := strconv.ParseUint(n, 10, 64)
		if err != nil || v > maxDays {
			return 0, fmt.Errorf("not a whole number of days up to %d: want %s", maxDays, DurationForms)
		}
		days = time.Duration(v) * 24 * time.Hour
		if rest == "" {
			return days, nil
		}
		// The part after the days is unsigned: "1d-5h" is no duration.
		if rest[0] == '+' || rest[0] == '-' {
			return 0, fmt.Errorf("a sign after the days: want %s", DurationForms)
		}
		s = rest
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want %s", DurationForms)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative: want %s", DurationForms)
	}
	if d > math.MaxInt64-days {
		return 0, fmt.Errorf("too long: want %s", DurationForms)
	}
	return days + d, nil
}

// FormatDuration prints a duration as an operator reads it, in a form
// ParseDuration reads back: whole days ("365d"), days and hours
// ("30d10h"), days and Go's form of the rest ("1d1h30m0s"), and Go's
// form below a day ("1h30m0s") or beyond the days ParseDuration takes.
func FormatDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d < day || d/day > maxDays {
		return d.String()
	}
	days, rest := d/day, d%day
	switch {
	case rest == 0:
		return fmt.Sprintf("%dd", days)
	case rest%time.Hour == 0:
		return fmt.Sprintf("%dd%dh", days, rest/time.Hour)
	default:
		return fmt.Sprintf("%dd%s", days, rest)
	}
}

// DurationVar defines a duration flag, as flag.DurationVar does, whose value
// takes ParseDuration's forms.
func DurationVar(fs *flag.FlagSet, p *time.Duration, name string, value time.Duration, usage string) {
	*p = value
	fs.Var((*durationValue)(p), name, usage)
}

type durationValue time.Duration

func (d *durationValue) String() string { return FormatDuration(time.Duration(*d)) }

func (d *durationValue) Set(s string) error {
	v, err := parseDuration(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}
