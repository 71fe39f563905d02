package pgstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// The audit log (migration 4) lives in four tables:
//
//	log_entries (idx, entry)           encoded entries by index
//	log_hashes  (idx, hash)            tlog stored hashes (tlog.StoredHashIndex numbering)
//	log_state   (size, keyset_hash,    one row: the committed size, the
//	             unscanned)            SHA-256 of the newest published key
//	                                   set, and the entries below unscanned
//	                                   whose revocations are not yet recorded
//	log_refs    (ref, idx)             the index of the entry of a deposit,
//	                                   withdrawal, swap or check, by its
//	                                   payment, request or EPO hash
//	revocations (denom, keyset_idx)    each denomination a logged key set
//	                                   revoked, and that key set's index
//
// Every transaction that appends locks the log_state row as its last lock
// (after its account rows and records), reads the size under the lock,
// appends with an auditlog.Appender on that size, and inserts the entries,
// the stored hashes and the new size in its commit batch. The row lock
// sequences the appenders of every replica over the database; the primary
// keys of log_entries and log_hashes back it up (a second entry at one
// index is a unique violation, and the transaction is retried).

// SQL of the log.
const (
	sqlLockLog   = `SELECT size, keyset_hash FROM log_state FOR UPDATE`
	sqlLogHashes = `SELECT idx, hash FROM log_hashes WHERE idx = ANY($1)`
)

// sqlFrontier reads, right after the lock, the committed stored hashes the
// next entries need, so that appending takes no further round trip. (It
// runs after the lock statement, so at READ COMMITTED its snapshot holds
// the previous lock holder's commit.)
//
// The indexes are an array evaluated once, so the hashes are read by index
// lookups whatever the planner guesses of the tables' sizes.
var sqlFrontier = `SELECT idx, hash FROM log_hashes WHERE idx = ANY (ARRAY(` + frontierIndexes("log_state") + `))`

// frontierIndexes selects, for a log of n entries (the column size of the
// relation from), the stored-hash indexes of its frontier: for each 1 bit l
// of n, the root of the complete subtree of the 2^l entries just below
// n>>l<<l, at tlog.StoredHashIndex(l, n>>l − 1). Walking that formula
// down to level 0 gives m = (n>>l<<l) − 1 and the index l + Σ_j m>>j.
// Appending entries n, n+1, ... reads committed hashes only from the
// frontier of n (every other committed hash lies inside one of its
// subtrees), so these are all the committed hashes an Appender reads.
func frontierIndexes(from string) string {
	return `SELECT (f.l + (SELECT sum(f.m >> j) FROM generate_series(0, 62) AS j))::bigint
	FROM (SELECT l, ((s.size >> l) << l) - 1 AS m FROM ` + from + ` AS s, generate_series(0, 62) AS l
		WHERE (s.size >> l) & 1 = 1) AS f`
}

// logLock is the log's row lock and what the transaction read under it.
type logLock struct {
	size     int64
	keyset   []byte              // SHA-256 of the newest published key set; nil if none
	frontier map[int64]tlog.Hash // committed stored hashes read with the lock
}

// queue queues the lock of the log row, and the read of the stored hashes
// the next entries need, at the end of b. The lock is taken after every
// other lock b and the batches before it took: the one lock order of the
// store ends with the log.
func (l *logLock) queue(b *pgx.Batch) {
	found := false
	b.Queue(sqlLockLog).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&l.size, &l.keyset); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return errors.New("pgstore: the log_state row is missing")
			}
			return err
		}
		found = true
		return nil
	})
	l.frontier = map[int64]tlog.Hash{}
	b.Queue(sqlFrontier).Query(func(rows pgx.Rows) error {
		if !found {
			return errors.New("pgstore: the log_state row is missing")
		}
		return scanHashes(rows, l.frontier)
	})
}

