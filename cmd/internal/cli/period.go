package cli

import (
	"flag"
	"fmt"
	"time"
)

// Period is a --from/--to pair of flags naming [From, To): each an RFC 3339
// time or a date (midnight UTC); by default the 30 days before now.
type Period struct{ from, to string }

// Register adds --from and --to to fs.
func (p *Period) Register(fs *flag.FlagSet) {
	fs.StringVar(&p.from, "from", "", "start of the period, a `TIME` (default 30 days before --to)")
	fs.StringVar(&p.to, "to", "", "end of the period, a `TIME`, excluded (default now)")
}

// Resolve returns the period's bounds, defaulting the end to now.
func (p *Period) Resolve(now time.Time) (from, to time.Time, err error) {
	to = now
	if p.to != "" {
		if to, err = ParseTime(p.to); err != nil {
			return from, to, Usagef("bad --to: %v", err)
		}
	}
	from = to.Add(-30 * 24 * time.Hour)
	if p.from != "" {
		if from, err = ParseTime(p.from); err != nil {
			return from, to, Usagef("bad --from: %v", err)
		}
	}
	if !from.Before(to) {
		return from, to, Usagef("--from must be before --to")
	}
	return from, to, nil
}

// EndGiven reports whether --to was given.
func (p *Period) EndGiven() bool { return p.to != "" }

// ParseTime reads an RFC 3339 time or a date (midnight UTC).
func ParseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2026-03-01T12:00:00Z) or a date (2026-03-01)", s)
}
