// Package pgstore implements [bank.Store] on PostgreSQL with
// github.com/jackc/pgx/v5. It is the bank's scale-out storage: any number of
// stateless bankd replicas, each with its own *Store, share one database.
// It passes the same conformance suite (bank/storetest) as the embedded
// Pebble store and decides every operation the way that store does: the
// same checks in the same order, the same sentinel errors, the account
// policy of [bank.Account] applied in Go inside the transaction.
//
// # Guarantees
//
// Atomic: every mutating call is one database transaction; a refused call
// rolls back and leaves no trace.
//
// Durable on return: a call returns only after its COMMIT has returned.
// With PostgreSQL's default synchronous_commit=on, COMMIT returns only once
// the commit's WAL record is flushed to disk, so an acknowledged operation
// survives a crash of the server. Open, and every connection after it,
// refuses the settings that would acknowledge commits before they are
// durable (checkDurable): synchronous_commit off, or local with a
// synchronous standby configured, and fsync off; remote_write and
// remote_apply flush locally and wait for the standby. full_page_writes
// off is logged as a warning: it is safe on storage that never tears a
// page.
// If the connection fails while a COMMIT is in flight the outcome is
// unknown: the call returns an error matching [ErrCommitUnknown], and since
// every operation is idempotent on its key (payment hash, request hash,
// credit reference, EPOID), the caller's retry is answered from the record
// if the first attempt did commit.
//
// Linearizable, across replicas: every race is decided by the database.
//
// # Isolation
//
// Transactions run at READ COMMITTED. Each mutating transaction
//
//  1. first inserts its idempotency record (payment hash, request hash,
//     credit reference) and, for deposits and swaps, its spent coins and,
//     for withdrawals and swaps, its nonce locks, with INSERT … ON
//     CONFLICT DO NOTHING: a concurrent insert of the same key waits for
//     the other transaction and, if that one commits, inserts nothing, so
//     the primary key decides the race. A coin the insert did not record
//     (it returns those it did) is spent, whatever hash it was spent
//     under, and is reported with the permission of the deposit or swap
//     that spent it, read after the insert;
//  2. then locks the account rows it touches with SELECT … FOR UPDATE, in
//     one fixed order (user accounts by id, then the system accounts by
//     id, so the hot system rows are held as briefly as possible), which
//     also serialises the postings, running balances and policy state of
//     each account;
//  3. decides in Go, in the Pebble store's order, with the reads that
//     followed the locks (under READ COMMITTED each statement sees what
//     was committed before it started, so after a lock wait it sees the
//     lock holder's writes), and either rolls back or writes and commits;
//  4. if it appends to the audit log, takes the log's row lock after its
//     writes, as its last lock, and commits its entry with them (see
//     Audit log).
//
// A check is the exception to step 1: its record holds the decision, so it
// locks the customer's and merchant's rows, reads the EPOID's record, and
// inserts the record with the decision at commit. Two submissions of one
// EPO name the same customer and queue on its row; the EPOID's primary key
// settles any other race (the loser's commit fails, is retried, and finds
// the record). A withdraw refusal (RefuseWithdrawal) is another: it locks
// the account's row, then reads the withdrawal and the refusal under the
// request hash, and a withdrawal reads refusals after taking the same
// lock, so one of the two sees what the other committed.
//
// Coin ids, nonce locks and accounts are taken in sorted order, and the
// log's row after everything else, so transactions do not deadlock in
// normal operation; serialization failures
// and deadlocks (SQLSTATE 40001, 40P01) and unique violations (23505, a
// record inserted concurrently by a path that reads before it writes) are
// retried with bounded, jittered exponential backoff ([Options.MaxRetries]).
// The same code is correct at SERIALIZABLE, where an engine that does not
// offer READ COMMITTED runs it, at the cost of more retries.
//
// READ COMMITTED with row locks was chosen over SERIALIZABLE because every
// withdrawal and deposit updates the Outstanding system account: at
// SERIALIZABLE those updates abort each other (and retry) under load, while
// a row lock queues them.
//
// # Round trips
//
// A mutating call takes two round trips on an acquired connection, each a
// pgx pipeline (pgx.Batch): the first sends BEGIN, the record inserts, the
// lookups and the row locks; the second the updates, the postings and
// COMMIT. The decision between them is the account policy, which lives in
// Go (bank.Account's methods) so that both stores apply the same rules. A
// refusal or a replay sends ROLLBACK instead (a deposit or swap refused
// for a coin the other kind spent under the same hash reads that coin's
// permission first, in a round trip of its own). A change that appends to the
// audit log takes a third: the second batch ends with the log's lock, and
// the third holds the entry and COMMIT. OpenAccount (the insert and the
// lock, then the entry and COMMIT) and PublishKeySet take two.
// Statements are prepared once per connection and cached (pgx's default
// QueryExecModeCacheStatement).
//
// # Contexts
//
// A call whose context is done before it holds a connection changes nothing
// and returns ctx.Err(). Once it holds one it runs to the end, commit
// included, whatever the context does, so that its reply tells the truth.
//
// # Schema
//
// Open applies the schema migrations in schema.go: versioned, forward-only,
// each in its own transaction together with its row in schema_migrations,
// so that concurrent openers apply each exactly once. Tables: accounts,
// postings, counters, credit_refs, deposits, nonce_locks, the audit log's
// log_entries, log_hashes and log_state (log.go), revocations,
// withdraw_refusals (RefuseWithdrawal), and, hash partitioned on
// their natural key into [Partitions] partitions, spent_coins,
// withdrawals, swaps, issued, checks and log_refs. Times are stored as timestamptz, to
// the microsecond: the store truncates operation times to microseconds, so
// a replay answers with the same time as the first call. Table names are
// unqualified: a search_path in the DSN (search_path=bank) puts the store
// in a schema of its own. Open refuses a server older than PostgreSQL 11,
// before anything runs on it, and warns of one older than 15, the release
// the tests run on (checkVersion).
//
// # Postgres-compatible engines
//
// The SQL is plain PostgreSQL DDL and DML, but for one PL/pgSQL function
// and deferred constraint triggers that call it (migrations 13 and 14: the commit
// deadline, which the server judges as the COMMIT runs), no sequences, and one
// advisory lock, held while the schema is migrated at
// Open (pg_advisory_lock; an engine without it would need openers started
// one at a time, and a transaction-mode pooler such as PgBouncer's must not
// stand between the bank and the database, since the lock is a session's).
// It relies on arrays (bytea[], unnest,
// ARRAY(subquery)), INSERT … ON CONFLICT DO NOTHING and DO UPDATE, SELECT
// … FOR UPDATE, LEFT JOIN LATERAL, a data-modifying WITH, generate_series
// and bigint shifts, which CockroachDB and YugabyteDB document as
// supported; the tests here run on PostgreSQL only. The exception is
// declarative hash partitioning (PARTITION BY HASH … FOR VALUES WITH),
// which YugabyteDB accepts and CockroachDB does not (it distributes by key
// itself); a CockroachDB deployment would need a migration without it, and
// another way to judge the commit deadline (it has no constraint
// triggers).
//
// # Audit log
//
// A change the audit log records (bank/auditlog: OpenAccount,
// PublishKeySet, and Credit, Withdraw, Deposit, Swap and Check when their
// op carries a Log) appends its entry in its own transaction, so the log
// and the state it describes commit together or not at all. The log has a
// single sequence for every replica over the database: its size is kept
// in the one row of log_state, and each appending transaction locks that row
// (SELECT … FOR UPDATE) as its last lock, after its decision, pipelined
// behind its writes. Under the lock it reads the size and, in the same
// round trip, the committed stored hashes the new entry needs (the tree's
// frontier); builds an auditlog.Appender on that size (each attempt builds
// its own, so a retried transaction appends afresh); and commits the
// entry, its tlog stored hashes and the new size with the change. The
// lock's queue is the log's order: indexes are gap-free, and entries are
// in commit order. The primary keys of log_entries and log_hashes back the
// lock up: a second entry at one index is a unique violation, retried.
// Refusals, replays (but for a key set published concurrently, compared
// under the lock), an entry the log refuses (checked before the lock) and
// changes without an entry (SetLimits, AuthFailure, Unlock, a nil Log)
// never take the lock; since nothing holding it waits for another lock,
// it adds no deadlock. Reads (LogSize, LogEntries, LogHashes, LogIndex)
// take no lock.
//
// What it costs: a logged change takes one more round trip, and holds the
// log's row for about one round trip, its final inserts and its commit's
// WAL flush. That serialises every logged commit over the database,
// whatever accounts they touch and however many replicas run, and it
// defeats group commit: the store appends at most about one entry per
// (round trip + flush), e.g. some 1,000 a second with a 0.2 ms round trip
// and a 0.8 ms flush. The rows a change locked before (the Outstanding
// account's, for withdrawals and deposits) are held one round trip longer,
// plus any wait for the log. The log's tables grow by one entry and about
// two 32-byte stored hashes per change.
//
// # Revocations
//
// PublishKeySet records the denominations a key set revokes in the
// revocations table, under the log's lock and in its commit, and refuses
// (bank.ErrUnrevoked) a key set that lists one as valid. Every logged
// change whose entry issues or spends coins (bank.LogDenoms) reads that
// table right behind the lock, in the same batch: at READ COMMITTED the
// read sees every key set committed before the lock was granted, and a key
// set published later waits for the change's commit. So each change is
// ordered with each revocation (one that commits after PublishKeySet
// returned was checked, whichever replica ran it), at the cost of an index
// probe held under the lock (15–20 µs of server time) and no round trip.
// Changes without an entry are not checked: the bank logs every
// withdrawal, deposit, swap and recoup.
package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// Errors of this package, besides the bank.Store sentinels.
var (
	// ErrClosed is returned by every call on a closed store.
	ErrClosed = bank.ErrStoreClosed
	// ErrOverflow refuses an operation that would take a balance outside int64.
	ErrOverflow = bank.ErrBalanceOverflow
	// ErrInvalid wraps every refusal of a malformed operation.
	ErrInvalid = bank.ErrInvalidOp
	// ErrCommitUnknown reports that the connection failed while a commit
	// was in flight: the operation may or may not have been applied. A
	// retry of the same operation is answered from its record if it was.
	ErrCommitUnknown = fmt.Errorf("pgstore: connection failed during commit: %w", bank.ErrOutcomeUnknown)
)

