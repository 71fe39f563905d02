package pgstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestServerVersion: a server older than 11 is refused a session before
// anything runs on it, saying which version it is and what is needed; 11
// to 14 pass with a warning; 15 and newer, and a version the store cannot
// read, pass without one. The test server passes.
func TestServerVersion(t *testing.T) {
	for _, tc := range []struct {
		reported   string
		refused    bool
		warned     bool
		mentioning string
	}{
		{"9.5.25", true, false, "9.5.25 is too old"},
		{"10.23", true, false, "needs 11 or newer"},
		{"11.22", false, true, "11.22, older than 15"},
		{"14.19 (Debian 14.19-1)", false, true, "older than 15"},
		{"15.18 (Debian 15.18-0+deb12u1)", false, false, ""},
		{"18beta1", false, false, ""},
		{"", false, false, ""},
		{"v24.1", false, false, ""},
	} {
		warning, err := checkVersion(tc.reported)
		if (err != nil) != tc.refused || (warning != "") != tc.warned {
			t.Errorf("PostgreSQL %q: warning %q, error %v; want refused %v, warned %v", tc.reported, warning, err, tc.refused, tc.warned)
		}
		if err != nil && !errors.As(err, new(sessionError)) {
			t.Errorf("PostgreSQL %q: %v is not passed on as it is", tc.reported, err)
		}
		if got := warning + errString(err); !strings.Contains(got, tc.mentioning) {
			t.Errorf("PostgreSQL %q: %q; want it to say %q", tc.reported, got, tc.mentioning)
		}
	}
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	conn, err := s.pool.Acquire(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	reported := conn.Conn().PgConn().ParameterStatus("server_version")
	if _, err := checkVersion(reported); err != nil || reported == "" {
		t.Errorf("the test server reports %q: %v", reported, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDevelopmentMigration13Repaired: a database a development build of
// migration 13 migrated has its function and one trigger, on accounts
// (AFTER UPDATE), recorded as version 13. Migration 14 drops that trigger
// and leaves the deadline's trigger on each operation's record, checks'
// included, as on a database the landed migration 13 made.
func TestDevelopmentMigration13Repaired(t *testing.T) {
	devel := migrations[12]
	devel.steps = []string{devel.steps[0], `CREATE CONSTRAINT TRIGGER accounts_not_after AFTER UPDATE ON accounts
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
			WHEN (current_setting('blindbank.not_after', true) <> '')
			EXECUTE FUNCTION blindbank_not_after()`}
	for name, first := range map[string][]migration{
		"the development build's": append(append([]migration{}, migrations[:12]...), devel),
		"the landed one's":        migrations[:13],
	} {
		dsn := freshDSN(t)
		pool, err := pgxpool.New(bg, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		if _, err := migrate(bg, pool, first); err != nil {
			t.Fatal(err)
		}
		// A long read of the operations' tables (an auditor's, a dump)
		// while a replica migrates: on a database the landed migration
		// 13 made, migration 14 takes no lock that waits for it.
		reader, err := pool.Begin(bg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reader.Exec(bg, `SELECT FROM withdrawals, deposits, refunds, swaps, accounts LIMIT 1`); err != nil {
			t.Fatal(err)
		}
		if name == "the development build's" {
			reader.Rollback(bg) // its repair must take the tables' locks
		}
		ctx, cancel := context.WithTimeout(bg, 10*time.Second)
		s, err := Open(ctx, dsn, Options{MaxConns: 2, Logger: quiet})
		cancel()
		reader.Rollback(bg)
		if err != nil {
			t.Fatalf("migrating from %s migration 13: %v", name, err)
		}
		s.Close()
		for table, want := range map[string]int{"accounts": 0, "withdrawals": 1, "deposits": 1, "refunds": 1, "swaps": 1, "checks": 1} {
			var n int
			if err := pool.QueryRow(bg, `SELECT count(*) FROM pg_trigger WHERE tgname = $1 AND tgrelid = $2::regclass`, table+"_not_after", table).Scan(&n); err != nil || n != want {
				t.Errorf("after %s migration 13 and 14: %s_not_after: %d, %v; want %d", name, table, n, err, want)
			}
		}
	}
}

// TestReadAfterSessionsEnded: the server ends every session of the store
// (a restart, a failover, an operator's pg_terminate_backend) just after
// they were used, so the pool has not pinged them. A read is sent again on
// another session and answers; it used to fail UNAVAILABLE, once per dead
// session the pool handed out.
func TestReadAfterSessionsEnded(t *testing.T) {
	dsn := freshDSN(t)
	s, err := Open(bg, dsn, Options{MaxConns: 2, Logger: quiet}) // at most two sessions to end: fewer than readAttempts
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := openAccount(t, s, "c", false)
	admin, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(bg)
	for round := range 3 {
		// Two sessions in the pool, both used just now.
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if err := s.read(bg, func(ctx context.Context) error {
					_, err := s.pool.Exec(ctx, `SELECT pg_sleep(0.02)`)
					return err
				}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		var pids []int32
		if err := admin.QueryRow(bg, `SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&pids); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.Exec(bg, `SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid`, pids); err != nil {
			t.Fatal(err)
		}
		for left := len(pids); left > 0; {
			if err := admin.QueryRow(bg, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, pids).Scan(&left); err != nil {
				t.Fatal(err)
			}
		}
		if a, err := s.Account(bg, c); err != nil || a.ID != c {
			t.Errorf("round %d: a read after the store's %d sessions were ended: %+v, %v; want the account", round, len(pids), a, err)
		}
	}
}
