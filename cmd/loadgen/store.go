package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/cmd/internal/cli"
)

// The bank's store in a run: Pebble in the run's directory (the default,
// one bank), or PostgreSQL, with any number of bank replicas over it.

// storeConfig is what --store and --replicas asked for.
type storeConfig struct {
	Postgres bool
	// DSN is the database given with --store postgres://…; empty with
	// Postgres: a throwaway server loadgen starts and removes.
	DSN      string
	Replicas int
	// Pool is each replica's connection pool; 0 leaves pgxpool's
	// default (or the DSN's pool_max_conns), as bankd does.
	Pool int
}

// Bounds of --replicas.
const maxReplicas = 16

// parseStore reads --store and --replicas.
func parseStore(store string, replicas, pool int) (storeConfig, error) {
	var c storeConfig
	switch {
	case store == "pebble":
	case store == "postgres":
		c.Postgres = true
	case strings.HasPrefix(store, "postgres://"), strings.HasPrefix(store, "postgresql://"):
		c.Postgres, c.DSN = true, store
	default:
		return c, cli.Usagef("bad --store %q: want pebble, postgres (a throwaway server) or a postgres:// URL", store)
	}
	if replicas < 1 || replicas > maxReplicas {
		return c, cli.Usagef("bad --replicas %d: want 1 to %d", replicas, maxReplicas)
	}
	if replicas > 1 && !c.Postgres {
		return c, cli.Usagef("--replicas %d needs --store postgres: replicas share one PostgreSQL database (a Pebble store serves one bank)", replicas)
	}
	if pool < 0 || pool > maxPool {
		return c, cli.Usagef("bad --pool %d: want 0 to %d", pool, maxPool)
	}
	if pool > 0 && !c.Postgres {
		return c, cli.Usagef("--pool applies to --store postgres only")
	}
	c.Replicas, c.Pool = replicas, pool
	return c, nil
}

// maxPool bounds --pool: the throwaway server allows 200 connections.
const maxPool = 64