// Limits on operation fields, the same as the Pebble store's.
const (
	MaxNameLen       = bank.MaxNameLen
	MaxMemoLen       = bank.MaxMemoLen
	MaxReferenceLen  = bank.MaxReferenceLen
	MaxSigLen        = bank.MaxSigLen
	MaxPermissionLen = bank.MaxPermissionLen
	MaxReceiptLen    = bank.MaxReceiptLen
)

// FirstUserAccount is the id of the first customer or merchant account.
const FirstUserAccount = bank.FirstUserAccount

// SQLSTATE codes the store acts on.
const (
	codeUniqueViolation      = "23505"
	codeSerializationFailure = "40001"
	codeDeadlock             = "40P01"
	codeDuplicateTable       = "42P07"
	codeDuplicateObject      = "42710"
	codeIdleInTransaction    = "25P03" // idle_in_transaction_session_timeout
	// codeTooLate: a trigger of migration 13 or 14 found the database's
	// clock past an operation's deadline as its COMMIT ran.
	codeTooLate = "BB0TL"
)

const defaultMaxRetries = 10

// Options configures a Store.
type Options struct {
	// MaxConns bounds the connection pool; 0 means the DSN's pool_max_conns
	// or, without it, pgxpool's default (the greater of 4 and the number
	// of CPUs).
	MaxConns int32
	// MaxRetries bounds the retries of one operation after serialization
	// failures, deadlocks and unique violations; 0 means 10.
	MaxRetries int
	// Logger receives retries (Debug) and unknown commit outcomes (Error);
	// nil means slog.Default().
	Logger *slog.Logger
	// IdleInTransaction is how long the server lets one of the store's
	// sessions sit idle inside a transaction before it ends the session,
	// rolling the transaction back and releasing its locks; 0 means
	// DefaultIdleInTransaction. A session whose
	// idle_in_transaction_session_timeout is set already (by the DSN, or
	// the role's, database's or server's settings) keeps it.
	IdleInTransaction time.Duration
}

