package pgstore

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// account is a locked account row: the public bank.Account plus the
// sequence number of its next posting.
type account struct {
	bank.Account
	NextSeq int64
}

// accountCols leave out fail_day and failures, the account-wide count of
// failed authentications of before they were counted per source
// (auth_failures): unused, and left as they were.
const accountCols = `id, name, pubkey, merchant, balance, created, next_seq,
	limit_per_tx, limit_per_day, spent_day, spent_today`

// scanAccount scans accountCols, then any extra columns into extra.
func scanAccount(row pgx.Row, extra ...any) (*account, error) {
	a := &account{}
	var id int64
	var name, key []byte
	var created time.Time
	if err := row.Scan(append([]any{&id, &name, &key, &a.Merchant, &a.Balance, &created, &a.NextSeq,
		&a.Limits.PerTransaction, &a.Limits.PerDay, &a.SpentDay, &a.SpentToday}, extra...)...); err != nil {
		return nil, err
	}
	a.ID, a.Name, a.Created = uint64(id), string(name), created.UTC()
	if len(key) > 0 { // NULL or empty: an account without a key
		// A key of another length would make ed25519.Verify panic.
		a.Key = make(ed25519.PublicKey, ed25519.PublicKeySize)
		if err := fixedBytes(a.Key, key, "accounts.pubkey"); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// dbID converts an account id to the database's bigint; ok is false for
// ids no account can have.
func dbID(id uint64) (int64, bool) {
	if id > math.MaxInt64 {
		return 0, false
	}
	return int64(id), true
}

// lockAccounts queues the SELECT … FOR UPDATE of the accounts ids into
// out, in the store's one lock order: user accounts by id, then system
// accounts by id. Absent accounts are absent from out.
func lockAccounts(b *pgx.Batch, out map[uint64]*account, ids ...uint64) {
	var keys []int64
	for _, id := range ids {
		if k, ok := dbID(id); ok && !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	b.Queue(`SELECT `+accountCols+` FROM accounts WHERE id = ANY($1)
		ORDER BY id < $2, id FOR UPDATE`, keys, int64(FirstUserAccount)).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			a, err := scanAccount(rows)
			if err != nil {
				return err
			}
			out[a.ID] = a
		}
		return rows.Err()
	})
	// The time of each account's latest posting (Account.PostingTime), in
	// a statement of its own: a row re-read after a lock wait is the lock
	// holder's version, but a subquery of the locking statement would
	// read the postings as they were before the wait, without the holder's.
	b.Queue(`SELECT a.id, p.posted_at FROM accounts a JOIN postings p ON p.account = a.id AND p.seq = a.next_seq - 1
		WHERE a.id = ANY($1)`, keys).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id int64
			var at time.Time
			if err := rows.Scan(&id, &at); err != nil {
				return err
			}
			if a := out[uint64(id)]; a != nil {
				a.LastPosted = at.UTC()
			}
		}
		return rows.Err()
	})
}

// writer collects the writes of an operation into its commit batch.
type writer struct{ b *pgx.Batch }

func (w writer) account(a *account) {
	w.b.Queue(`UPDATE accounts SET balance = $2, next_seq = $3, limit_per_tx = $4, limit_per_day = $5,
		spent_day = $6, spent_today = $7 WHERE id = $1`,
		int64(a.ID), a.Balance, a.NextSeq, a.Limits.PerTransaction, a.Limits.PerDay,
		a.SpentDay, a.SpentToday)
}

// post adds a posting of amount (signed) to a, with the running balance
// checked for overflow, and queues a's new state.
func (w writer) post(a *account, kind string, amount int64, memo string, at time.Time, counterparty uint64, ref, product string) error {
	bal, err := addBalance(a.Balance, amount)
	if err != nil {
		return fmt.Errorf("%w: account %d", err, a.ID)
	}
	a.Balance = bal
	at = a.PostingTime(at)
	a.LastPosted = at
	seq := a.NextSeq
	a.NextSeq++
	w.b.Queue(`INSERT INTO postings (account, seq, posted_at, kind, amount, balance, memo, counterparty, ref, product)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		int64(a.ID), seq, at, kind, amount, bal, []byte(memo), int64(counterparty), []byte(ref), []byte(product))
	w.account(a)
	return nil
}

// transfer moves amount (> 0) from one account to another, two postings.
// Both sides are checked before either is queued.
func (w writer) transfer(from, to *account, kind string, amount int64, memo string, at time.Time, ref, product string) error {
	if err := canMove(from, to, amount); err != nil {
		return err
	}
	if err := w.post(from, kind, -amount, memo, at, to.ID, ref, product); err != nil {
		return err
	}
	return w.post(to, kind, amount, memo, at, from.ID, ref, product)
}

// canMove checks that amount can leave one account and reach another
// without overflowing either balance.
func canMove(from, to *account, amount int64) error {
	if _, err := addBalance(from.Balance, -amount); err != nil {
		return fmt.Errorf("%w: account %d", err, from.ID)
	}
	if _, err := addBalance(to.Balance, amount); err != nil {
		return fmt.Errorf("%w: account %d", err, to.ID)
	}
	return nil
}

// check queues an approved check's two postings, each side with its own
// memo; the merchant's names no customer.
func (w writer) check(cust, merch *account, op bank.CheckOp, at time.Time) error {
	if err := canMove(cust, merch, op.Amount); err != nil {
		return err
	}
	if err := w.post(cust, bank.KindCheck, -op.Amount, op.Memo, at, merch.ID, op.EPOID, op.Product); err != nil {
		return err
	}
	return w.post(merch, bank.KindCheck, op.Amount, op.MerchantMemo, at, 0, op.EPOID, op.Product)
}

// chargeFee queues a transfer of fee (≥ 0; nothing if 0) from an account to
// the fee account, which the operation must have locked into fees.
func (w writer) chargeFee(from, fees *account, fee int64, memo string, at time.Time) error {
	if fee == 0 {
		return nil
	}
	if fees == nil {
		return errors.New("pgstore: no fee account")
	}
	return w.transfer(from, fees, bank.KindFee, fee, memo, at, "", "")
}

// move transfers amount from one account to another, and fee (≥ 0) from
// the same account to the fee account: an operation and what it costs.
func (w writer) move(from, to, fees *account, kind string, amount, fee int64, memo string, at time.Time) error {
	if err := w.transfer(from, to, kind, amount, memo, at, "", ""); err != nil {
		return err
	}
	return w.chargeFee(from, fees, fee, memo, at)
}

// feeAccount adds the fee account to the accounts an operation locks, when
// it charges a fee: one more row every such operation serialises on.
func feeAccount(fee int64, ids ...uint64) []uint64 {
	if fee > 0 {
		return append(ids, bank.AccountFees)
	}
	return ids
}

// addBalance returns a+b, or ErrOverflow if it does not fit in int64.
// refAmount is what a credit reference records: the amount, negative for
// a payout, so that a reference names one movement in one direction.
func refAmount(op bank.CreditOp) int64 {
	if op.Payout {
		return -op.Amount
	}
	return op.Amount
}

func addBalance(a, b int64) (int64, error) {
	c := a + b
	if (b > 0 && c < a) || (b < 0 && c > a) {
		return 0, ErrOverflow
	}
	return c, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

func isSystem(id uint64) bool { return id < FirstUserAccount }

// dbTime is t as stored: timestamptz keeps microseconds.
func dbTime(t time.Time) time.Time { return t.Truncate(time.Microsecond) }

// errCorrupt wraps every stored value the store cannot read back as it
// wrote it: a row changed behind its back, or a damaged database.
var errCorrupt = errors.New("pgstore: corrupt row")

// fixedBytes copies b, a bytea value read from col (table.column), into
// dst, which it must fill exactly: a value of another length is a
// corrupted row, refused naming col, never padded or cut to fit (a padded
// coin id or payment hash would name another coin or payment). Every
// fixed-size value read from a bytea column goes through it.
func fixedBytes(dst, b []byte, col string) error {
	if len(b) != len(dst) {
		return fmt.Errorf("%w: %s holds %d bytes, not %d", errCorrupt, col, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

// hashes reads the bytea[] column col, hashes each.
func hashes(hs [][]byte, col string) ([]ecash.Hash, error) {
	out := make([]ecash.Hash, len(hs))
	for i, h := range hs {
		if err := fixedBytes(out[i][:], h, fmt.Sprintf("%s[%d]", col, i+1)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// OpenAccount implements bank.Store. Account ids come from a counter row
// updated in the same statement, so they are contiguous from
// FirstUserAccount; the unique key on the public key refuses a second
// account for it. The log's lock follows the insert in the first batch,
// and the AccountOpened entry, which needs the id, commits in the second.
func (s *Store) OpenAccount(ctx context.Context, name string, key ed25519.PublicKey, merchant bool, now time.Time) (uint64, error) {
	if err := bank.ValidateAccount(name, key); err != nil {
		return 0, err
	}
	// A key the log refuses is refused after the key-in-use check, as in
	// the Pebble store, but without taking the log's lock.
	entryErr := checkEntry(auditlog.AccountOpened{Account: FirstUserAccount, Merchant: merchant, Key: key}, now)
	var id int64
	err := s.mutate(ctx, "open account", func(t *txn) error {
		b := begin()
		b.Queue(`WITH n AS (
				UPDATE counters SET value = value + 1 WHERE name = 'next_account' RETURNING value - 1 AS id
			)
			INSERT INTO accounts (id, name, pubkey, merchant, created)
			SELECT id, $1, $2, $3, $4 FROM n RETURNING id`,
			[]byte(name), []byte(key), merchant, dbTime(now)).QueryRow(func(row pgx.Row) error { return row.Scan(&id) })
		var l logLock
		if entryErr == nil {
			l.queue(b)
		}
		err := t.send(b)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation && pgErr.ConstraintName == "accounts_pubkey_unique" {
			return refuse(bank.ErrKeyInUse)
		}
		if err != nil {
			return err
		}
		if entryErr != nil {
			return refuse(entryErr)
		}
		b, err = t.appendLog(&l, auditlog.AccountOpened{Account: uint64(id), Merchant: merchant, Key: key}, now, nil, nil)
		if err != nil {
			return err
		}
		return t.commit(b)
	})
	if errors.Is(err, bank.ErrKeyInUse) {
		return s.openedBefore(ctx, key, name, merchant)
	}
	if err != nil {
		return 0, err
	}
	return uint64(id), nil
}

// openedBefore answers OpenAccount for a key that has an account: the
// same account asked for again (a retry whose answer was lost) gets its
// id, another is refused.
func (s *Store) openedBefore(ctx context.Context, key ed25519.PublicKey, name string, merchant bool) (uint64, error) {
	var (
		id    int64
		named []byte
		merch bool
	)
	err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT id, name, merchant FROM accounts WHERE pubkey = $1`, []byte(key)).Scan(&id, &named, &merch)
	})
	if err != nil {
		return 0, err
	}
	if string(named) != name || merch != merchant {
		return 0, bank.ErrKeyInUse
	}
	return uint64(id), nil
}

