package pgtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Streaming replication: a primary and a hot standby made from it with
// pg_basebackup, as docs/OPERATIONS.md ("Streaming replica and failover")
// tells an operator to set them up, but on unix sockets in private
// directories.

// EnableReplication makes s ready to serve streaming standbys: it adds a
// pg_hba.conf line that lets the superuser connect for replication over
// the unix socket (trust: the socket lies in s's private directory), sets
// wal_level = replica and max_wal_senders = 10 with ALTER SYSTEM, and
// restarts s if the running wal_level was not already replica.
func (s *Server) EnableReplication(ctx context.Context) error {
	hba := filepath.Join(s.dataDir(), "pg_hba.conf")
	f, err := os.OpenFile(hba, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	// initdb --auth=trust allowed it already; the line says so, as an
	// operator's pg_hba.conf must (see docs/OPERATIONS.md).
	line := fmt.Sprintf("\n# pgtest: streaming replication over the socket\nlocal   replication     %s                                trust\n", superuser)
	_, err = f.WriteString(line)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest: %s: %w", hba, err)
	}
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(ctx)
	var level string
	for _, q := range []string{
		`ALTER SYSTEM SET wal_level = 'replica'`,
		`ALTER SYSTEM SET max_wal_senders = 10`,
		`SELECT pg_reload_conf()`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("pgtest: %s: %w", q, err)
		}
	}
	if err := conn.QueryRow(ctx, `SHOW wal_level`).Scan(&level); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	if level == "replica" || level == "logical" {
		return nil
	}
	conn.Close(ctx)
	if out, err := s.run("pg_ctl", "stop", "-D", s.dataDir(), "-m", "fast", "-w", "-s"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return s.Restart()
}

// SetConfig sets a server parameter with ALTER SYSTEM (it is written to
// postgresql.auto.conf) and reloads the configuration. An empty value
// resets the parameter to its default.
func (s *Server) SetConfig(ctx context.Context, name, value string) error {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer conn.Close(ctx)
	// ALTER SYSTEM takes no parameters: quote the value as a literal.
	q := "ALTER SYSTEM SET " + pgx.Identifier{name}.Sanitize() + " = " + quoteLiteral(value)
	if value == "" {
		q = "ALTER SYSTEM RESET " + pgx.Identifier{name}.Sanitize()
	}
	if _, err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("pgtest: %s: %w", q, err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	return nil
}

func quoteLiteral(v string) string {
	out := []byte{'\''}
	for i := 0; i < len(v); i++ {
		if v[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, v[i])
	}
	return string(append(out, '\''))
}

// StartStandby makes a hot standby of s, which must have replication
// enabled (EnableReplication), in a new temporary directory and starts
// it: pg_basebackup -R -X stream copies s's data directory and writes
// standby.signal and primary_conninfo (with application_name name, the
// name synchronous_standby_names and pg_stat_replication know it by), and
// -C -S creates the physical replication slot name on s, so that s keeps
// the WAL the standby has not received. The standby streams from s over
// s's socket, and accepts read-only connections on its own. The caller
// must Stop it.
func (s *Server) StartStandby(name string) (*Server, error) {
	if fi, err := os.Stat(filepath.Join(s.bin, "pg_basebackup")); err != nil || fi.IsDir() {
		return nil, fmt.Errorf("pgtest: pg_basebackup not found beside the server binaries in %s", s.bin)
	}
	base := filepath.Dir(s.Dir)
	dir, err := os.MkdirTemp(base, "bbpg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	sb := &Server{Dir: dir, Port: 20000 + rand.IntN(40000), bin: s.bin, as: s.as}
	for sb.Port == s.Port {
		sb.Port = 20000 + rand.IntN(40000)
	}
	if err := sb.as.own(dir); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	primary := fmt.Sprintf("host=%s port=%d user=%s application_name=%s", s.Dir, s.Port, superuser, name)
	if out, err := sb.run("pg_basebackup", "-D", sb.dataDir(), "-d", primary,
		"-R", "-X", "stream", "-C", "-S", name, "--checkpoint=fast", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: pg_basebackup: %w\n%s", err, out)
	}
	live.add(sb) // stopped on a signal, as the servers Start makes
	if err := sb.Restart(); err != nil {
		live.remove(sb)
		os.RemoveAll(dir)
		return nil, err
	}
	return sb, nil
}

// NewStandby is StartStandby for tb: the standby is stopped when tb ends.
// Without pg_basebackup tb is skipped or failed (see Unavailable); any
// other failure fails it.
func (s *Server) NewStandby(tb testing.TB, name string) *Server {
	tb.Helper()
	if fi, err := os.Stat(filepath.Join(s.bin, "pg_basebackup")); err != nil || fi.IsDir() {
		Unavailable(tb, fmt.Errorf("pg_basebackup not found beside the server binaries in %s", s.bin))
	}
	sb, err := s.StartStandby(name)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := sb.Stop(); err != nil {
			tb.Errorf("%v", err)
		}
	})
	return sb
}

// Promote ends a standby's recovery (pg_ctl promote): once the WAL it
// received is replayed it becomes a primary that accepts writes. It waits
// until the promotion is complete.
func (s *Server) Promote() error {
	if out, err := s.run("pg_ctl", "promote", "-D", s.dataDir(), "-w", "-t", "120", "-s"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl promote: %w\n%s\n%s", err, out, s.logTail())
	}
	return nil
}
