package pgstore

import (
	"errors"
	"strings"
	"testing"
)

// TestServerVersion: a server older than 11 is refused before any
// migration runs, saying which version it is and what is needed; 11 to 14
// open with a warning; 15 and newer (the server the tests run on among
// them) open without one.
func TestServerVersion(t *testing.T) {
	for _, tc := range []struct {
		num        int
		name       string
		refused    bool
		warned     bool
		mentioning string
	}{
		{100023, "10.23", true, false, "10.23 is too old"},
		{110022, "11.22", false, true, "11.22 is older than"},
		{140019, "14.19", false, true, "tested on (15)"},
		{150018, "15.18", false, false, ""},
		{180001, "18.1", false, false, ""},
	} {
		warning, err := versionVerdict(tc.num, tc.name)
		if (err != nil) != tc.refused || (warning != "") != tc.warned {
			t.Errorf("PostgreSQL %s: warning %q, error %v; want refused %v, warned %v", tc.name, warning, err, tc.refused, tc.warned)
		}
		if err != nil && !errors.As(err, new(sessionError)) {
			t.Errorf("PostgreSQL %s: %v is not passed on as it is", tc.name, err)
		}
		if got := warning + errString(err); !strings.Contains(got, tc.mentioning) {
			t.Errorf("PostgreSQL %s: %q; want it to say %q", tc.name, got, tc.mentioning)
		}
	}
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	if warning, err := checkVersion(bg, s.pool); err != nil || warning != "" {
		t.Errorf("the test server: warning %q, %v; want neither (the tests run on 15 or newer)", warning, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