// Credit implements bank.Store.
func (s *Store) Credit(ctx context.Context, op bank.CreditOp) (int64, error) {
	if err := op.Validate(); err != nil {
		return 0, err
	}
	acct, ok := dbID(op.Account)
	if !ok {
		return 0, bank.ErrNoAccount
	}
	at := dbTime(op.Time)
	var balance int64
	err := s.mutate(ctx, "credit", func(t *txn) error {
		b := begin()
		var (
			newRef         bool
			refAcct, refAm int64
		)
		if op.Reference != "" {
			b.Queue(`INSERT INTO credit_refs (reference, account, amount) VALUES ($1, $2, $3)
				ON CONFLICT (reference) DO NOTHING`, []byte(op.Reference), acct, refAmount(op)).
				Exec(func(ct pgconn.CommandTag) error { newRef = ct.RowsAffected() == 1; return nil })
			b.Queue(`SELECT account, amount FROM credit_refs WHERE reference = $1`, []byte(op.Reference)).
				QueryRow(func(row pgx.Row) error { return row.Scan(&refAcct, &refAm) })
		}
		accts := map[uint64]*account{}
		lockAccounts(b, accts, op.Account, bank.AccountFunding)
		if err := t.send(b); err != nil {
			return err
		}
		a, funding := accts[op.Account], accts[bank.AccountFunding]
		if op.Reference != "" && !newRef {
			if refAcct != acct || refAm != refAmount(op) {
				return refuse(bank.ErrReferenceConflict)
			}
			if a == nil {
				return refuse(bank.ErrNoAccount)
			}
			balance = a.Balance
			return nil
		}
		if a == nil {
			return refuse(bank.ErrNoAccount)
		}
		if funding == nil {
			return errors.New("pgstore: no funding account")
		}
		from, to, kind := funding, a, bank.KindCredit
		if op.Payout {
			if a.Balance < op.Amount {
				return refuse(bank.ErrInsufficientFunds)
			}
			from, to, kind = a, funding, bank.KindPayout
		}
		b = &pgx.Batch{}
		if err := (writer{b}).transfer(from, to, kind, op.Amount, op.Memo, at, op.Reference, ""); err != nil {
			return refuse(err)
		}
		if err := t.commitLogged(b, op.Log, op.Time, nil); err != nil {
			return err
		}
		balance = a.Balance
		return nil
	})
	if err != nil {
		return 0, err
	}
	return balance, nil
}