// scanHashes reads (idx, hash) rows into out.
func scanHashes(rows pgx.Rows, out map[int64]tlog.Hash) error {
	for rows.Next() {
		var (
			idx int64
			h   []byte
		)
		if err := rows.Scan(&idx, &h); err != nil {
			return err
		}
		var hash tlog.Hash
		if err := fixedBytes(hash[:], h, fmt.Sprintf("log_hashes.hash (idx %d)", idx)); err != nil {
			return err
		}
		out[idx] = hash
	}
	return rows.Err()
}

// committedHashes serves an Appender the committed stored hashes: those
// read with the lock, and any other by a query in the transaction.
type committedHashes struct {
	t *txn
	l *logLock
}

func (c committedHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var missing []int64
	for i, x := range indexes {
		h, ok := c.l.frontier[x]
		if !ok {
			missing = append(missing, x)
		}
		out[i] = h
	}
	if len(missing) == 0 {
		return out, nil
	}
	read, err := readHashes(c.t.ctx, c.t.c, missing)
	if err != nil {
		return nil, err
	}
	for i, x := range indexes {
		if h, ok := read[x]; ok {
			out[i] = h
			c.l.frontier[x] = h
		}
	}
	return out, nil
}

// querier is a connection or a pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// readHashes reads the stored hashes at indexes, all of which must exist.
func readHashes(ctx context.Context, q querier, indexes []int64) (map[int64]tlog.Hash, error) {
	rows, err := q.Query(ctx, sqlLogHashes, indexes)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[int64]tlog.Hash, len(indexes))
	if err := scanHashes(rows, out); err != nil {
		return nil, err
	}
	for _, x := range indexes {
		if _, ok := out[x]; !ok {
			return nil, fmt.Errorf("log hash %d is not in the log", x)
		}
	}
	return out, nil
}

// checkEntry refuses, before the log is locked, an op whose entry the log
// would refuse (ErrInvalid: the operation changes nothing). A nil op is
// fine. The entry's index cannot make it invalid, so the Append under the
// lock refuses nothing this accepts.
func checkEntry(op auditlog.Op, at time.Time) error {
	if op == nil {
		return nil
	}
	if err := (auditlog.Entry{Time: at, Op: op}).Validate(); err != nil {
		return fmt.Errorf("%w: audit-log entry: %v", ErrInvalid, err)
	}
	return nil
}

// appendLog appends op at time at to the log l locked, and returns a batch
// holding the entry, its stored hashes and the new size (and, if keyset is
// not nil, the new key-set hash; if ref is not nil, the entry's index
// under ref), for the caller to commit. Each attempt of a transaction
// builds its own Appender on the size it locked.
func (t *txn) appendLog(l *logLock, op auditlog.Op, at time.Time, ref *ecash.Hash, keyset []byte) (*pgx.Batch, error) {
	a := auditlog.NewAppender(l.size, committedHashes{t, l})
	e, _, err := a.Append(op, at)
	if err != nil {
		if errors.Is(err, auditlog.ErrInvalidEntry) {
			return nil, refuse(fmt.Errorf("%w: audit-log entry: %v", ErrInvalid, err))
		}
		return nil, err
	}
	b := &pgx.Batch{}
	first, entries := a.Entries()
	idxs := make([]int64, len(entries))
	for i := range entries {
		idxs[i] = first + int64(i)
	}
	b.Queue(`INSERT INTO log_entries (idx, entry) SELECT * FROM unnest($1::bigint[], $2::bytea[])`, idxs, entries)
	at0, hs := a.Pending()
	hidx, hbytes := make([]int64, len(hs)), make([][]byte, len(hs))
	for i := range hs {
		hidx[i], hbytes[i] = at0+int64(i), hs[i][:]
	}
	b.Queue(`INSERT INTO log_hashes (idx, hash) SELECT * FROM unnest($1::bigint[], $2::bytea[])`, hidx, hbytes)
	b.Queue(`UPDATE log_state SET size = $1, keyset_hash = coalesce($2, keyset_hash)`, a.Size(), keyset)
	if ref != nil {
		// A hash logged twice (which no two operations share) names the
		// newer entry, as in the Pebble store.
		b.Queue(`INSERT INTO log_refs (ref, idx) VALUES ($1, $2)
			ON CONFLICT (ref) DO UPDATE SET idx = excluded.idx`, ref[:], e.Index)
		// A key set's ref moves when another replica logs it again, so
		// only the refs of operations, which never move, are remembered.
		if keyset == nil {
			t.ref, t.refIndex = ref, e.Index
		}
	}
	return b, nil
}

