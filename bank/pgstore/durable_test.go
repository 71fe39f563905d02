package pgstore

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
)

// TestDurableSettings: the settings under which a COMMIT could return
// before it is durable are refused, on a connection (checkDurable) and by
// Open, with an error naming the setting and how to set it right:
// synchronous_commit=local once a synchronous standby is configured (a
// failover to the standby loses what the primary acknowledged) and
// fsync=off (a crash of the server's machine loses it). The settings that
// wait for the standby are accepted, and local without a synchronous
// standby is on. full_page_writes=off, safe on storage that never tears a
// page, is accepted with a warning, logged once however many connections
// see it. A server of its own: the settings are the server's.
func TestDurableSettings(t *testing.T) {
	srv := pgtest.New(t)
	dsn := srv.NewDatabase(t)
	// check is checkDurable's answer on a connection with opts added to
	// its connection string.
	check := func(opts string) (string, error) {
		t.Helper()
		conn, err := pgx.Connect(bg, dsn+opts)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(bg)
		return checkDurable(bg, conn)
	}
	refused := func(what, opts string, says ...string) {
		t.Helper()
		_, err := check(opts)
		if err == nil {
			t.Errorf("%s: checkDurable accepted it", what)
			return
		}
		for _, w := range says {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: checkDurable = %q, which does not say %q", what, err, w)
			}
		}
		// Open's pool checks its first connection before it writes.
		if s, err := Open(bg, dsn+opts, Options{Logger: quiet}); err == nil {
			s.Close()
			t.Errorf("%s: Open accepted it", what)
		} else if strings.Count(err.Error(), "pgstore:") != 1 {
			t.Errorf("%s: Open's error says pgstore more than once: %q", what, err)
		}
	}
	// set sets a server parameter and waits until a new connection sees
	// it: the server reloads its configuration after pg_reload_conf
	// returns.
	set := func(name, value string) {
		t.Helper()
		if err := srv.SetConfig(bg, name, value); err != nil {
			t.Fatal(err)
		}
		for {
			conn, err := pgx.Connect(bg, dsn)
			if err != nil {
				t.Fatal(err)
			}
			var got string
			err = conn.QueryRow(bg, `SELECT current_setting($1)`, name).Scan(&got)
			conn.Close(bg)
			if err != nil {
				t.Fatal(err)
			}
			if got == value {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	accepted := func(what, opts string) {
		t.Helper()
		if warning, err := check(opts); err != nil || warning != "" {
			t.Errorf("%s: checkDurable = %q, %v; want neither a warning nor an error", what, warning, err)
		}
	}

	accepted("the defaults", "")
	accepted("synchronous_commit=local without a synchronous standby", " synchronous_commit=local")
	refused("synchronous_commit=off", " synchronous_commit=off", "synchronous_commit is off", "synchronous_commit = on")

	// No commit is made below while the standby is named: none would
	// return, with no standby to confirm it.
	set("synchronous_standby_names", "FIRST 1 (standby1)")
	refused("synchronous_commit=local with a synchronous standby", " synchronous_commit=local",
		"synchronous_commit is local", "synchronous_standby_names", "FIRST 1 (standby1)", "lost on failover", "synchronous_commit = on")
	for _, sc := range []string{"on", "remote_write", "remote_apply"} {
		accepted("synchronous_commit="+sc+" with a synchronous standby", " synchronous_commit="+sc)
	}
	set("synchronous_standby_names", "")

	if err := srv.RestartWith("fsync=off"); err != nil {
		t.Fatal(err)
	}
	refused("fsync=off", "", "runs with fsync=off", "fsync = on")

	if err := srv.RestartWith("full_page_writes=off"); err != nil {
		t.Fatal(err)
	}
	if warning, err := check(""); err != nil || !strings.Contains(warning, "runs with full_page_writes=off") ||
		!strings.Contains(warning, "ZFS") || !strings.Contains(warning, "full_page_writes = on") {
		t.Errorf("full_page_writes=off: checkDurable = %q, %v; want a warning naming it, when it is safe and how to set it on", warning, err)
	}
	var logged syncBuffer
	if s, err := Open(bg, dsn, Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))}); err != nil {
		t.Errorf("full_page_writes=off: Open = %v, want a store and a warning", err)
	} else {
		// Connections beside Open's: each checks, the warning is logged once.
		var held []func()
		for range 3 {
			c, err := s.pool.Acquire(bg)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c.Release)
		}
		for _, release := range held {
			release()
		}
		s.Close()
		if got := logged.String(); strings.Count(got, "full_page_writes=off") != 1 || !strings.Contains(got, "level=WARN") {
			t.Errorf("full_page_writes=off: Open and more connections logged %q, want the warning once", got)
		}
	}
	if err := srv.RestartWith(); err != nil {
		t.Fatal(err)
	}
	accepted("the defaults, restarted", "")
	if s, err := Open(bg, dsn, Options{Logger: quiet}); err != nil {
		t.Errorf("Open with the defaults: %v", err)
	} else {
		s.Close()
	}
}

// syncBuffer is a bytes.Buffer for a logger that the pool's connections
// may write from several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
