package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/blindbank/blindbank/bank"
)

// Partitions is the number of hash partitions of the spent-coin, withdrawal
// and check tables. It is part of migration 1: changing it needs a new
// migration that repartitions.
const Partitions = 8

// migration is one forward-only step of the schema. Its steps run in one
// transaction together with the insert of its version into
// schema_migrations, so a migration is applied completely or not at all,
// and exactly once however many stores open the database at the same time.
type migration struct {
	version int
	name    string
	steps   []string // SQL statements without parameters
}

// migrations is the schema, oldest first. Never edit a released migration:
// append a new one. The SQL is plain DDL and DML (no PL/pgSQL) so that it
// also runs on Postgres-compatible distributed SQL engines; see the
// package documentation for the exceptions.
var migrations = []migration{
	{1, "ledger, records and hash-partitioned coin, withdrawal and check tables", initialSchema()},
	{2, "swaps: coins exchanged for new blind signatures", swapSchema()},
	{3, "issued: blind signatures by blinded message, for restore and recoup", issuedSchema()},
	{4, "audit log: entries, tlog stored hashes and the log's one state row", logSchema()},
	{5, "payouts: credit references record payouts as negative amounts", []string{
		`ALTER TABLE credit_refs DROP CONSTRAINT credit_refs_amount_check`,
		`ALTER TABLE credit_refs ADD CONSTRAINT credit_refs_amount_nonzero CHECK (amount <> 0)`,
	}},
	{6, "refunds: refund records and the refund credit of spent coins", refundSchema()},
	{7, "fees: the system account fees are booked to", []string{
		fmt.Sprintf(`INSERT INTO accounts (id, name, created) VALUES (%d, 'fees'::bytea, now()) ON CONFLICT (id) DO NOTHING`, bank.AccountFees),
	}},
	{8, "revocations: the denominations logged key sets revoke, checked by every logged change", []string{
		`CREATE TABLE revocations (
			denom      bytea  NOT NULL CHECK (length(denom) = 32),
			keyset_idx bigint NOT NULL CHECK (keyset_idx >= 0),
			PRIMARY KEY (denom)
		)`,
		// The entries below unscanned were logged before the table:
		// Open records their revocations (scanRevocations).
		`ALTER TABLE log_state ADD COLUMN unscanned bigint NOT NULL DEFAULT 0`,
		`UPDATE log_state SET unscanned = size`,
	}},
	{9, "key set references: FindEntry finds a logged key set by the SHA-256 of its bytes", []string{
		// The entries below unindexed were logged before key sets were
		// indexed: Open indexes theirs (indexKeySets).
		`ALTER TABLE log_state ADD COLUMN unindexed bigint NOT NULL DEFAULT 0`,
		`UPDATE log_state SET unindexed = size`,
	}},
	{10, "auth failures: failed authentications counted per account and source, by day", []string{
		// The accounts columns fail_day and failures, one count per
		// account, are left unused: a lock any source could set was a
		// lock anyone could set.
		`CREATE TABLE auth_failures (
			account  bigint NOT NULL,
			day      bigint NOT NULL,
			source   bytea  NOT NULL,
			failures bigint NOT NULL CHECK (failures > 0),
			PRIMARY KEY (account, day, source)
		)`,
	}},
	{11, "auth failures by day: the counts of days before today, which count for nothing, are dropped", []string{
		`CREATE INDEX auth_failures_by_day ON auth_failures (day)`,
	}},
	{12, "withdraw refusals: a withdraw request refused for good, never recorded beside its withdrawal", []string{
		// Apart from withdrawals, which a build before this one reads
		// without a filter; rare beside them (one per refusal the bank
		// made after charging the account's rate, within the account's
		// refusal budget, and pruned after bank.RefusalHorizon), so not
		// partitioned. RefuseWithdrawal and Withdraw exclude each other
		// by the account's row lock (ops.go); PruneWithdrawRefusals
		// finds the old ones by withdraw_refusals_by_created.
		`CREATE TABLE withdraw_refusals (
			request_hash bytea       NOT NULL,
			account      bigint      NOT NULL,
			code         integer     NOT NULL,
			reason       bytea       NOT NULL,
			created      timestamptz NOT NULL,
			PRIMARY KEY (request_hash)
		)`,
		`CREATE INDEX withdraw_refusals_by_created ON withdraw_refusals (created)`,
	}},
	{13, "commit deadlines: a withdrawal, deposit, refund or swap commits only until its deadline, by the database's clock", []string{
		// The deadline is set for the transaction (blindbank.not_after,
		// deadline()) before the operation inserts its record, and
		// checked when COMMIT runs, on the server, by a trigger on that
		// record deferred to it: no pause of the replica, nor a wait for
		// a lock, falls between the check and the commit. A replay
		// inserts nothing (ON CONFLICT DO NOTHING) and is not judged;
		// a transaction that sets no deadline queues nothing (WHEN).
		`CREATE FUNCTION blindbank_not_after() RETURNS trigger LANGUAGE plpgsql AS $$
		DECLARE
			deadline text := current_setting('blindbank.not_after', true);
		BEGIN
			IF deadline <> '' AND clock_timestamp() > deadline::timestamptz THEN
				RAISE EXCEPTION 'deadline %, the database''s clock %', deadline, clock_timestamp() USING ERRCODE = 'BB0TL';
			END IF;
			RETURN NULL;
		END $$`,
		notAfterTrigger("withdrawals"),
		notAfterTrigger("deposits"),
		notAfterTrigger("refunds"),
		notAfterTrigger("swaps"),
	}},
	{14, "commit deadlines of payment orders: a check the commit decides commits only until its EPO's expiry plus the skew", append([]string{
		// As migration 13; the service sets a deadline only for the orders
		// the commit decides (bank.CheckOp.NotAfter), not for a decline it
		// made before, which moves no money.
		notAfterTrigger("checks"),
	}, repairedNotAfter()...)},
}