// withPool returns dsn (a URL or keyword/value string) with pool_max_conns
// set to n, or dsn itself if n is 0.
func withPool(dsn string, n int) (string, error) {
	if n == 0 {
		return dsn, nil
	}
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn + " pool_max_conns=" + strconv.Itoa(n), nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", fmt.Errorf("--store: %w", err)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// pgDatabase is the PostgreSQL database of a run: on a throwaway server
// loadgen started (removed by close), or one the user gave, which must hold
// no bank yet. loadgen keeps a connection of its own for statistics.
type pgDatabase struct {
	dsn    string         // loadgen's own connections
	banks  string         // the banks': dsn with --pool
	server *pgtest.Server // nil for a given database
	conn   *pgx.Conn
}

// openPostgres starts a throwaway server (dsn empty) or connects to dsn,
// and checks that the database is empty of any bank and that its commits
// are durable.
func openPostgres(ctx context.Context, dsn string, pool int) (*pgDatabase, error) {
	p := &pgDatabase{dsn: dsn}
	if dsn == "" {
		s, err := pgtest.Start()
		if err != nil {
			return nil, fmt.Errorf("starting a throwaway PostgreSQL server: %w", err)
		}
		p.server = s
		if p.dsn, err = s.CreateDatabase(ctx); err != nil {
			p.close()
			return nil, err
		}
	}
	var err error
	if p.conn, err = pgx.Connect(ctx, p.dsn); err != nil {
		p.close()
		return nil, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	var bankTables bool
	if err := p.conn.QueryRow(ctx, `SELECT to_regclass('accounts') IS NOT NULL OR to_regclass('log_state') IS NOT NULL`).Scan(&bankTables); err != nil {
		p.close()
		return nil, fmt.Errorf("PostgreSQL: %w", err)
	}
	if bankTables {
		p.close()
		return nil, errors.New("--store: the database already holds a bank's tables; loadgen opens accounts and moves money in it: give it an empty database")
	}
	if p.banks, err = withPool(p.dsn, pool); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *pgDatabase) close() {
	if p == nil {
		return
	}
	if p.conn != nil {
		p.conn.Close(context.Background())
	}
	if p.server != nil {
		p.server.Stop()
	}
}

// pgReport describes the PostgreSQL server and what it did during the
// timed phase.
type pgReport struct {
	Server            string `json:"server"` // "throwaway" or "given"
	Version           string `json:"version"`
	Fsync             string `json:"fsync"`
	SynchronousCommit string `json:"synchronous_commit"`
	FullPageWrites    string `json:"full_page_writes"`
	SharedBuffers     string `json:"shared_buffers"`
	// PoolPerReplica is each replica's connection pool (pgxpool's default
	// unless the DSN sets pool_max_conns).
	PoolPerReplica int `json:"pool_per_replica"`

	// Over the timed phase. CPUUs and CoresBusy only for a throwaway
	// server (its processes' CPU time, from /proc): -1 otherwise.
	CPUUs     float64 `json:"cpu_us_per_coin"`
	CoresBusy float64 `json:"cores_busy"`
	// Transactions is pg_stat_database's xact_commit: every committed
	// transaction, the banks' single-statement reads included.
	Transactions  int64   `json:"transactions"`
	WALBytesPerOp float64 `json:"wal_bytes_per_op"`
	WALSyncs      int64   `json:"wal_syncs"`
	// OpsPerSync is the phase's operations per WAL flush: how well
	// commits are grouped.
	OpsPerSync    float64 `json:"ops_per_wal_sync,omitempty"`
	DatabaseBytes int64   `json:"database_bytes"` // at the end of the phase
	// Waits: the banks' backends, sampled every waitSampleEvery during the
	// phase: how many were, on average, in each state (pg_stat_activity:
	// "active/CPU" runs, "active/Lock:tuple" waits for a row lock,
	// "idle in transaction" waits for the bank's next statement, ...).
	Waits    []waitShare `json:"waits,omitempty"`
	Backends float64     `json:"backends"` // connected, on average
}

type waitShare struct {
	State    string  `json:"state"`
	Backends float64 `json:"backends"`
}

// settings fills in the server's version and durability settings. It
// refuses a server that would acknowledge commits before they are on disk.
func (p *pgDatabase) settings(ctx context.Context, r *pgReport) error {
	r.Server = "given"
	if p.server != nil {
		r.Server = "throwaway"
	}
	for _, s := range []struct {
		name string
		to   *string
	}{
		{"server_version", &r.Version}, {"fsync", &r.Fsync}, {"synchronous_commit", &r.SynchronousCommit},
		{"full_page_writes", &r.FullPageWrites}, {"shared_buffers", &r.SharedBuffers},
	} {
		if err := p.conn.QueryRow(ctx, `SELECT current_setting($1)`, s.name).Scan(s.to); err != nil {
			return fmt.Errorf("PostgreSQL setting %s: %w", s.name, err)
		}
	}
	if r.Fsync != "on" || r.SynchronousCommit == "off" {
		return fmt.Errorf("PostgreSQL runs with fsync=%s, synchronous_commit=%s: commits would not be durable, and loadgen measures durable writes only", r.Fsync, r.SynchronousCommit)
	}
	cfg, err := pgxpool.ParseConfig(p.banks)
	if err != nil {
		return err
	}
	r.PoolPerReplica = int(cfg.MaxConns)
	return nil
}

// pgSnapshot is what the phase's PostgreSQL figures are differences of.
type pgSnapshot struct {
	walLSN   string
	commits  int64
	walSyncs int64
	dbBytes  int64
	cpu      time.Duration
	cpuOK    bool
}

// snapshot reads the server's counters. The statistics views lag by up to
// a second (backends flush their counters at most once a second).
func (p *pgDatabase) snapshot(ctx context.Context) (pgSnapshot, error) {
	var s pgSnapshot
	err := p.conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text,
			(SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()),
			(SELECT wal_sync FROM pg_stat_wal),
			pg_database_size(current_database())`).Scan(&s.walLSN, &s.commits, &s.walSyncs, &s.dbBytes)
	if err != nil {
		return s, fmt.Errorf("PostgreSQL statistics: %w", err)
	}
	if p.server != nil {
		s.cpu, s.cpuOK = p.serverCPU()
	}
	return s, nil
}

// walBytes is the WAL written between two snapshots.
func (p *pgDatabase) walBytes(ctx context.Context, a, b pgSnapshot) (int64, error) {
	var n int64
	err := p.conn.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint`, b.walLSN, a.walLSN).Scan(&n)
	return n, err
}

// serverCPU is the CPU time (user and system) of the throwaway server's
// processes: the postmaster and its children (backends, WAL writer,
// checkpointer, autovacuum), read from /proc. A child that exited since
// the last reading takes its time with it; the banks' backends live as
// long as their pools.
func (p *pgDatabase) serverCPU() (time.Duration, bool) {
	b, err := os.ReadFile(filepath.Join(p.server.Dir, "data", "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pm, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 0, false
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, false
	}
	var ticks int64
	found := false
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, t, ok := procStat(pid)
		if ok && (pid == pm || ppid == pm) {
			ticks += t
			found = found || pid == pm
		}
	}
	return clockTicks(ticks), found
}

// procStat reads a process's parent and its user+system CPU ticks from
// /proc/PID/stat.
func procStat(pid int) (ppid int, ticks int64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name, in parentheses, may hold anything: the fields
	// after it start at the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
	if len(f) < 13 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return ppid, ut + st, true
}

// waitSampleEvery is how often the wait sampler looks at the banks'
// backends.
const waitSampleEvery = 50 * time.Millisecond

// sampleWaits samples pg_stat_activity for the banks' backends
// (application_name blindbank) on a connection of its own until stop is
// closed, then returns the average number of backends in each state.
func sampleWaits(ctx context.Context, dsn string, stop <-chan struct{}) ([]waitShare, float64, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Close(context.Background())
	counts := map[string]int64{}
	var samples, backends int64
	t := time.NewTicker(waitSampleEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			var out []waitShare
			if samples == 0 {
				return nil, 0, nil
			}
			for s, n := range counts {
				out = append(out, waitShare{State: s, Backends: float64(n) / float64(samples)})
			}
			slices.SortFunc(out, func(a, b waitShare) int {
				if a.Backends != b.Backends {
					if a.Backends > b.Backends {
						return -1
					}
					return 1
				}
				return strings.Compare(a.State, b.State)
			})
			return out, float64(backends) / float64(samples), nil
		case <-t.C:
		}
		rows, err := conn.Query(ctx, `SELECT coalesce(state, '?'), coalesce(wait_event_type, ''), coalesce(wait_event, '')
			FROM pg_stat_activity WHERE application_name = 'blindbank' AND pid <> pg_backend_pid()`)
		if err != nil {
			return nil, 0, err
		}
		for rows.Next() {
			var state, typ, event string
			if err := rows.Scan(&state, &typ, &event); err != nil {
				rows.Close()
				return nil, 0, err
			}
			backends++
			switch {
			case state == "idle":
				continue // in the pool, not in a transaction
			case state == "active" && typ == "":
				state = "active/CPU"
			case typ != "":
				state += "/" + typ + ":" + event
			}
			counts[state]++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, 0, err
		}
		samples++
	}
}

