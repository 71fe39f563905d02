package bank

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestWatchFailureLog: an error that persists is logged when it appears or
// changes, then once every watchLogEvery with the polls in between, and
// its end once.
func TestWatchFailureLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	var f watchFailure
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	offline := errors.New("the master key is offline")
	steps := []struct {
		at   time.Duration
		err  error
		want string // the line logged, "" for none
	}{
		{0, nil, ""},
		{2 * time.Second, offline, `level=ERROR msg="adopting the audit log's revocations" err="the master key is offline"`},
		{4 * time.Second, offline, ""},
		{6 * time.Second, offline, ""},
		{watchLogEvery + 2*time.Second, offline, `level=ERROR msg="adopting the audit log's revocations" err="the master key is offline" failed_polls_not_logged=2`},
		{watchLogEvery + 4*time.Second, errors.New("disk full"), `level=ERROR msg="adopting the audit log's revocations" err="disk full"`},
		{watchLogEvery + 6*time.Second, errors.New("disk full"), ""},
		{watchLogEvery + 8*time.Second, nil, `level=INFO msg="adopting the audit log's revocations works again" failed_polls_not_logged=1`},
		{watchLogEvery + 10*time.Second, nil, ""},
		{watchLogEvery + 12*time.Second, offline, `level=ERROR msg="adopting the audit log's revocations" err="the master key is offline"`},
	}
	for i, s := range steps {
		buf.Reset()
		f.report(log, t0.Add(s.at), s.err)
		if got := strings.TrimSpace(buf.String()); got != s.want {
			t.Errorf("step %d (%v at %v): logged %q, want %q", i, s.err, s.at, got, s.want)
		}
	}
}