// commitLogged commits b, an operation's decided writes, with op as the
// log's next entry (its index recorded under ref if ref is not nil): it
// refuses an op the log would refuse, queues the log's lock after the
// writes, sends them, appends op under the lock, and commits the entry,
// its stored hashes and the new size. A nil op commits b alone, without
// touching the log. With an op it takes two round trips instead of one,
// and holds the lock for about one round trip and the commit.
func (t *txn) commitLogged(b *pgx.Batch, op auditlog.Op, at time.Time, ref *ecash.Hash) error {
	if op == nil {
		return t.commit(b)
	}
	if err := checkEntry(op, at); err != nil {
		return refuse(err)
	}
	var l logLock
	l.queue(b)
	queueRevoked(b, op)
	if err := t.send(b); err != nil {
		return err
	}
	b, err := t.appendLog(&l, op, at, ref, nil)
	if err != nil {
		return err
	}
	return t.commit(b)
}

// queueRevoked queues, behind the log's lock, the refusal of an op whose
// entry issues or spends coins of a denomination a logged key set revoked
// (the revocations table, written with the key set's entry under the same
// lock). At READ COMMITTED the check sees every key set committed before
// the lock was granted, and a key set published later waits for this
// commit: each change is ordered with each revocation, in the round trip
// the change already takes.
func queueRevoked(b *pgx.Batch, op auditlog.Op) {
	ids := bank.LogDenoms(op)
	if len(ids) == 0 {
		return
	}
	denoms := make([][]byte, len(ids))
	for i := range ids {
		denoms[i] = ids[i][:]
	}
	b.Queue(`SELECT (SELECT denom FROM revocations WHERE denom = ANY($1) LIMIT 1)`, denoms).QueryRow(func(row pgx.Row) error {
		var d []byte
		if err := row.Scan(&d); err != nil {
			return err
		}
		if d == nil {
			return nil
		}
		var id ecash.Hash
		if err := fixedBytes(id[:], d, "revocations.denom"); err != nil {
			return err
		}
		return refuse(bank.RevokedInLog(id))
	})
}

// scanRevocations records the revocations of the entries logged before
// the revocations table (migration 8), once: until it has, on the first
// Open after the upgrade, their key sets' revocations are not checked.
func (s *Store) scanRevocations(ctx context.Context) error {
	return s.onceOverLog(ctx, "unscanned", "recording the revocations", func(size int64, read logReader) (func(*pgx.Batch), int, error) {
		revs, err := bank.ScanRevocations(size, read)
		denoms, idxs := make([][]byte, len(revs)), make([]int64, len(revs))
		for i, r := range revs {
			denoms[i], idxs[i] = r.Denom[:], r.KeySet
		}
		return func(b *pgx.Batch) {
			b.Queue(sqlLockLog) // as every writer of revocations does, first
			b.Queue(`INSERT INTO revocations (denom, keyset_idx) SELECT * FROM unnest($1::bytea[], $2::bigint[])
				ON CONFLICT (denom) DO UPDATE SET keyset_idx = least(revocations.keyset_idx, excluded.keyset_idx)`, denoms, idxs)
		}, len(revs), err
	})
}