// DefaultIdleInTransaction is Options.IdleInTransaction's default. The
// store's transactions send two or three batches, milliseconds apart, and
// hold row locks (an account's, the audit log's, which every logged commit
// takes) in between: a replica whose process is frozen mid-transaction (a
// paused VM) would hold them until the server noticed the connection
// dead, hours by TCP keepalive, stalling every replica behind the log's
// lock. A minute ends that far sooner, and no transaction of the store's
// waits on its client that long.
const DefaultIdleInTransaction = time.Minute

// Store is a bank.Store on PostgreSQL. It is safe for concurrent use, and
// any number of Stores, in one process or many, may share a database.
type Store struct {
	pool       *pgxpool.Pool
	maxRetries int
	log        *slog.Logger

	mu     sync.RWMutex // guards closed; held shared while registering a call
	closed bool
	calls  sync.WaitGroup

	refs bank.RecentLogRefs // this replica's commits
}

var _ bank.Store = (*Store)(nil)

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword/value string, as pgx accepts), checks that commits are durable,
// and applies the schema migrations.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.MaxConns < 0 || opts.MaxRetries < 0 || opts.IdleInTransaction < 0 {
		return nil, fmt.Errorf("pgstore: negative MaxConns %d, MaxRetries %d or IdleInTransaction %v", opts.MaxConns, opts.MaxRetries, opts.IdleInTransaction)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "blindbank"
	}
	idle := strconv.FormatInt(cmp.Or(opts.IdleInTransaction, DefaultIdleInTransaction).Milliseconds(), 10)
	// Every connection, not only the first: a role or database setting,
	// or a server-wide one since reloaded, can turn durability off after
	// Open (a change while connections stay open is seen as the pool
	// renews them, within its MaxConnLifetime, an hour by default).
	// A warning (full_page_writes=off) is logged once, by the first
	// connection that sees it (Open's own, unless set later), not by each.
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	var warned sync.Map // the warnings logged already
	warn := func(w string) {
		if _, dup := warned.LoadOrStore(w, true); !dup {
			log.Warn(w)
		}
	}
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		if err := checkSession(ctx, conn, warn); err != nil {
			return err
		}
		// Set in the session, not as a startup parameter, which a
		// session-mode pooler (PgBouncer) may refuse; and only if nothing
		// set one (the DSN, the role, the database, the server).
		_, err := conn.Exec(ctx, `SELECT set_config('idle_in_transaction_session_timeout', $1, false)
			WHERE current_setting('idle_in_transaction_session_timeout') = '0'`, idle)
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s := &Store{pool: pool, maxRetries: opts.MaxRetries, log: log}
	if s.maxRetries == 0 {
		s.maxRetries = defaultMaxRetries
	}
	if err := pool.Ping(ctx); err != nil { // a first connection, checked
		pool.Close()
		if errors.As(err, new(sessionError)) {
			return nil, err // checkDurable's or checkClock's, which say pgstore already
		}
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if _, err := migrate(ctx, pool, migrations); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.scanRevocations(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.indexKeySets(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// sessionError is checkVersion's, checkDurable's or checkClock's error,
// which Open passes on as it is.
type sessionError struct{ error }

func (e sessionError) Unwrap() error { return e.error }

// The PostgreSQL releases the store runs on: the schema needs 11 (hash
// partitions, row triggers on partitioned tables, EXECUTE FUNCTION); the
// tests run on 15.
const (
	minServerMajor    = 11
	testedServerMajor = 15
)

// checkVersion refuses a session with a server older than minServerMajor,
// by the version it reported as the session started (server_version: "15.18
// (Debian 15.18-0+deb12u1)"), before anything runs on it: the
// migrations would fail half way; and warns of one older than
// testedServerMajor. A version it cannot read (an engine of its own
// numbering) passes.
func checkVersion(reported string) (warning string, err error) {
	end := strings.IndexFunc(reported, func(r rune) bool { return r < '0' || r > '9' })
	if end < 0 {
		end = len(reported)
	}
	major, perr := strconv.Atoi(reported[:end])
	switch {
	case perr != nil:
		return "", nil
	case major < minServerMajor:
		return "", sessionError{fmt.Errorf("pgstore: PostgreSQL %s is too old: the bank's schema needs 11 or newer, and is tested on 15; upgrade the server", reported)}
	case major < testedServerMajor:
		return fmt.Sprintf("pgstore: the server reports PostgreSQL %s, older than 15, the release the bank is tested on", reported), nil
	}
	return "", nil
}

// Probe implements bank.Prober: a session of its own, outside the pool
// (whose sessions keep the settings they started with, and which may be
// busy), checked as every new session is (checkSession), then closed. It
// fails when the calls needing a new connection would: the server
// unreachable, a setting turned off for the server, the database or the
// bank's role, this replica's clock off.
func (s *Store) Probe(ctx context.Context) error {
	return s.read(ctx, func(ctx context.Context) error {
		conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
		if err != nil {
			return err
		}
		defer conn.Close(context.WithoutCancel(ctx))
		return checkSession(ctx, conn, func(string) {})
	})
}

// checkSession makes the checks every new session passes, in turn:
// checkVersion first (the others use functions a server too old lacks),
// checkDurable, checkClock. warn gets each warning.
func checkSession(ctx context.Context, conn *pgx.Conn, warn func(string)) error {
	warning, err := checkVersion(conn.PgConn().ParameterStatus("server_version"))
	if warning != "" {
		warn(warning)
	}
	if err != nil {
		return err
	}
	if warning, err = checkDurable(ctx, conn); warning != "" {
		warn(warning)
	}
	if err != nil {
		return err
	}
	return checkClock(ctx, conn, time.Now)
}

// checkClock refuses a session when this replica's clock and the database
// server's differ by more than ecash.MaxClockSkew. The bank dates what it
// takes by the replica's clock and the store judges commit deadlines by
// the server's (migration 13): a swap's deadline, an hour after the
// replica took it, would stretch by as much as the replica runs ahead,
// and every swap be refused if it ran an hour behind. Checked as each
// connection is made, so a clock that drifts later is caught as the pool
// renews its connections (within an hour).
func checkClock(ctx context.Context, conn *pgx.Conn, now func() time.Time) error {
	before := now()
	var server time.Time
	if err := conn.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&server); err != nil {
		return err
	}
	after := now()
	local := before.Add(after.Sub(before) / 2)
	off := local.Sub(server)
	if off.Abs() <= ecash.MaxClockSkew {
		return nil
	}
	way := "ahead of"
	if off < 0 {
		way = "behind"
	}
	return sessionError{fmt.Errorf("pgstore: this replica's clock is %s %s the database server's (%s against %s), more than the %s allowed: synchronise both (chrony or systemd-timesyncd)",
		off.Abs().Round(time.Second), way, local.UTC().Format(time.RFC3339), server.UTC().Format(time.RFC3339), ecash.MaxClockSkew)}
}

// checkDurable refuses a session whose commits could return before they
// are durable, since the bank answers once COMMIT returns:
//   - fsync=off: the server does not flush its WAL at all, and a crash of
//     its machine loses or corrupts what it acknowledged;
//   - synchronous_commit=off: COMMIT returns before the WAL flush;
//   - synchronous_commit=local while synchronous_standby_names is set:
//     COMMIT returns before the synchronous standby has the commit, which
//     the operator asked for, so a failover to it loses it (without a
//     synchronous standby, local is on: the primary's flush is all there
//     is to wait for).
//
// remote_write and remote_apply wait for the standby too. A setting an
// engine lacks (NULL) is one it manages itself. It runs on every
// connection the pool makes, so a change made later refuses the next.
//
// full_page_writes=off it accepts, returning a warning for the log: every
// commit is still flushed before COMMIT returns; the setting guards the
// data pages against a write torn by a crash of the machine, which some
// storage never tears (ZFS, whose users turn it off for that reason), and
// only the operator knows the storage.
func checkDurable(ctx context.Context, conn *pgx.Conn) (warning string, err error) {
	var sc, standbys, fsync, fpw *string
	err = conn.QueryRow(ctx, `SELECT current_setting('synchronous_commit', true),
		current_setting('synchronous_standby_names', true),
		current_setting('fsync', true), current_setting('full_page_writes', true)`).Scan(&sc, &standbys, &fsync, &fpw)
	if err != nil {
		return "", sessionError{fmt.Errorf("pgstore: %w", err)}
	}
	is := func(v *string, want string) bool { return v != nil && *v == want }
	switch {
	case is(fsync, "off"):
		return "", sessionError{errors.New("pgstore: the server runs with fsync=off: commits would be acknowledged without ever being flushed to disk; set fsync = on in postgresql.conf (or ALTER SYSTEM RESET fsync) and reload")}
	case is(sc, "off"):
		return "", sessionError{errors.New("pgstore: synchronous_commit is off: commits would be acknowledged before they are durable; set synchronous_commit = on (the default) for the server, the database or the bank's role, or drop it from the connection string")}
	case is(sc, "local") && standbys != nil && strings.TrimSpace(*standbys) != "":
		return "", sessionError{fmt.Errorf("pgstore: synchronous_commit is local while synchronous_standby_names is %q: commits would be acknowledged before the synchronous standby has them, and lost on failover; set synchronous_commit = on (the default) for the server, the database or the bank's role, or drop it from the connection string", *standbys)}
	case is(fpw, "off"):
		return "pgstore: the server runs with full_page_writes=off: unless its storage never tears a page (ZFS), a crash of its machine can corrupt pages holding acknowledged commits; set full_page_writes = on in postgresql.conf (or ALTER SYSTEM RESET full_page_writes) and reload", nil
	}
	return "", nil
}

// Close stops accepting calls (later calls return ErrClosed), waits for
// calls in progress, and closes the connection pool.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.calls.Wait()
	s.pool.Close()
	return nil
}

// enter registers a call, or refuses it if the store is closed.
func (s *Store) enter() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	s.calls.Add(1)
	return nil
}

