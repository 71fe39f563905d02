package cli

import (
	"flag"
	"io"
	"math"
	"strings"
	"testing"
	"time"
)

// TestParseDuration: Go durations, whole days and days followed by a Go
// duration, nothing else; the error names the forms.
func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "1d": 24 * time.Hour, "0d": 0, "400d": 400 * 24 * time.Hour,
		"90m": 90 * time.Minute, "720h": 720 * time.Hour, "1h30m": 90 * time.Minute, "2s": 2 * time.Second, "0": 0,
		"1d12h": 36 * time.Hour, "30d10h": 730 * time.Hour, "1d1h30m0s": 24*time.Hour + 90*time.Minute, "2d48h": 96 * time.Hour, "0d5m": 5 * time.Minute,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-3d", "3.5d", "1d-12h", "1d+12h", "1dd", "1d2d", "1d12", "1h1d", "soon", "99999999d", "65536d", "-5m", "30", " 30d", "65535d2562047h"} {
		_, err := ParseDuration(bad)
		if err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "30d") || !strings.Contains(err.Error(), "720h") {
			t.Errorf("ParseDuration(%q): %v does not name the forms", bad, err)
		}
	}
}

// TestFormatDurationRoundTrip: durations print as an operator reads them
// (whole days, days and hours, Go's form below a day), and every printed
// form is one the flags take back to the same duration.
func TestFormatDurationRoundTrip(t *testing.T) {
	const day = 24 * time.Hour
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{time.Nanosecond, "1ns"},
		{1500 * time.Millisecond, "1.5s"},
		{90 * time.Minute, "1h30m0s"},
		{23 * time.Hour, "23h0m0s"},
		{day - time.Second, "23h59m59s"},
		{day, "1d"},
		{36 * time.Hour, "1d12h"},
		{day + 90*time.Minute, "1d1h30m0s"},
		{day + time.Nanosecond, "1d1ns"},
		{30 * day, "30d"},
		{730 * time.Hour, "30d10h"}, // the default overlap: a twelfth of 365 days
		{365 * day, "365d"},
		{8760*time.Hour + time.Minute, "365d1m0s"},
		{65535 * day, "65535d"},
		{65535*day + 23*time.Hour, "65535d23h"},
		{65536 * day, "1572864h0m0s"}, // beyond the days the flags take
		{math.MaxInt64, "2562047h47m16.854775807s"},
	} {
		got := FormatDuration(c.d)
		if got != c.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", c.d, got, c.want)
		}
		if back, err := ParseDuration(got); err != nil || back != c.d {
			t.Errorf("ParseDuration(FormatDuration(%v) = %q) = %v, %v", c.d, got, back, err)
		}
	}
}

// TestDurationVar: the flag takes ParseDuration's forms and keeps its
// default when not given.
func TestDurationVar(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var a, b time.Duration
	DurationVar(fs, &a, "a", time.Hour, "")
	DurationVar(fs, &b, "b", 2*time.Hour, "")
	if err := fs.Parse([]string{"-a", "3d"}); err != nil {
		t.Fatal(err)
	}
	if a != 72*time.Hour || b != 2*time.Hour {
		t.Errorf("a %v, b %v", a, b)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	DurationVar(fs, &a, "a", time.Hour, "")
	if err := fs.Parse([]string{"-a", "3 days"}); err == nil || !strings.Contains(err.Error(), "whole number of days") {
		t.Errorf("a bad value: %v", err)
	}
}