// indexKeySets makes LogIndex find the key sets of the entries logged
// before key sets were indexed (migration 9), once: a wallet checks that
// the key set it was served is logged, and would take an unindexed one for
// keys made for it alone.
func (s *Store) indexKeySets(ctx context.Context) error {
	return s.onceOverLog(ctx, "unindexed", "indexing the key sets", func(size int64, read logReader) (func(*pgx.Batch), int, error) {
		refs, err := bank.ScanKeySets(size, read)
		// A key set logged twice is one reference, at its newer entry (as
		// when logged): one INSERT may not update a row twice.
		newest := map[ecash.Hash]int64{}
		for _, r := range refs {
			newest[r.Ref] = r.Index // in log order
		}
		var (
			hashes [][]byte
			idxs   []int64
		)
		for ref, idx := range newest {
			hashes, idxs = append(hashes, bytes.Clone(ref[:])), append(idxs, idx)
		}
		return func(b *pgx.Batch) {
			b.Queue(`INSERT INTO log_refs (ref, idx) SELECT * FROM unnest($1::bytea[], $2::bigint[])
				ON CONFLICT (ref) DO UPDATE SET idx = greatest(log_refs.idx, excluded.idx)`, hashes, idxs)
		}, len(refs), err
	})
}

// logReader reads n log entries from index from.
type logReader = func(from int64, n int) ([][]byte, error)