// txn is one attempt of a mutating operation on an acquired connection.
type txn struct {
	c   *pgx.Conn
	ctx context.Context
	// committing is set once a COMMIT has been sent: a connection
	// failure after it leaves the outcome unknown.
	committing bool
	// ref and refIndex: the entry appendLog recorded under a ref, for
	// the store to remember once the transaction has committed.
	ref      *ecash.Hash
	refIndex int64
}

// send sends b and runs the callbacks queued on it, returning the first error.
func (t *txn) send(b *pgx.Batch) error {
	return t.c.SendBatch(t.ctx, b).Close()
}

// begin starts a batch that opens a READ COMMITTED transaction.
func begin() *pgx.Batch {
	b := &pgx.Batch{}
	b.Queue(`BEGIN ISOLATION LEVEL READ COMMITTED`)
	return b
}

// deadline queues, on b before the operation inserts its record, its
// deadline (an operation's NotAfter; zero: none), which the
// server checks by its own clock as the COMMIT runs (migrations 13, 14): past
// it, the COMMIT fails and commits nothing, and commit refuses the
// operation (bank.ErrTooLate).
func deadline(b *pgx.Batch, notAfter time.Time) {
	if !notAfter.IsZero() {
		b.Queue(`SELECT set_config('blindbank.not_after', $1, true)`, notAfter.UTC().Format("2006-01-02T15:04:05.999999Z07:00"))
	}
}