// repairedNotAfter makes the triggers of migration 13 as it landed. A
// development build of it put the one trigger on accounts instead (every
// update of an account row judged by the deadline, and no operation's
// record); a database it migrated holds version 13 all the same. No
// landed build made it. Each statement runs only where its trigger is
// wrong, so on a database migration 13 made none takes a table's lock (a
// DROP TRIGGER would hold an exclusive one, reads blocked, until the
// migration commits).
func repairedNotAfter() []string {
	s := []string{`DO $$ BEGIN
		IF EXISTS (SELECT FROM pg_trigger WHERE tgname = 'accounts_not_after' AND tgrelid = 'accounts'::regclass) THEN
			DROP TRIGGER accounts_not_after ON accounts;
		END IF;
	END $$`}
	for _, table := range []string{"withdrawals", "deposits", "refunds", "swaps"} {
		s = append(s, fmt.Sprintf(`DO $$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_trigger WHERE tgname = '%[1]s_not_after' AND tgrelid = '%[1]s'::regclass) THEN
				EXECUTE '%[2]s';
			END IF;
		END $$`, table, strings.ReplaceAll(notAfterTrigger(table), "'", "''")))
	}
	return s
}

// notAfterTrigger checks, as the COMMIT runs, the deadline of a
// transaction that inserted a record into table (migrations 13 and 14).
func notAfterTrigger(table string) string {
	return fmt.Sprintf(`CREATE CONSTRAINT TRIGGER %[1]s_not_after AFTER INSERT ON %[1]s
		DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
		WHEN (current_setting('blindbank.not_after', true) <> '')
		EXECUTE FUNCTION blindbank_not_after()`, table)
}

