package cli

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// TestParseDuration: Go durations and whole days, nothing else; the error
// names the forms.
func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"30d": 30 * 24 * time.Hour, "1d": 24 * time.Hour, "0d": 0, "400d": 400 * 24 * time.Hour,
		"90m": 90 * time.Minute, "720h": 720 * time.Hour, "1h30m": 90 * time.Minute, "2s": 2 * time.Second, "0": 0,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "d", "-3d", "3.5d", "1d12h", "soon", "99999999d", "-5m", "30", " 30d"} {
		_, err := ParseDuration(bad)
		if err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "30d") || !strings.Contains(err.Error(), "720h") {
			t.Errorf("ParseDuration(%q): %v does not name the forms", bad, err)
		}
	}
	if got := FormatDuration(30 * 24 * time.Hour); got != "30d" {
		t.Errorf("FormatDuration(30 days) = %q", got)
	}
	if got := FormatDuration(90 * time.Minute); got != "1h30m0s" {
		t.Errorf("FormatDuration(90m) = %q", got)
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
