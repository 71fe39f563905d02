package cli

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DurationForms names the forms every duration flag of the commands
// takes (ParseDuration), for help and errors.
const DurationForms = "a Go duration (90m, 720h, 1h30m) or a whole number of days (30d)"

// ParseDuration reads the value of a duration flag: a Go duration ("90m",
// "720h", "1h30m") or a whole number of days ("30d", up to 65535). It is
// never negative. Every duration flag of bankd, merchantd and wallet
// reads its value with it (DurationVar), so that one form works
// everywhere (audit has none).
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
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("not a whole number of days up to 65535: want %s", DurationForms)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want %s", DurationForms)
	}
	if d < 0 {
		return 0, fmt.Errorf("negative: want %s", DurationForms)
	}
	return d, nil
}

// FormatDuration prints a duration as ParseDuration reads it: in days when
// it is a whole number of them, else as Go does.
func FormatDuration(d time.Duration) string {
	if d != 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
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