// refundSchema adds refunds: each refund by its request hash, and per
// refunded coin the value restored to it in all and what of that is not
// yet spent again in a swap. Refunds are rare next to spends, so neither
// table is partitioned.
func refundSchema() []string {
	return []string{
		`CREATE TABLE refunds (
			request_hash bytea       NOT NULL,
			payment_hash bytea       NOT NULL,
			merchant     bigint      NOT NULL,
			amount       bigint      NOT NULL CHECK (amount > 0),
			receipt      bytea       NOT NULL,
			created      timestamptz NOT NULL,
			PRIMARY KEY (request_hash)
		)`,
		`CREATE INDEX refunds_by_payment ON refunds (payment_hash, created)`,
		`CREATE TABLE coin_credits (
			coin_id  bytea  NOT NULL,
			refunded bigint NOT NULL CHECK (refunded > 0),
			credit   bigint NOT NULL CHECK (credit >= 0 AND credit <= refunded),
			PRIMARY KEY (coin_id)
		)`,
	}
}

// logSchema adds the audit log (log.go): the encoded entries by index, the
// tlog stored hashes by stored-hash index, the one row whose lock
// sequences every append and which holds the committed size and the hash
// of the newest published key set, and the entry index of each deposit,
// withdrawal, swap and check by its hash. The log starts empty: state committed
// before this migration (accounts opened, credits, ...) has no entries.
func logSchema() []string {
	return append([]string{
		`CREATE TABLE log_entries (
			idx   bigint NOT NULL CHECK (idx >= 0),
			entry bytea  NOT NULL,
			PRIMARY KEY (idx)
		)`,
		`CREATE TABLE log_hashes (
			idx  bigint NOT NULL CHECK (idx >= 0),
			hash bytea  NOT NULL CHECK (length(hash) = 32),
			PRIMARY KEY (idx)
		)`,
		// One row: the primary key on a constant column keeps it one.
		`CREATE TABLE log_state (
			one         boolean NOT NULL DEFAULT true CHECK (one),
			size        bigint  NOT NULL CHECK (size >= 0),
			keyset_hash bytea,
			PRIMARY KEY (one)
		)`,
		`INSERT INTO log_state (size) VALUES (0)`,
		// The index of the entry of each deposit, withdrawal, swap and
		// check, by payment, request or EPO hash (for receipts): it grows
		// with them, so it is hash-partitioned as they are.
		`CREATE TABLE log_refs (
			ref bytea  NOT NULL,
			idx bigint NOT NULL CHECK (idx >= 0),
			PRIMARY KEY (ref)
		) PARTITION BY HASH (ref)`,
	}, partitions("log_refs")...)
}

// issuedSchema adds the index of issued blind signatures: for each blinded
// message answered, the withdrawal or swap that holds its signature and the
// position there. Withdrawals and swaps committed before this migration are
// not indexed (their blinded messages were never stored).
func issuedSchema() []string {
	return append([]string{
		`CREATE TABLE issued (
			blinded_hash bytea   NOT NULL,
			swap         boolean NOT NULL,
			request_hash bytea   NOT NULL,
			pos          integer NOT NULL CHECK (pos >= 0),
			PRIMARY KEY (blinded_hash)
		) PARTITION BY HASH (blinded_hash)`,
	}, partitions("issued")...)
}

// swapSchema adds the swap records, hash-partitioned on the request hash as
// withdrawals are. The inputs are in spent_coins under the request hash.
func swapSchema() []string {
	return append([]string{
		`CREATE TABLE swaps (
			request_hash bytea       NOT NULL,
			value        bigint      NOT NULL CHECK (value > 0),
			coins        bytea[]     NOT NULL,
			sigs         bytea[]     NOT NULL,
			created      timestamptz NOT NULL,
			PRIMARY KEY (request_hash)
		) PARTITION BY HASH (request_hash)`,
	}, partitions("swaps")...)
}

// partitions creates the hash partitions of table.
func partitions(table string) []string {
	var s []string
	for i := range Partitions {
		s = append(s, fmt.Sprintf(
			`CREATE TABLE %s_p%d PARTITION OF %s FOR VALUES WITH (MODULUS %d, REMAINDER %d)`,
			table, i, table, Partitions, i))
	}
	return s
}