// commit sends b followed by COMMIT.
func (t *txn) commit(b *pgx.Batch) error {
	var tag pgconn.CommandTag
	b.Queue(`COMMIT`).Exec(func(ct pgconn.CommandTag) error { tag = ct; return nil })
	t.committing = true
	if err := t.send(b); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == codeTooLate {
			return refuse(fmt.Errorf("%w (%s)", bank.ErrTooLate, pgErr.Message))
		}
		return err
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("pgstore: COMMIT answered %q", tag.String())
	}
	return nil
}

// errRefused carries an operation's decision (a sentinel error) out of the
// transaction: the runner rolls back and returns it as is.
type errRefused struct{ err error }

func (e errRefused) Error() string { return e.err.Error() }
func (e errRefused) Unwrap() error { return e.err }

func refuse(err error) error { return errRefused{err} }

// mutate runs fn, a mutating operation, on one connection: it retries fn
// on serialization failures, deadlocks and unique violations, rolls back
// whatever fn leaves open, and maps errors. fn returns nil after a commit,
// or an error (refuse(sentinel) for a decision) with the transaction left
// for the runner to roll back. A replay that answers from a record returns
// nil without committing.
func (s *Store) mutate(ctx context.Context, op string, fn func(t *txn) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return unavailable(op, err)
	}
	defer conn.Release() // a connection left inside a transaction is destroyed
	// Taken up: from here on the operation completes whatever ctx does.
	octx := context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		t := &txn{c: conn.Conn(), ctx: octx}
		err := fn(t)
		if rerr := rollback(t); rerr != nil && err == nil {
			err = rerr
		}
		var refused errRefused
		switch {
		case err == nil:
			if t.ref != nil {
				s.refs.Add(*t.ref, t.refIndex)
			}
			return nil
		case errors.As(err, &refused):
			return refused.err
		case t.committing && !definite(err):
			s.log.Error("pgstore: commit outcome unknown", "op", op, "err", err)
			return fmt.Errorf("%w: %s: %w", ErrCommitUnknown, op, err)
		case retryable(err) && attempt < s.maxRetries && !conn.Conn().IsClosed():
			s.log.Debug("pgstore: retrying", "op", op, "attempt", attempt+1, "err", err)
			time.Sleep(backoff(attempt))
		case !t.committing && connectionLost(err):
			// The server ends a transaction whose connection is gone.
			return unavailable(op, err)
		default:
			return fmt.Errorf("pgstore: %s: %w", op, err)
		}
	}
}