// pgPhase measures the database over the timed phase: start before it,
// finish after.
type pgPhase struct {
	db    *pgDatabase
	s0    pgSnapshot
	stop  chan struct{}
	wg    sync.WaitGroup
	waits []waitShare
	conns float64
	err   error
}

func (p *pgDatabase) startPhase(ctx context.Context) (*pgPhase, error) {
	ph := &pgPhase{db: p, stop: make(chan struct{})}
	var err error
	if ph.s0, err = p.snapshot(ctx); err != nil {
		return nil, err
	}
	ph.wg.Go(func() { ph.waits, ph.conns, ph.err = sampleWaits(ctx, p.dsn, ph.stop) })
	return ph, nil
}

// finish stops the sampler and fills in r's figures for the phase of
// elapsed seconds, ops operations and coins coins.
func (ph *pgPhase) finish(ctx context.Context, r *pgReport, elapsed float64, ops, coins int64) error {
	close(ph.stop)
	ph.wg.Wait()
	if ph.err != nil {
		return fmt.Errorf("sampling PostgreSQL's backends: %w", ph.err)
	}
	s1, err := ph.db.snapshot(ctx)
	if err != nil {
		return err
	}
	wal, err := ph.db.walBytes(ctx, ph.s0, s1)
	if err != nil {
		return err
	}
	r.Waits, r.Backends = ph.waits, ph.conns
	r.Transactions, r.WALSyncs = s1.commits-ph.s0.commits, s1.walSyncs-ph.s0.walSyncs
	if r.WALSyncs > 0 {
		r.OpsPerSync = float64(ops) / float64(r.WALSyncs)
	}
	r.WALBytesPerOp = float64(wal) / float64(ops)
	r.DatabaseBytes = s1.dbBytes
	r.CPUUs, r.CoresBusy = -1, -1
	if ph.s0.cpuOK && s1.cpuOK {
		cpu := s1.cpu - ph.s0.cpu
		r.CPUUs, r.CoresBusy = perCoinUs(cpu, coins), cpu.Seconds()/elapsed
	}
	return nil
}

// serverCPUDelta is the throwaway server's CPU over the phase, for the
// "other processes" figure; 0 if unknown.
func (r *pgReport) serverCPU(elapsed float64) time.Duration {
	if r == nil || r.CoresBusy < 0 {
		return 0
	}
	return time.Duration(r.CoresBusy * elapsed * float64(time.Second))
}

// settle brings the database to a steady state after a prefill: VACUUM
// (ANALYZE), then a CHECKPOINT, so that neither autovacuum nor the
// checkpoint of the prefill's writes runs in the timed phase.
func (p *pgDatabase) settle(ctx context.Context) error {
	for _, sql := range []string{`VACUUM (ANALYZE)`, `CHECKPOINT`} {
		if _, err := p.conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s after the prefill: %w", sql, err)
		}
	}
	return nil
}