// Withdraw implements bank.Store. A replay of a recorded request hash
// returns the recorded signatures if its account and amount match, and
// bank.ErrRequestConflict if not.
func (s *Store) Withdraw(ctx context.Context, op bank.WithdrawOp) ([][]byte, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	acct, ok := dbID(op.Account)
	if !ok {
		return nil, bank.ErrNoAccount
	}
	at := dbTime(op.Time)
	locks := lockColumns(op.Locks)
	var sigs [][]byte
	err := s.mutate(ctx, "withdraw", func(t *txn) error {
		b := begin()
		deadline(b, op.NotAfter)
		var (
			fresh    bool
			recAcct  int64
			recAm    int64
			recSigs  [][]byte
			reusedNs int64
			issued   int64
		)
		b.Queue(`INSERT INTO withdrawals (request_hash, account, amount, sigs, created) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (request_hash) DO NOTHING`, op.RequestHash[:], acct, op.Amount, op.BlindSigs, at).
			Exec(func(ct pgconn.CommandTag) error { fresh = ct.RowsAffected() == 1; return nil })
		b.Queue(`SELECT account, amount, sigs FROM withdrawals WHERE request_hash = $1`, op.RequestHash[:]).
			QueryRow(func(row pgx.Row) error { return row.Scan(&recAcct, &recAm, &recSigs) })
		locks.queue(b, &reusedNs)
		queueIndex(b, op.Blinded, false, op.RequestHash, &issued)
		accts := map[uint64]*account{}
		lockAccounts(b, accts, feeAccount(op.Fee, op.Account, bank.AccountOutstanding)...)
		// After the account's lock, which RefuseWithdrawal takes before
		// it looks for this withdrawal: a refusal committed while this
		// transaction waited for the lock is seen here, and a refusal
		// waiting for it sees this withdrawal once committed.
		var refused refusalRow
		refused.queue(b, op.RequestHash)
		if err := t.send(b); err != nil {
			return err
		}
		if !fresh {
			if recAcct != acct || recAm != op.Amount {
				return refuse(bank.ErrRequestConflict)
			}
			sigs = recSigs
			return nil
		}
		if r, err := refused.refusal(acct); err != nil || r != nil {
			if r != nil {
				return refuse(r)
			}
			return err
		}
		a, out := accts[op.Account], accts[bank.AccountOutstanding]
		if a == nil {
			return refuse(bank.ErrNoAccount)
		}
		debit := op.Amount + op.Fee // Validate bounds the sum
		if err := a.CanSpend(debit, op.Time); err != nil {
			return refuse(err)
		}
		if a.Balance < debit {
			return refuse(bank.ErrInsufficientFunds)
		}
		if reusedNs > 0 {
			return refuse(bank.ErrNonceReused)
		}
		if issued > 0 {
			return refuse(bank.ErrAlreadyIssued)
		}
		if out == nil {
			return errors.New("pgstore: no outstanding account")
		}
		a.RecordSpend(debit, op.Time)
		b = &pgx.Batch{}
		w, memo := writer{b}, "request "+hex.EncodeToString(op.RequestHash[:])
		if err := w.move(a, out, accts[bank.AccountFees], bank.KindWithdraw, op.Amount, op.Fee, memo, at); err != nil {
			return refuse(err)
		}
		if err := t.commitLogged(b, op.Log, op.Time, &op.RequestHash); err != nil {
			return err
		}
		sigs = cloneSigs(op.BlindSigs)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sigs, nil
}

// refusalRow is a withdraw refusal read in a batch.
type refusalRow struct {
	found   bool
	account int64
	code    int32
	reason  []byte
}

// queue queues the read of the refusal recorded under h.
func (r *refusalRow) queue(b *pgx.Batch, h ecash.Hash) {
	b.Queue(`SELECT account, code, reason FROM withdraw_refusals WHERE request_hash = $1`, h[:]).
		QueryRow(func(row pgx.Row) error {
			r.found = true
			return ignoreNoRows(row.Scan(&r.account, &r.code, &r.reason), &r.found)
		})
}

// refusal returns the refusal read, as the error to answer (nil if there
// is none); bank.ErrRequestConflict if it was recorded for another
// account than acct.
func (r *refusalRow) refusal(acct int64) (*bank.WithdrawRefusal, error) {
	if !r.found {
		return nil, nil
	}
	if r.account != acct {
		return nil, refuse(bank.ErrRequestConflict)
	}
	return decodeRefusal(r.code, r.reason)
}

// decodeRefusal checks a refusal read from the database: one the bank
// would not record is no record of ours (and its code would reach a
// wallet).
func decodeRefusal(code int32, reason []byte) (*bank.WithdrawRefusal, error) {
	rf := &bank.WithdrawRefusal{Code: codes.Code(code), Reason: string(reason)}
	if err := rf.Validate(); code < 0 || err != nil {
		return nil, fmt.Errorf("pgstore: corrupt withdraw refusal record: code %d, %d bytes", code, len(reason))
	}
	return rf, nil
}

// RefuseWithdrawal implements bank.Store. It locks the account's row
// first, as Withdraw does before it reads refusals (see there), then reads
// the withdrawal and the refusal under the hash: one of the two
// transactions waits for the other and sees what it committed, so a
// refusal and a withdrawal are never both recorded. The primary key backs
// that up (a refusal inserted concurrently, for another account, is a
// unique violation, retried).
func (s *Store) RefuseWithdrawal(ctx context.Context, op bank.RefuseWithdrawalOp) ([][]byte, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	acct, ok := dbID(op.Account)
	if !ok {
		return nil, bank.ErrNoAccount
	}
	var (
		sigs    [][]byte
		refused *bank.WithdrawRefusal
	)
	err := s.mutate(ctx, "refuse withdrawal", func(t *txn) error {
		sigs, refused = nil, nil
		var (
			locked  bool
			wFound  bool
			recAcct int64
			recSigs [][]byte
			rec     refusalRow
		)
		b := begin()
		b.Queue(`SELECT true FROM accounts WHERE id = $1 FOR UPDATE`, acct).QueryRow(func(row pgx.Row) error {
			return ignoreNoRows(row.Scan(&locked))
		})
		b.Queue(`SELECT account, sigs FROM withdrawals WHERE request_hash = $1`, op.RequestHash[:]).
			QueryRow(func(row pgx.Row) error {
				wFound = true
				return ignoreNoRows(row.Scan(&recAcct, &recSigs), &wFound)
			})
		rec.queue(b, op.RequestHash)
		if err := t.send(b); err != nil {
			return err
		}
		if !locked {
			return refuse(bank.ErrNoAccount)
		}
		if wFound {
			if recAcct != acct {
				return refuse(bank.ErrRequestConflict)
			}
			sigs = recSigs
			return nil
		}
		if r, err := rec.refusal(acct); err != nil || r != nil {
			refused = r
			return err
		}
		b = &pgx.Batch{}
		b.Queue(`INSERT INTO withdraw_refusals (request_hash, account, code, reason, created) VALUES ($1, $2, $3, $4, $5)`,
			op.RequestHash[:], acct, int32(op.Refusal.Code), []byte(op.Refusal.Reason), dbTime(op.Time))
		if err := t.commit(b); err != nil {
			return err
		}
		refused = &bank.WithdrawRefusal{Code: op.Refusal.Code, Reason: op.Refusal.Reason}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case refused != nil:
		return nil, refused
	}
	return sigs, nil
}

// pruneBatch is how many withdraw refusals PruneWithdrawRefusals deletes
// in one transaction: a large backlog is deleted in short ones, each
// holding few row locks.
const pruneBatch = 1000

// PruneWithdrawRefusals implements bank.Store: the oldest first, by the
// index on created, pruneBatch a transaction until none before before is
// left. No account lock: a refusal it deletes is older than anything
// that could still commit the withdrawal it excludes (the bank's
// horizon), and a Withdraw that read it just before is refused with it,
// which is what it stood for. Whatever before says, it keeps a refusal
// whose time (the recording replica's clock, which checkClock holds to
// the database's) is less than bank.RefusalHorizon before the database's
// clock (statement_timestamp, stable within the statement, so the index
// on created still bounds the scan; clock_timestamp would not): a
// replica whose clock runs hours ahead would otherwise prune the others'
// refusals while a copy of their requests could still be taken.
func (s *Store) PruneWithdrawRefusals(ctx context.Context, before time.Time) (int64, error) {
	var total int64
	for {
		var n int64
		err := s.mutate(ctx, "prune withdraw refusals", func(t *txn) error {
			n = 0
			b := begin()
			b.Queue(`DELETE FROM withdraw_refusals WHERE request_hash IN
				(SELECT request_hash FROM withdraw_refusals WHERE created < least($1, statement_timestamp() - $3::interval)
				ORDER BY created LIMIT $2)`,
				dbTime(before), pruneBatch, bank.RefusalHorizon).Exec(func(ct pgconn.CommandTag) error {
				n = ct.RowsAffected()
				return nil
			})
			return t.commit(b)
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

func cloneSigs(in [][]byte) [][]byte {
	out := make([][]byte, len(in))
	for i, s := range in {
		out[i] = bytes.Clone(s)
	}
	return out
}

// Deposit implements bank.Store. "The same coins" means the same set of
// coin ids, in any order; a replay must also name the same merchant and
// amount, or it is a bank.ErrPaymentConflict. A coin id twice in one op is
// refused with an error matching both ErrInvalid and bank.ErrDuplicateCoin.
//
// The spent coins are inserted with ON CONFLICT DO NOTHING: the coin's
// primary key decides which of two concurrent deposits spends it, and the
// loser reads the winner's permission for its SpentError.
func (s *Store) Deposit(ctx context.Context, op bank.DepositOp) ([]byte, error) {
	if _, err := op.Validate(); err != nil {
		return nil, err
	}
	ids := make([][]byte, len(op.Coins)) // in op order, for the deposit record
	for i, c := range op.Coins {
		ids[i] = c.ID[:]
	}
	merchant, ok := dbID(op.Merchant)
	if !ok {
		return nil, bank.ErrNoAccount
	}
	at := dbTime(op.Time)
	var receipt []byte
	err := s.mutate(ctx, "deposit", func(t *txn) error {
		b := begin()
		deadline(b, op.NotAfter)
		var (
			fresh    bool
			recMerch int64
			recAm    int64
			recCoins [][]byte
			recRcpt  []byte
		)
		b.Queue(`INSERT INTO deposits (payment_hash, merchant, amount, coins, receipt, created) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (payment_hash) DO NOTHING`, op.PaymentHash[:], merchant, op.Amount, ids, op.Receipt, at).
			Exec(func(ct pgconn.CommandTag) error { fresh = ct.RowsAffected() == 1; return nil })
		b.Queue(`SELECT merchant, amount, coins, receipt FROM deposits WHERE payment_hash = $1`, op.PaymentHash[:]).
			QueryRow(func(row pgx.Row) error { return row.Scan(&recMerch, &recAm, &recCoins, &recRcpt) })
		spent := queueSpend(b, op.Coins, op.PaymentHash)
		accts := map[uint64]*account{}
		lockAccounts(b, accts, feeAccount(op.Fee, op.Merchant, bank.AccountOutstanding)...)
		if err := t.send(b); err != nil {
			return err
		}
		if !fresh {
			coins, err := hashes(recCoins, "deposits.coins")
			if err != nil {
				return err
			}
			if recMerch != merchant || recAm != op.Amount || !sameCoins(coins, op.Coins) {
				return refuse(bank.ErrPaymentConflict)
			}
			receipt = recRcpt
			return nil
		}
		m, out := accts[op.Merchant], accts[bank.AccountOutstanding]
		if m == nil {
			return refuse(bank.ErrNoAccount)
		}
		if err := spent.first(t); err != nil {
			return err
		}
		if out == nil {
			return errors.New("pgstore: no outstanding account")
		}
		b = &pgx.Batch{}
		w, memo := writer{b}, "payment "+hex.EncodeToString(op.PaymentHash[:])
		if err := w.move(out, m, accts[bank.AccountFees], bank.KindDeposit, op.Amount, op.Fee, memo, at); err != nil {
			return refuse(err)
		}
		if err := t.commitLogged(b, op.Log, op.Time, &op.PaymentHash); err != nil {
			return err
		}
		receipt = bytes.Clone(op.Receipt)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return receipt, nil
}

// Swap implements bank.Store. A replay of a recorded request hash returns
// the recorded signatures if its coin set and value match, and
// bank.ErrRequestConflict if not. As for deposits, the spent coins' primary
// key decides between concurrent spends, and the nonce locks' primary key
// between a swap and a withdrawal answering one CS nonce.
func (s *Store) Swap(ctx context.Context, op bank.SwapOp) ([][]byte, error) {
	sorted, err := op.Validate()
	if err != nil {
		return nil, err
	}
	coins := make([][]byte, len(sorted))
	for i := range sorted {
		coins[i] = sorted[i][:]
	}
	at := dbTime(op.Time)
	locks := lockColumns(op.Locks)
	var sigs [][]byte
	err = s.mutate(ctx, "swap", func(t *txn) error {
		b := begin()
		deadline(b, op.NotAfter)
		var (
			fresh    bool
			recValue int64
			recCoins [][]byte
			recSigs  [][]byte
			reusedNs int64
			issued   int64
		)
		b.Queue(`INSERT INTO swaps (request_hash, value, coins, sigs, created) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (request_hash) DO NOTHING`, op.RequestHash[:], op.Value, coins, op.BlindSigs, at).
			Exec(func(ct pgconn.CommandTag) error { fresh = ct.RowsAffected() == 1; return nil })
		b.Queue(`SELECT value, coins, sigs FROM swaps WHERE request_hash = $1`, op.RequestHash[:]).
			QueryRow(func(row pgx.Row) error { return row.Scan(&recValue, &recCoins, &recSigs) })
		spends, credits := bank.SplitCredits(op.Coins)
		spent := queueSpend(b, spends, op.RequestHash)
		credited := queueSpendCredits(b, credits)
		locks.queue(b, &reusedNs)
		queueIndex(b, op.Blinded, true, op.RequestHash, &issued)
		accts := map[uint64]*account{}
		if op.Fee > 0 {
			lockAccounts(b, accts, bank.AccountOutstanding, bank.AccountFees)
		}
		if err := t.send(b); err != nil {
			return err
		}
		if !fresh {
			rec, err := hashes(recCoins, "swaps.coins")
			if err != nil {
				return err
			}
			if recValue != op.Value || !sameCoins(rec, op.Coins) {
				return refuse(bank.ErrRequestConflict)
			}
			sigs = recSigs
			return nil
		}
		if err := spent.first(t); err != nil {
			return err
		}
		if *credited != len(credits) {
			return refuse(fmt.Errorf("%w: %d of %d inputs' credit", bank.ErrNoCredit, len(credits)-*credited, len(credits)))
		}
		if reusedNs > 0 {
			return refuse(bank.ErrNonceReused)
		}
		if issued > 0 {
			return refuse(bank.ErrAlreadyIssued)
		}
		b = &pgx.Batch{}
		if op.Fee > 0 {
			out := accts[bank.AccountOutstanding]
			if out == nil {
				return errors.New("pgstore: no outstanding account")
			}
			if err := (writer{b}).chargeFee(out, accts[bank.AccountFees], op.Fee, "swap "+hex.EncodeToString(op.RequestHash[:]), at); err != nil {
				return refuse(err)
			}
		}
		if err := t.commitLogged(b, op.Log, op.Time, &op.RequestHash); err != nil {
			return err
		}
		sigs = cloneSigs(op.BlindSigs)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return sigs, nil
}

// SwapRecord implements bank.Store.
func (s *Store) SwapRecord(ctx context.Context, h ecash.Hash) ([][]byte, bool, error) {
	return s.sigsAt(ctx, `SELECT sigs FROM swaps WHERE request_hash = $1`, h)
}

// sigsAt reads the blind signatures of one withdrawal or swap.
func (s *Store) sigsAt(ctx context.Context, query string, h ecash.Hash) ([][]byte, bool, error) {
	var sigs [][]byte
	found := false
	err := s.read(ctx, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, query, h[:]).Scan(&sigs)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return nil, false, err
	}
	return sigs, true, nil
}

// queueIndex records where the signature on each blinded message is, and
// counts into *elsewhere those indexed for another request, which the
// caller refuses (bank.ErrAlreadyIssued: signing one again would charge
// for a coin already issued). A request is its kind and its hash: a
// withdrawal's and a swap's records are apart, so one of each under one
// hash are two requests. The same one twice in this request keeps its
// first position: the rows are inserted by message, then position (the
// sort is not stable, so by message alone a later position could come
// first and win). Queued before the decision: the insert waits for a
// concurrent request indexing the same message, and the count, a
// statement of its own at READ COMMITTED, then sees its commit.
func queueIndex(b *pgx.Batch, blinded []ecash.Hash, swap bool, request ecash.Hash, elsewhere *int64) {
	if len(blinded) == 0 {
		return
	}
	hs, pos := make([][]byte, len(blinded)), make([]int32, len(blinded))
	for i := range blinded {
		hs[i], pos[i] = blinded[i][:], int32(i)
	}
	b.Queue(`INSERT INTO issued (blinded_hash, swap, request_hash, pos)
		SELECT h, $2, $3, p FROM unnest($1::bytea[], $4::int[]) AS i(h, p) ORDER BY 1, 4
		ON CONFLICT (blinded_hash) DO NOTHING`, hs, swap, request[:], pos)
	b.Queue(`SELECT count(*) FROM issued WHERE blinded_hash = ANY($1) AND (request_hash <> $2 OR swap <> $3)`,
		hs, request[:], swap).QueryRow(func(row pgx.Row) error { return row.Scan(elsewhere) })
}

// Issued implements bank.Store: one statement joins the index to the
// withdraw and swap records.
func (s *Store) Issued(ctx context.Context, blinded []ecash.Hash) ([]*bank.Issued, error) {
	if len(blinded) > ecash.MaxCoinsPerRequest {
		return nil, invalid("%d blinded messages", len(blinded))
	}
	hs := make([][]byte, len(blinded))
	at := make(map[ecash.Hash][]int, len(blinded))
	for i, h := range blinded {
		hs[i] = h[:]
		at[h] = append(at[h], i)
	}
	out := make([]*bank.Issued, len(blinded))
	err := s.read(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT i.blinded_hash, i.swap, i.request_hash,
				COALESCE(s.sigs[i.pos + 1], w.sigs[i.pos + 1]), COALESCE(w.account, 0)
			FROM issued i
			LEFT JOIN withdrawals w ON NOT i.swap AND w.request_hash = i.request_hash
			LEFT JOIN swaps s ON i.swap AND s.request_hash = i.request_hash
			WHERE i.blinded_hash = ANY($1)`, hs)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				h, req, sig []byte
				swap        bool
				account     int64
			)
			if err := rows.Scan(&h, &swap, &req, &sig, &account); err != nil {
				return err
			}
			if len(sig) == 0 {
				return fmt.Errorf("pgstore: issued record without its signature")
			}
			is := &bank.Issued{Sig: sig, Kind: bank.KindWithdraw, Account: uint64(account)}
			if swap {
				is.Kind = bank.KindSwap
			}
			var key ecash.Hash
			if err := fixedBytes(key[:], h, "issued.blinded_hash"); err != nil {
				return err
			}
			if err := fixedBytes(is.Request[:], req, "issued.request_hash"); err != nil {
				return err
			}
			for _, i := range at[key] {
				out[i] = is
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Spent implements bank.Store.
func (s *Store) Spent(ctx context.Context, coins []ecash.Hash) ([]bool, error) {
	if len(coins) > ecash.MaxCoinsPerRequest {
		return nil, invalid("%d coins", len(coins))
	}
	ids := make([][]byte, len(coins))
	for i := range coins {
		ids[i] = coins[i][:]
	}
	spent := map[ecash.Hash]bool{}
	err := s.read(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT coin_id FROM spent_coins WHERE coin_id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id []byte
			if err := rows.Scan(&id); err != nil {
				return err
			}
			var h ecash.Hash
			if err := fixedBytes(h[:], id, "spent_coins.coin_id"); err != nil {
				return err
			}
			spent[h] = true
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(coins))
	for i, id := range coins {
		out[i] = spent[id]
	}
	return out, nil
}

// nonceLocks are a request's CS nonce locks as columns, sorted, so that
// concurrent requests take the lock rows in one order.
type nonceLocks struct{ denoms, nonces, blinded [][]byte }

func lockColumns(in []bank.NonceLock) nonceLocks {
	locks := slices.Clone(in)
	slices.SortFunc(locks, func(a, b bank.NonceLock) int {
		if c := bytes.Compare(a.Denom[:], b.Denom[:]); c != 0 {
			return c
		}
		return bytes.Compare(a.Nonce, b.Nonce)
	})
	var c nonceLocks
	for _, l := range locks {
		c.denoms = append(c.denoms, l.Denom[:])
		c.nonces = append(c.nonces, l.Nonce)
		c.blinded = append(c.blinded, l.Blinded[:])
	}
	return c
}

// queue inserts the locks that are new and counts those held by another
// blinded message into *reused.
func (c nonceLocks) queue(b *pgx.Batch, reused *int64) {
	if len(c.denoms) == 0 {
		return
	}
	b.Queue(`INSERT INTO nonce_locks (denom, nonce, blinded)
		SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) ORDER BY 1, 2
		ON CONFLICT (denom, nonce) DO NOTHING`, c.denoms, c.nonces, c.blinded)
	b.Queue(`SELECT count(*) FROM nonce_locks n
		JOIN unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS l(denom, nonce, blinded)
		ON n.denom = l.denom AND n.nonce = l.nonce WHERE n.blinded <> l.blinded`, c.denoms, c.nonces, c.blinded).
		QueryRow(func(row pgx.Row) error { return row.Scan(reused) })
}

// spends is what a transaction learns of the coins it spends: which its
// insert recorded, and the permission of those spent before under another
// ref.
type spends struct {
	coins    []bank.SpentCoin // in op order
	inserted map[ecash.Hash]bool
	before   map[ecash.Hash][]byte
}

// queueSpend inserts the coins as spent by ref (a payment or swap request
// hash) in id order, and reads those already spent under another ref.
func queueSpend(b *pgx.Batch, coins []bank.SpentCoin, ref ecash.Hash) *spends {
	sp := &spends{coins: coins, inserted: map[ecash.Hash]bool{}, before: map[ecash.Hash][]byte{}}
	sorted := slices.Clone(coins)
	slices.SortFunc(sorted, func(a, b bank.SpentCoin) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	ids, perms := make([][]byte, len(sorted)), make([][]byte, len(sorted))
	for i, c := range sorted {
		ids[i], perms[i] = c.ID[:], c.Permission
	}
	b.Queue(`INSERT INTO spent_coins (coin_id, payment_hash, permission)
		SELECT c.id, $3::bytea, c.perm FROM unnest($1::bytea[], $2::bytea[]) AS c(id, perm) ORDER BY 1
		ON CONFLICT (coin_id) DO NOTHING RETURNING coin_id`, ids, perms, ref[:]).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var id []byte
			if err := rows.Scan(&id); err != nil {
				return err
			}
			var h ecash.Hash
			if err := fixedBytes(h[:], id, "spent_coins.coin_id"); err != nil {
				return err
			}
			sp.inserted[h] = true
		}
		return rows.Err()
	})
	b.Queue(`SELECT coin_id, permission FROM spent_coins WHERE coin_id = ANY($1) AND payment_hash <> $2`,
		ids, ref[:]).Query(func(rows pgx.Rows) error {
		return scanCoins(rows, func(h ecash.Hash, perm []byte) { sp.before[h] = perm })
	})
	return sp
}

// scanCoins reads rows of a coin id and a permission.
func scanCoins(rows pgx.Rows, fn func(id ecash.Hash, perm []byte)) error {
	for rows.Next() {
		var id, perm []byte
		if err := rows.Scan(&id, &perm); err != nil {
			return err
		}
		var h ecash.Hash
		if err := fixedBytes(h[:], id, "spent_coins.coin_id"); err != nil {
			return err
		}
		fn(h, perm)
	}
	return rows.Err()
}

// first refuses with a *bank.SpentError for the first coin, in op order,
// that was spent before the transaction's insert. A coin the insert skipped
// that was not spent under another ref was spent under this one by the
// other kind of operation: a deposit and a swap keep separate records, and
// the store's contract does not keep their hashes apart (the bank does:
// each kind of request is hashed with a tag of its own, and a recoup is
// recorded as one or the other, as its coin's origin says). Its permission
// is read now, in one more query on that refusal's path only. first is
// called on a fresh record only: a replay of this very request found its
// record and answered from it before.
func (sp *spends) first(t *txn) error {
	var same [][]byte
	for _, c := range sp.coins {
		if _, ok := sp.before[c.ID]; !ok && !sp.inserted[c.ID] {
			same = append(same, c.ID[:])
		}
	}
	if len(same) > 0 {
		rows, err := t.c.Query(t.ctx, `SELECT coin_id, permission FROM spent_coins WHERE coin_id = ANY($1)`, same)
		if err != nil {
			return err
		}
		err = scanCoins(rows, func(h ecash.Hash, perm []byte) { sp.before[h] = perm })
		rows.Close()
		if err != nil {
			return err
		}
	}
	for _, c := range sp.coins {
		if perm, ok := sp.before[c.ID]; ok {
			return refuse(&bank.SpentError{Coin: c.ID, Permission: perm})
		}
		if !sp.inserted[c.ID] {
			return fmt.Errorf("pgstore: coin %x was neither spent nor recorded", c.ID[:8])
		}
	}
	return nil
}

// queueSpendCredits zeroes the refund credit of each coin whose credit is
// exactly its input's Credit, in id order, and counts them into the result.
func queueSpendCredits(b *pgx.Batch, coins []bank.SpentCoin) *int {
	n := new(int)
	if len(coins) == 0 {
		return n
	}
	sorted := slices.Clone(coins)
	slices.SortFunc(sorted, func(a, b bank.SpentCoin) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	ids, credits := make([][]byte, len(sorted)), make([]int64, len(sorted))
	for i, c := range sorted {
		ids[i], credits[i] = c.ID[:], c.Credit
	}
	b.Queue(`UPDATE coin_credits f SET credit = 0
		FROM unnest($1::bytea[], $2::bigint[]) AS c(id, credit)
		WHERE f.coin_id = c.id AND f.credit = c.credit AND c.credit > 0`, ids, credits).
		Exec(func(ct pgconn.CommandTag) error { *n = int(ct.RowsAffected()); return nil })
	return n
}

// Refund implements bank.Store. Each coin's credit row is upserted first,
// which locks it, so concurrent refunds of one coin are checked one after
// the other against its cap.
func (s *Store) Refund(ctx context.Context, op bank.RefundOp) ([]byte, error) {
	if err := op.Validate(); err != nil {
		return nil, err
	}
	merchant, ok := dbID(op.Merchant)
	if !ok {
		return nil, bank.ErrNotDeposited
	}
	sorted := slices.Clone(op.Coins)
	slices.SortFunc(sorted, func(a, b bank.CoinRefund) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	ids, values := make([][]byte, len(sorted)), make([]int64, len(sorted))
	for i, c := range sorted {
		ids[i], values[i] = c.ID[:], c.Value
	}
	at := dbTime(op.Time)
	var receipt []byte
	err := s.mutate(ctx, "refund", func(t *txn) error {
		b := begin()
		deadline(b, op.NotAfter)
		var (
			fresh           bool
			recPay          []byte
			recMerch, recAm int64
			recRcpt         []byte
			depFound        bool
			depMerch        int64
			depCoins        [][]byte
			refunded        = map[ecash.Hash]int64{}
		)
		b.Queue(`INSERT INTO refunds (request_hash, payment_hash, merchant, amount, receipt, created) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (request_hash) DO NOTHING`, op.RequestHash[:], op.PaymentHash[:], merchant, op.Amount, op.Receipt, at).
			Exec(func(ct pgconn.CommandTag) error { fresh = ct.RowsAffected() == 1; return nil })
		b.Queue(`SELECT payment_hash, merchant, amount, receipt FROM refunds WHERE request_hash = $1`, op.RequestHash[:]).
			QueryRow(func(row pgx.Row) error { return row.Scan(&recPay, &recMerch, &recAm, &recRcpt) })
		b.Queue(`SELECT merchant, coins FROM deposits WHERE payment_hash = $1`, op.PaymentHash[:]).
			QueryRow(func(row pgx.Row) error {
				err := row.Scan(&depMerch, &depCoins)
				if errors.Is(err, pgx.ErrNoRows) {
					return nil
				}
				depFound = err == nil
				return err
			})
		b.Queue(`INSERT INTO coin_credits (coin_id, refunded, credit)
			SELECT c.id, c.v, c.v FROM unnest($1::bytea[], $2::bigint[]) AS c(id, v) ORDER BY 1
			ON CONFLICT (coin_id) DO UPDATE SET refunded = coin_credits.refunded + excluded.refunded,
				credit = coin_credits.credit + excluded.credit
			RETURNING coin_id, refunded`, ids, values).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id []byte
				var r int64
				if err := rows.Scan(&id, &r); err != nil {
					return err
				}
				var h ecash.Hash
				if err := fixedBytes(h[:], id, "coin_credits.coin_id"); err != nil {
					return err
				}
				refunded[h] = r
			}
			return rows.Err()
		})
		accts := map[uint64]*account{}
		lockAccounts(b, accts, feeAccount(op.Fee, op.Merchant, bank.AccountOutstanding)...)
		// Counted under the merchant's lock, which every refund of its
		// payments takes: this one's row included.
		var refunds int64
		b.Queue(`SELECT count(*) FROM refunds WHERE payment_hash = $1`, op.PaymentHash[:]).
			QueryRow(func(row pgx.Row) error { return row.Scan(&refunds) })
		if err := t.send(b); err != nil {
			return err
		}
		if !fresh {
			if !bytes.Equal(recPay, op.PaymentHash[:]) || recMerch != merchant || recAm != op.Amount {
				return refuse(bank.ErrRequestConflict)
			}
			receipt = recRcpt
			return nil
		}
		if !depFound || depMerch != merchant {
			return refuse(bank.ErrNotDeposited)
		}
		if refunds > bank.MaxRefunds {
			return refuse(bank.ErrTooManyRefunds)
		}
		paid, err := hashes(depCoins, "deposits.coins")
		if err != nil {
			return err
		}
		for _, c := range op.Coins {
			if !slices.Contains(paid, c.ID) {
				return refuse(invalid("coin %x is not in the payment", c.ID[:8]))
			}
			if refunded[c.ID] > c.Cap {
				return refuse(bank.ErrRefundExceeds)
			}
		}
		m, out := accts[op.Merchant], accts[bank.AccountOutstanding]
		if m == nil || out == nil {
			return errors.New("pgstore: refund: merchant or outstanding account missing")
		}
		if m.Balance < op.Amount+op.Fee {
			return refuse(bank.ErrInsufficientFunds)
		}
		b = &pgx.Batch{}
		w, memo := writer{b}, "refund of payment "+hex.EncodeToString(op.PaymentHash[:])
		if err := w.move(m, out, accts[bank.AccountFees], bank.KindRefund, op.Amount, op.Fee, memo, at); err != nil {
			return refuse(err)
		}
		if err := t.commitLogged(b, op.Log, op.Time, &op.RequestHash); err != nil {
			return err
		}
		receipt = bytes.Clone(op.Receipt)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return receipt, nil
}

// RefundReceipts implements bank.Store.
func (s *Store) RefundReceipts(ctx context.Context, payment ecash.Hash) ([][]byte, error) {
	var out [][]byte
	err := s.read(ctx, func(ctx context.Context) error {
		out = nil // a retried read starts over
		// In the order applied: that of their audit-log entries, which
		// every replica appends in turn (not their times, which are the
		// replicas' clocks; those order only refunds logged nowhere).
		rows, err := s.pool.Query(ctx, `SELECT receipt FROM refunds r WHERE payment_hash = $1
			ORDER BY (SELECT idx FROM log_refs l WHERE l.ref = r.request_hash), created, request_hash LIMIT $2`,
			payment[:], bank.MaxRefunds)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r []byte
			if err := rows.Scan(&r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	return out, err
}

// RefundRecord implements bank.Store.
func (s *Store) RefundRecord(ctx context.Context, h ecash.Hash) ([]byte, bool, error) {
	var receipt []byte
	found := false
	err := s.read(ctx, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, `SELECT receipt FROM refunds WHERE request_hash = $1`, h[:]).Scan(&receipt)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil || !found {
		return nil, false, err
	}
	return receipt, true, nil
}

// CoinStates implements bank.Store.
func (s *Store) CoinStates(ctx context.Context, coins []ecash.Hash) ([]bank.CoinState, error) {
	if len(coins) > ecash.MaxCoinsPerRequest {
		return nil, invalid("%d coins", len(coins))
	}
	ids := make([][]byte, len(coins))
	for i := range coins {
		ids[i] = coins[i][:]
	}
	states := map[ecash.Hash]bank.CoinState{}
	err := s.read(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT s.coin_id, s.permission, s.payment_hash, coalesce(f.refunded, 0), coalesce(f.credit, 0)
			FROM spent_coins s LEFT JOIN coin_credits f ON f.coin_id = s.coin_id WHERE s.coin_id = ANY($1)`, ids)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				id, by []byte
				st     bank.CoinState
			)
			if err := rows.Scan(&id, &st.Permission, &by, &st.Refunded, &st.Credit); err != nil {
				return err
			}
			var h ecash.Hash
			if err := fixedBytes(h[:], id, "spent_coins.coin_id"); err != nil {
				return err
			}
			if err := fixedBytes(st.SpentBy[:], by, "spent_coins.payment_hash"); err != nil {
				return err
			}
			states[h] = st
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	out := make([]bank.CoinState, len(coins))
	for i, id := range coins {
		out[i] = states[id]
	}
	return out, nil
}

// sameCoins reports whether recorded and coins hold the same set of ids.
func sameCoins(recorded []ecash.Hash, coins []bank.SpentCoin) bool {
	if len(recorded) != len(coins) {
		return false
	}
	set := make(map[ecash.Hash]bool, len(recorded))
	for _, h := range recorded {
		set[h] = true
	}
	for _, c := range coins {
		if !set[c.ID] {
			return false
		}
	}
	return len(set) == len(coins)
}

// Check implements bank.Store. The accounts are locked first, so two
// submissions of one EPOID (which name the same customer) are decided one
// after the other; the EPOID's primary key backs that up.
func (s *Store) Check(ctx context.Context, op bank.CheckOp) (bank.CheckOutcome, error) {
	if err := op.Validate(); err != nil {
		return bank.CheckOutcome{}, err
	}
	at := dbTime(op.Time)
	var out bank.CheckOutcome
	err := s.mutate(ctx, "check", func(t *txn) error {
		b := begin()
		deadline(b, op.NotAfter)
		accts := map[uint64]*account{}
		lockAccounts(b, accts, op.Customer, op.Merchant)
		var rec *bank.CheckOutcome
		b.Queue(`SELECT `+checkCols+` FROM checks WHERE epoid = $1`, []byte(op.EPOID)).
			QueryRow(func(row pgx.Row) error {
				var err error
				rec, err = scanCheck(row)
				return err
			})
		if err := t.send(b); err != nil {
			return err
		}
		if rec != nil {
			if rec.EPOHash != op.EPOHash {
				return refuse(bank.ErrEPOIDConflict)
			}
			out = *rec
			return nil
		}
		cust, merch := accts[op.Customer], accts[op.Merchant]
		if cust == nil || merch == nil {
			return refuse(bank.ErrNoAccount)
		}
		if !merch.Merchant {
			return refuse(bank.ErrNotMerchant)
		}
		o := bank.CheckOutcome{EPOHash: op.EPOHash, Customer: op.Customer, Merchant: op.Merchant, Amount: op.Amount, Record: op.Record, Time: at}
		b = &pgx.Batch{}
		switch err := cust.CanSpend(op.Amount, op.Time); {
		case op.Declined != "":
			o.Outcome, o.Receipt = op.Declined, op.DeclinedReceipt
		case err != nil:
			o.Outcome, o.Receipt = bank.CheckDeclinedLimit, op.DeclinedLimit
		case cust.Balance < op.Amount:
			o.Outcome, o.Receipt = bank.CheckDeclinedFunds, op.DeclinedFunds
		default:
			o.Outcome, o.Receipt = bank.CheckApproved, op.Approved
			cust.RecordSpend(op.Amount, op.Time)
			if err := (writer{b}).check(cust, merch, op, at); err != nil {
				return refuse(err)
			}
		}
		o.NewBalance = cust.Balance
		b.Queue(`INSERT INTO checks (epoid, epo_hash, outcome, receipt, customer, merchant, amount, new_balance, record, decided_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
			[]byte(op.EPOID), o.EPOHash[:], o.Outcome, o.Receipt, int64(o.Customer), int64(o.Merchant),
			o.Amount, o.NewBalance, nonNil(o.Record), o.Time)
		// The insert precedes the log's lock: a concurrent decision of
		// the EPOID (23505) is retried without having held it.
		if err := t.commitLogged(b, bank.CheckLog(op.Log, o.Outcome), op.Time, &op.EPOHash); err != nil {
			return err
		}
		out = o
		return nil
	})
	if err != nil {
		return bank.CheckOutcome{}, err
	}
	return out, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

const checkCols = `epo_hash, outcome, receipt, customer, merchant, amount, new_balance, record, decided_at`

// scanCheck scans a check row; nil, nil if there is none.
func scanCheck(row pgx.Row) (*bank.CheckOutcome, error) {
	var (
		c              bank.CheckOutcome
		hash           []byte
		cust, merch    int64
		recordedAt     time.Time
		receipt, recrd []byte
	)
	err := row.Scan(&hash, &c.Outcome, &receipt, &cust, &merch, &c.Amount, &c.NewBalance, &recrd, &recordedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := fixedBytes(c.EPOHash[:], hash, "checks.epo_hash"); err != nil {
		return nil, err
	}
	c.Receipt, c.Customer, c.Merchant, c.Time = receipt, uint64(cust), uint64(merch), recordedAt.UTC()
	if len(recrd) > 0 {
		c.Record = recrd
	}
	return &c, nil
}

// CheckRecord implements bank.Store.
func (s *Store) CheckRecord(ctx context.Context, epoid string) (bank.CheckOutcome, bool, error) {
	if epoid == "" || len(epoid) > 128 {
		return bank.CheckOutcome{}, false, nil
	}
	var rec *bank.CheckOutcome
	err := s.read(ctx, func(ctx context.Context) error {
		var err error
		rec, err = scanCheck(s.pool.QueryRow(ctx, `SELECT `+checkCols+` FROM checks WHERE epoid = $1`, []byte(epoid)))
		return err
	})
	if err != nil || rec == nil {
		return bank.CheckOutcome{}, false, err
	}
	return *rec, true, nil
}

// SetLimits implements bank.Store.
func (s *Store) SetLimits(ctx context.Context, id uint64, l bank.Limits) error {
	if l.PerTransaction < 0 || l.PerDay < 0 {
		return invalid("negative limit")
	}
	return s.updateAccount(ctx, "set limits", id, func(a *account) { a.Limits = l })
}

// Unlock implements bank.Store: it deletes the account's failed
// authentications, every source's and day's.
func (s *Store) Unlock(ctx context.Context, id uint64) error {
	k, err := policyAccount(id)
	if err != nil {
		return err
	}
	return s.mutate(ctx, "unlock", func(t *txn) error {
		b := begin()
		found := false
		b.Queue(`SELECT true FROM accounts WHERE id = $1`, k).QueryRow(func(row pgx.Row) error {
			return ignoreNoRows(row.Scan(&found))
		})
		if err := t.send(b); err != nil {
			return err
		}
		if !found {
			return refuse(bank.ErrNoAccount)
		}
		b = &pgx.Batch{}
		b.Queue(`DELETE FROM auth_failures WHERE account = $1`, k)
		return t.commit(b)
	})
}

// authSweep is how many counts of days before bank.AuthKeptFrom, any
// account's, AuthFailure deletes with each failure it counts: as many as
// anyone's failures add, and more, so that they do not pile up day after
// day, without one long delete for a day's worth.
const authSweep = 64

// AuthFailure implements bank.Store: one upsert counts the failure (of an
// account that exists), in the transaction that deletes some counts of
// earlier days (authSweep).
func (s *Store) AuthFailure(ctx context.Context, id uint64, source string, now time.Time) (bool, error) {
	k, err := policyAccount(id)
	if err != nil {
		return false, err
	}
	if err := bank.ValidateSource(source); err != nil {
		return false, err
	}
	day := bank.Day(now)
	if day < 0 {
		return false, invalid("failed authentication dated %s, before 1970", now.UTC().Format(time.RFC3339))
	}
	var locked bool
	err = s.mutate(ctx, "auth failure", func(t *txn) error {
		b := begin()
		b.Queue(`DELETE FROM auth_failures WHERE ctid = ANY (ARRAY(
			SELECT ctid FROM auth_failures WHERE day < $1 LIMIT $2 FOR UPDATE SKIP LOCKED))`, bank.AuthKeptFrom(now), authSweep)
		f := bank.AuthFailures{Day: day}
		found := false
		b.Queue(`INSERT INTO auth_failures (account, day, source, failures)
			SELECT $1, $2, $3, 1 FROM accounts WHERE id = $1
			ON CONFLICT (account, day, source) DO UPDATE SET failures = auth_failures.failures + 1
			RETURNING failures`, k, day, []byte(source)).QueryRow(func(row pgx.Row) error {
			found = true
			return ignoreNoRows(row.Scan(&f.Count), &found)
		})
		if err := t.send(b); err != nil {
			return err
		}
		if !found {
			return refuse(bank.ErrNoAccount)
		}
		locked = f.Locked(now)
		return t.commit(&pgx.Batch{})
	})
	return locked, err
}

// AuthLocked implements bank.Store.
func (s *Store) AuthLocked(ctx context.Context, id uint64, source string, now time.Time) (bool, error) {
	k, ok := dbID(id)
	if !ok {
		return false, nil
	}
	f := bank.AuthFailures{Day: bank.Day(now)}
	err := s.read(ctx, func(ctx context.Context) error {
		return ignoreNoRows(s.pool.QueryRow(ctx, `SELECT failures FROM auth_failures WHERE account = $1 AND day = $2 AND source = $3`,
			k, f.Day, []byte(source)).Scan(&f.Count))
	})
	if err != nil {
		return false, err
	}
	return f.Locked(now), nil
}

// LockedSources implements bank.Store.
func (s *Store) LockedSources(ctx context.Context, id uint64, now time.Time) (int, error) {
	k, ok := dbID(id)
	if !ok {
		return 0, nil
	}
	var n int
	err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT count(*) FROM auth_failures WHERE account = $1 AND day = $2 AND failures >= $3`,
			k, bank.Day(now), int64(bank.MaxAuthFailures)).Scan(&n)
	})
	return n, err
}

// policyAccount is the database id of a user account for a policy change;
// ErrInvalidOp for a system account.
func policyAccount(id uint64) (int64, error) {
	if isSystem(id) {
		return 0, invalid("policy on system account %d", id)
	}
	k, ok := dbID(id)
	if !ok {
		return 0, bank.ErrNoAccount
	}
	return k, nil
}

// ignoreNoRows is err, but nil for pgx.ErrNoRows, which then clears the
// found flags.
func ignoreNoRows(err error, found ...*bool) error {
	if errors.Is(err, pgx.ErrNoRows) {
		for _, f := range found {
			*f = false
		}
		return nil
	}
	return err
}

// updateAccount applies f to a user account's policy state in one
// transaction, under the account's row lock.
func (s *Store) updateAccount(ctx context.Context, op string, id uint64, f func(*account)) error {
	if isSystem(id) {
		return invalid("policy on system account %d", id)
	}
	if _, ok := dbID(id); !ok {
		return bank.ErrNoAccount
	}
	return s.mutate(ctx, op, func(t *txn) error {
		b := begin()
		accts := map[uint64]*account{}
		lockAccounts(b, accts, id)
		if err := t.send(b); err != nil {
			return err
		}
		a := accts[id]
		if a == nil {
			return refuse(bank.ErrNoAccount)
		}
		f(a)
		b = &pgx.Batch{}
		(writer{b}).account(a)
		return t.commit(b)
	})
}

// Account implements bank.Store.
func (s *Store) Account(ctx context.Context, id uint64) (bank.Account, error) {
	k, ok := dbID(id)
	if !ok {
		return bank.Account{}, bank.ErrNoAccount
	}
	var a *account
	err := s.read(ctx, func(ctx context.Context) error {
		var err error
		// With the latest posting's time, as lockAccounts reads it for a
		// commit: the bank's pre-checks judge the daily limit by it.
		var last *time.Time
		a, err = scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountCols+`, (SELECT p.posted_at FROM postings p
			WHERE p.account = accounts.id AND p.seq = accounts.next_seq - 1) FROM accounts WHERE id = $1`, k), &last)
		if errors.Is(err, pgx.ErrNoRows) {
			return refuse(bank.ErrNoAccount)
		}
		if err == nil && last != nil {
			a.LastPosted = last.UTC()
		}
		return err
	})
	if err != nil {
		return bank.Account{}, err
	}
	return a.Account, nil
}

// History implements bank.Store. A limit of zero or less returns nothing.
// The account and its postings are read by one statement, so from one
// snapshot.
func (s *Store) History(ctx context.Context, id uint64, limit int) ([]bank.Posting, error) {
	k, ok := dbID(id)
	if !ok {
		return nil, bank.ErrNoAccount
	}
	var out []bank.Posting
	err := s.read(ctx, func(ctx context.Context) error {
		out = nil // a retried read starts over
		rows, err := s.pool.Query(ctx, `SELECT p.seq, p.posted_at, p.kind, p.amount, p.balance, p.memo, p.counterparty, p.ref, p.product
			FROM accounts a LEFT JOIN LATERAL (
				SELECT * FROM postings WHERE account = a.id ORDER BY seq DESC LIMIT $2
			) p ON true
			WHERE a.id = $1 ORDER BY p.seq DESC`, k, int64(max(limit, 0)))
		if err != nil {
			return err
		}
		defer rows.Close()
		found := false
		for rows.Next() {
			found = true
			var (
				seq, counterparty *int64
				at                *time.Time
				kind              *string
				amount, balance   *int64
				memo, ref, prod   []byte
			)
			if err := rows.Scan(&seq, &at, &kind, &amount, &balance, &memo, &counterparty, &ref, &prod); err != nil {
				return err
			}
			if seq == nil {
				continue // an account without postings
			}
			out = append(out, bank.Posting{
				Seq: uint64(*seq), Time: at.UTC(), Kind: *kind, Amount: *amount, Balance: *balance,
				Memo: string(memo), Counterparty: uint64(*counterparty), Ref: string(ref), Product: string(prod),
			})
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if !found {
			return refuse(bank.ErrNoAccount)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Withdrawal implements bank.Store: the withdrawal and the refusal under
// the hash in one statement. The withdrawal wins: one recorded beside a
// refusal (by a build that ignores refusals) moved the money.
func (s *Store) Withdrawal(ctx context.Context, h ecash.Hash) ([][]byte, bool, error) {
	var (
		sigs   *[][]byte
		code   *int32
		reason []byte
	)
	err := s.read(ctx, func(ctx context.Context) error {
		return s.pool.QueryRow(ctx, `SELECT (SELECT sigs FROM withdrawals WHERE request_hash = $1), r.code, r.reason
			FROM (VALUES (1)) AS one (x) LEFT JOIN withdraw_refusals r ON r.request_hash = $1`, h[:]).Scan(&sigs, &code, &reason)
	})
	switch {
	case err != nil:
		return nil, false, err
	case sigs != nil:
		return *sigs, true, nil
	case code != nil:
		r, err := decodeRefusal(*code, reason)
		if err != nil {
			return nil, false, err
		}
		return nil, false, r
	}
	return nil, false, nil
}

// DepositRecord implements bank.Store.
func (s *Store) DepositRecord(ctx context.Context, h ecash.Hash) ([]byte, []ecash.Hash, bool, error) {
	var (
		receipt []byte
		coins   []ecash.Hash
		found   bool
	)
	err := s.read(ctx, func(ctx context.Context) error {
		var ids [][]byte
		err := s.pool.QueryRow(ctx, `SELECT receipt, coins FROM deposits WHERE payment_hash = $1`, h[:]).Scan(&receipt, &ids)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		coins, err = hashes(ids, "deposits.coins")
		return err
	})
	if err != nil || !found {
		return nil, nil, false, err
	}
	return receipt, coins, true, nil
}

// Totals returns the balance of every account, system accounts included,
// from one snapshot. The balances sum to zero.
func (s *Store) Totals(ctx context.Context) (map[uint64]int64, error) {
	out := map[uint64]int64{}
	err := s.read(ctx, func(ctx context.Context) error {
		rows, err := s.pool.Query(ctx, `SELECT id, balance FROM accounts`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, bal int64
			if err := rows.Scan(&id, &bal); err != nil {
				return err
			}
			out[uint64(id)] = bal
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