func initialSchema() []string {
	s := []string{
		// Named counters; next_account hands out user account ids from
		// bank.FirstUserAccount. Its row lock orders account creation.
		`CREATE TABLE counters (
			name  text   PRIMARY KEY,
			value bigint NOT NULL
		)`,
		fmt.Sprintf(`INSERT INTO counters (name, value) VALUES ('next_account', %d)`, bank.FirstUserAccount),

		// Accounts: the ledger balance, the next posting's sequence number
		// and the policy state of bank.Account. Strings from callers
		// (names, memos, references, EPOIDs) are bytea: the store keeps
		// any byte string, as the Pebble store does, and text would refuse
		// NUL bytes and invalid UTF-8.
		`CREATE TABLE accounts (
			id            bigint      PRIMARY KEY,
			name          bytea       NOT NULL,
			pubkey        bytea,
			merchant      boolean     NOT NULL DEFAULT false,
			balance       bigint      NOT NULL DEFAULT 0,
			created       timestamptz NOT NULL,
			next_seq      bigint      NOT NULL DEFAULT 1,
			limit_per_tx  bigint      NOT NULL DEFAULT 0,
			limit_per_day bigint      NOT NULL DEFAULT 0,
			spent_day     bigint      NOT NULL DEFAULT 0,
			spent_today   bigint      NOT NULL DEFAULT 0,
			fail_day      bigint      NOT NULL DEFAULT 0,
			failures      bigint      NOT NULL DEFAULT 0,
			CONSTRAINT accounts_pubkey_unique UNIQUE (pubkey)
		)`,
		fmt.Sprintf(`INSERT INTO accounts (id, name, created) VALUES (%d, 'funding'::bytea, now()), (%d, 'outstanding'::bytea, now())`,
			bank.AccountFunding, bank.AccountOutstanding),

		// Postings: one line of an account's history; seq counts from 1
		// per account, and balance is the running balance after it.
		`CREATE TABLE postings (
			account      bigint      NOT NULL,
			seq          bigint      NOT NULL,
			posted_at    timestamptz NOT NULL,
			kind         text        NOT NULL,
			amount       bigint      NOT NULL CHECK (amount <> 0),
			balance      bigint      NOT NULL,
			memo         bytea       NOT NULL,
			counterparty bigint      NOT NULL,
			ref          bytea       NOT NULL,
			product      bytea       NOT NULL,
			PRIMARY KEY (account, seq)
		)`,

		// Credit references: global idempotency keys of credits.
		`CREATE TABLE credit_refs (
			reference bytea  PRIMARY KEY,
			account   bigint NOT NULL,
			amount    bigint NOT NULL CHECK (amount > 0)
		)`,

		// Deposits: one per paid payment request, with its coins in the
		// order of the deposit and the receipt returned to replays.
		`CREATE TABLE deposits (
			payment_hash bytea       PRIMARY KEY,
			merchant     bigint      NOT NULL,
			amount       bigint      NOT NULL CHECK (amount > 0),
			coins        bytea[]     NOT NULL,
			receipt      bytea       NOT NULL,
			created      timestamptz NOT NULL
		)`,

		// CS nonce locks: a (denomination, nonce) answers one blinded
		// message only.
		`CREATE TABLE nonce_locks (
			denom   bytea NOT NULL,
			nonce   bytea NOT NULL,
			blinded bytea NOT NULL,
			PRIMARY KEY (denom, nonce)
		)`,

		// The three tables that grow with every coin, withdrawal and
		// payment order, hash-partitioned on their natural key as GNU
		// Taler does. Their primary keys are the last line of defence: a
		// coin is spent once, a request hash withdraws once, an EPOID is
		// decided once.
		`CREATE TABLE spent_coins (
			coin_id      bytea NOT NULL,
			payment_hash bytea NOT NULL,
			permission   bytea NOT NULL,
			PRIMARY KEY (coin_id)
		) PARTITION BY HASH (coin_id)`,
		`CREATE TABLE withdrawals (
			request_hash bytea       NOT NULL,
			account      bigint      NOT NULL,
			amount       bigint      NOT NULL CHECK (amount > 0),
			sigs         bytea[]     NOT NULL,
			created      timestamptz NOT NULL,
			PRIMARY KEY (request_hash)
		) PARTITION BY HASH (request_hash)`,
		`CREATE TABLE checks (
			epoid       bytea       NOT NULL,
			epo_hash    bytea       NOT NULL,
			outcome     text        NOT NULL,
			receipt     bytea       NOT NULL,
			customer    bigint      NOT NULL,
			merchant    bigint      NOT NULL,
			amount      bigint      NOT NULL CHECK (amount > 0),
			new_balance bigint      NOT NULL,
			record      bytea       NOT NULL,
			decided_at  timestamptz NOT NULL,
			PRIMARY KEY (epoid)
		) PARTITION BY HASH (epoid)`,
	}
	for _, table := range []string{"spent_coins", "withdrawals", "checks"} {
		s = append(s, partitions(table)...)
	}
	return s
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer     PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// migrateLock is the session advisory lock that makes one opener at a
// time look at and migrate the schema ("blindban").
const migrateLock = 0x626c696e6462616e

// migrate brings the schema up to date: it applies, in order, every
// migration whose version is not in schema_migrations, each in its own
// transaction that first inserts its version. Openers take turns under
// migrateLock, so one that knows fewer migrations reads the version only
// after a newer opener's migrations are committed, and is refused: a
// database with a version newer than ms knows is, since the schema is
// forward-only. (Each migration also stands alone: a concurrent opener
// without the lock, a binary from before it, blocks on the uncommitted
// version row and then skips it.)
func migrate(ctx context.Context, pool *pgxpool.Pool, ms []migration) (applied []int, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgstore: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, int64(migrateLock)); err != nil {
		return nil, fmt.Errorf("pgstore: migrate: %w", err)
	}
	defer func() {
		// A session lock outlives a released connection: if it cannot
		// be unlocked, the connection is closed, which releases it.
		if _, err := conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(migrateLock)); err != nil {
			conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	// Two servers creating the table at once can collide in the catalog
	// even with IF NOT EXISTS; the retry then finds it.
	if err := retryDDL(ctx, func() error {
		_, err := conn.Exec(ctx, createMigrationsTable)
		return err
	}); err != nil {
		return nil, fmt.Errorf("pgstore: migrate: create schema_migrations: %w", err)
	}
	var newest *int32
	if err := conn.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&newest); err != nil {
		return nil, fmt.Errorf("pgstore: migrate: %w", err)
	}
	if len(ms) > 0 && newest != nil && int(*newest) > ms[len(ms)-1].version {
		return nil, fmt.Errorf("pgstore: database schema version %d is newer than this program's %d", *newest, ms[len(ms)-1].version)
	}
	for _, m := range ms {
		var done bool
		err := retryDDL(ctx, func() error {
			var err error
			done, err = applyMigration(ctx, conn.Conn(), m)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("pgstore: migration %d (%s): %w", m.version, m.name, err)
		}
		if done {
			applied = append(applied, m.version)
		}
	}
	return applied, nil
}

// applyMigration applies m in one transaction unless its version is
// recorded, and reports whether it applied it.
func applyMigration(ctx context.Context, conn *pgx.Conn, m migration) (bool, error) {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return false, err
	}
	defer func() { _ = tx.Rollback(ctx) }() // after Commit, a no-op
	tag, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING`, m.version, m.name)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 0 {
		return false, nil // applied before, or by a concurrent opener
	}
	// All steps in one simple-protocol query: one round trip, however
	// many tables (an extended-protocol pipeline would prepare every
	// statement before the tables they use exist).
	if _, err := tx.Exec(ctx, strings.Join(m.steps, ";\n")); err != nil {
		return false, err
	}
	return true, tx.Commit(ctx)
}

// retryDDL retries fn a few times on the errors that concurrent DDL and
// concurrent migrations produce.
func retryDDL(ctx context.Context, fn func() error) error {
	var err error
	for attempt := range 10 {
		if err = fn(); err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			return err
		}
		switch pgErr.Code {
		case codeUniqueViolation, codeDuplicateTable, codeDuplicateObject, codeSerializationFailure, codeDeadlock:
		default:
			return err
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
	return err
}