// rollback ends a transaction that t left open (after a refusal, a replay
// or an error). A connection where that fails is closed, so the pool
// discards it.
func rollback(t *txn) error {
	if t.c.IsClosed() || t.c.PgConn().TxStatus() == 'I' {
		return nil
	}
	if _, err := t.c.Exec(t.ctx, `ROLLBACK`); err != nil {
		_ = t.c.Close(t.ctx)
		return fmt.Errorf("pgstore: rollback: %w", err)
	}
	return nil
}

// definite reports whether err means the server refused the transaction,
// so that a COMMIT sent with it cannot have taken effect: an ordinary
// statement error, or a failure before anything was sent. A lost
// connection, or a FATAL error while the server shuts down, are not.
func definite(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server ended the session for sitting idle inside the
		// transaction (DefaultIdleInTransaction): before its COMMIT ran.
		return pgErr.Severity == "ERROR" || pgErr.SeverityUnlocalized == "ERROR" || pgErr.Code == codeIdleInTransaction
	}
	return pgconn.SafeToRetry(err)
}

// connectionLost reports whether err means the server could not be
// reached or the connection to it failed, rather than that it refused a
// statement: a failed dial, a network error, or the server shutting down
// or not yet accepting connections (SQLSTATE classes 08 and 57P).
func connectionLost(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) || errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err)
}