// onceOverLog fills in, once, what the entries logged before a migration
// lack: log_state's column counts them (0: nothing to do). scan reads them
// and returns how to queue its writes, which commit with the column set to
// 0, and how many things it found. On the first open after an upgrade a
// large log takes a while, and the operator should know why the bank is
// not up yet.
func (s *Store) onceOverLog(ctx context.Context, column, what string, scan func(size int64, read logReader) (func(*pgx.Batch), int, error)) error {
	var size int64
	if err := s.pool.QueryRow(ctx, `SELECT `+column+` FROM log_state`).Scan(&size); err != nil || size == 0 {
		return err
	}
	start := time.Now()
	s.log.Info(what+" of the audit log written before this version (once)", "entries", size)
	queue, n, err := scan(size, func(from int64, n int) ([][]byte, error) {
		return s.LogEntries(ctx, from, n, bank.MaxLogReadBytes)
	})
	if err != nil {
		return fmt.Errorf("pgstore: %s of the log: %w", what, err)
	}
	err = s.mutate(ctx, what+" of the log", func(t *txn) error {
		b := begin()
		queue(b)
		b.Queue(`UPDATE log_state SET ` + column + ` = 0`)
		return t.commit(b)
	})
	if err != nil {
		return err
	}
	s.log.Info(what+": done", "entries", size, "found", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// Revocations implements bank.Store.
func (s *Store) Revocations(ctx context.Context) ([]bank.Revocation, error) {
	var out []bank.Revocation
	err := s.read(ctx, func(ctx context.Context) error {
		out = nil
		rows, err := s.pool.Query(ctx, `SELECT denom, keyset_idx FROM revocations ORDER BY keyset_idx, denom`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				d []byte
				r bank.Revocation
			)
			if err := rows.Scan(&d, &r.KeySet); err != nil {
				return err
			}
			if err := fixedBytes(r.Denom[:], d, "revocations.denom"); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PublishKeySet implements bank.Store. The key set already newest (a
// restart) is found without the log's lock; a new one is compared again
// under it, so two replicas publishing one key set append it once. Under
// the lock it reads the recorded revocations, refuses a key set that
// un-revokes one, logs nothing for a key set logged before (log_refs: a
// replica restarting on an old key file), and records its own with its
// entry.
func (s *Store) PublishKeySet(ctx context.Context, signed []byte, at time.Time) error {
	op := auditlog.KeySet{Signed: bytes.Clone(signed)}
	if err := checkEntry(op, at); err != nil {
		return err
	}
	h := sha256.Sum256(signed)
	var newest []byte
	if err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT keyset_hash FROM log_state`).Scan(&newest)
	}); err != nil {
		return err
	}
	if bytes.Equal(newest, h[:]) {
		return nil
	}
	return s.mutate(ctx, "publish key set", func(t *txn) error {
		b := begin()
		var l logLock
		l.queue(b)
		logged := map[ecash.Hash]bool{}
		b.Queue(`SELECT denom FROM revocations`).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var d []byte
				if err := rows.Scan(&d); err != nil {
					return err
				}
				var id ecash.Hash
				if err := fixedBytes(id[:], d, "revocations.denom"); err != nil {
					return err
				}
				logged[id] = true
			}
			return rows.Err()
		})
		var inLog bool
		b.Queue(`SELECT EXISTS (SELECT 1 FROM log_refs WHERE ref = $1)`, h[:]).QueryRow(func(row pgx.Row) error { return row.Scan(&inLog) })
		if err := t.send(b); err != nil {
			return err
		}
		if bytes.Equal(l.keyset, h[:]) {
			return nil // published already: the runner rolls back
		}
		revoked, err := bank.KeySetRevocations(signed, func(id ecash.Hash) (bool, error) { return logged[id], nil })
		if err != nil {
			return refuse(err)
		}
		if inLog {
			// Logged before another (a replica restarting on an old key
			// file): never again, so that the newest entry, and
			// keyset_hash, stay the newest key set.
			return nil
		}
		b, err = t.appendLog(&l, op, at, (*ecash.Hash)(&h), h[:])
		if err != nil {
			return err
		}
		var added [][]byte
		for _, id := range revoked {
			if !logged[id] {
				added = append(added, id[:])
			}
		}
		if len(added) > 0 {
			b.Queue(`INSERT INTO revocations (denom, keyset_idx) SELECT unnest($1::bytea[]), $2 ON CONFLICT (denom) DO NOTHING`, added, l.size)
		}
		return t.commit(b)
	})
}

// LogIndex implements bank.Store. The entry of this replica's recent
// commit is remembered (bank.RecentLogRefs), the others read.
func (s *Store) LogIndex(ctx context.Context, ref ecash.Hash) (int64, bool, error) {
	var (
		idx   int64
		found bool
	)
	err := s.read(ctx, func(ctx context.Context) error {
		if idx, found = s.refs.Get(ref); found {
			return nil
		}
		err := s.pool.QueryRow(ctx, `SELECT idx FROM log_refs WHERE ref = $1`, ref[:]).Scan(&idx)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return 0, false, err
	}
	return idx, true, nil
}

// LogSize implements bank.Store.
func (s *Store) LogSize(ctx context.Context) (int64, error) {
	var size int64
	err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT size FROM log_state`).Scan(&size)
	})
	if err != nil {
		return 0, err
	}
	return size, nil
}

// LogEntries implements bank.Store. Entries are committed with the size
// that counts them, so the rows from index from on are the log's.
func (s *Store) LogEntries(ctx context.Context, from int64, n, maxBytes int) ([][]byte, error) {
	if from < 0 || n < 0 || n > bank.MaxLogRead {
		return nil, invalid("log read of %d entries from %d", n, from)
	}
	var out [][]byte
	err := s.read(ctx, func(ctx context.Context) error {
		out = nil // a retried read starts over
		if n == 0 {
			return nil
		}
		// The sizes come from the values' headers (octet_length does not
		// detoast), and only the entries sent are, so those past the
		// budget are never read.
		rows, err := s.pool.Query(ctx, `SELECT idx, entry FROM (
			SELECT idx, entry, sum(octet_length(entry)) OVER (ORDER BY idx) - octet_length(entry) AS before
			FROM (SELECT idx, entry FROM log_entries WHERE idx >= $1 ORDER BY idx LIMIT $2) AS p) AS page
			WHERE before < $3 ORDER BY idx`,
			from, int64(n), int64(maxBytes))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				idx   int64
				entry []byte
			)
			if err := rows.Scan(&idx, &entry); err != nil {
				return err
			}
			if want := from + int64(len(out)); idx != want {
				return fmt.Errorf("log entry %d missing (next is %d)", want, idx)
			}
			out = append(out, entry)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// LogHashes implements bank.Store. Every index must be a committed stored
// hash.
func (s *Store) LogHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	err := s.read(ctx, func(ctx context.Context) error {
		if len(indexes) == 0 {
			return nil
		}
		read, err := readHashes(ctx, s.pool, indexes)
		if err != nil {
			return err
		}
		for i, x := range indexes {
			out[i] = read[x]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