// unavailable wraps a failure to reach the server, after which nothing was
// done, as bank.ErrStoreUnavailable (gRPC Unavailable: retry later), and
// any other error as it is. A session refused after Open (checkDurable,
// checkClock: a setting turned off, a clock that drifted, seen as the pool
// renews its connections) is one: this replica can do nothing until it is
// put right, another may, and the log names the cause (bank.ToStatus).
func unavailable(op string, err error) error {
	if connectionLost(err) || errors.As(err, new(sessionError)) {
		return fmt.Errorf("pgstore: %s: %w: %w", op, bank.ErrStoreUnavailable, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case codeSerializationFailure, codeDeadlock, codeUniqueViolation:
		return true
	}
	return false
}

// backoff is the pause before retry attempt+1: full jitter over an
// exponential bound, 2ms doubling up to 100ms.
func backoff(attempt int) time.Duration {
	bound := 2 * time.Millisecond << min(attempt, 6)
	bound = min(bound, 100*time.Millisecond)
	return time.Duration(rand.Int64N(int64(bound))) + time.Millisecond/2
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sessionLost reports whether err ended a session that had been made: not
// a failure to make one (a server down or unreachable), which a new
// attempt would only repeat, each as slowly.
func sessionLost(err error) bool {
	var connectErr *pgconn.ConnectError
	return connectionLost(err) && !errors.As(err, &connectErr)
}

// readAttempts bounds the sends of a read whose session was lost: a
// server restarted or failed over ends every pooled session, and the pool
// notices only when one is used (or pings it, after a second idle).
const readAttempts = 3

// read runs a read-only call with ctx, which it honours throughout. A read
// whose session was lost is sent again, on another session, up to
// readAttempts in all: it changed nothing, and the caller would only have
// retried it after an UNAVAILABLE. So fn may run more than once, each time
// from the start: it resets whatever it fills.
func (s *Store) read(ctx context.Context, fn func(ctx context.Context) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	err := fn(ctx)
	for attempt := 1; attempt < readAttempts && err != nil && ctx.Err() == nil && sessionLost(err); attempt++ {
		err = fn(ctx)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var refused errRefused
		if errors.As(err, &refused) {
			return refused.err
		}
		return unavailable("read", err)
	}
	return nil
}
