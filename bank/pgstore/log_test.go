package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

func eur(n int64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: uint64(n)} }

var testDenom = hashOf("denomination")

// Logged operations, with entries that add up.

func loggedCredit(account uint64, amount int64, ref string) bank.CreditOp {
	return bank.CreditOp{Account: account, Amount: amount, Reference: ref, Time: epoch,
		Log: auditlog.Credit{Account: account, Amount: eur(amount), Reference: auditlog.OptionalHash(ref)}}
}

func loggedWithdraw(account uint64, amount int64, tag string) bank.WithdrawOp {
	h := hashOf("withdraw %s", tag)
	return bank.WithdrawOp{RequestHash: h, Account: account, Amount: amount, BlindSigs: [][]byte{[]byte("sig " + tag)}, Time: epoch,
		Log: auditlog.Withdraw{Account: account, Amount: eur(amount), RequestHash: h, AccountSig: make([]byte, 64),
			Issued: []auditlog.DenomCount{{Denom: testDenom, Value: eur(amount), Count: 1}}}}
}

// loggedDeposit deposits coins (at least one) worth amount in all; amount
// is raised to the number of coins if it is below.
func loggedDeposit(merchant uint64, amount int64, tag string, coins ...ecash.Hash) bank.DepositOp {
	op := bank.DepositOp{PaymentHash: hashOf("payment %s", tag), Merchant: merchant, Amount: amount, Receipt: []byte("receipt " + tag), Time: epoch}
	for _, c := range coins {
		op.Coins = append(op.Coins, bank.SpentCoin{ID: c, Permission: []byte("permission " + tag)})
	}
	logDeposit(&op)
	return op
}

// logDeposit sets op.Log to a deposit entry that spreads op.Amount over
// its coins, raising op.Amount to the number of coins if it is below.
func logDeposit(op *bank.DepositOp) {
	op.Amount = max(op.Amount, int64(len(op.Coins)))
	log := auditlog.Deposit{Merchant: op.Merchant, Amount: eur(op.Amount), PaymentHash: op.PaymentHash}
	for i, c := range op.Coins {
		value := op.Amount / int64(len(op.Coins))
		if i == 0 {
			value += op.Amount % int64(len(op.Coins))
		}
		log.Coins = append(log.Coins, auditlog.SpentCoin{ID: c.ID, Denom: testDenom, Value: eur(value), PermissionHash: ecash.HashOf(c.Permission)})
	}
	op.Log = log
}

func loggedCheck(epoid string, customer, merchant uint64, amount int64) bank.CheckOp {
	h := hashOf("epo %s", epoid)
	return bank.CheckOp{EPOID: epoid, EPOHash: h, Customer: customer, Merchant: merchant, Amount: amount,
		Approved: []byte("ok"), DeclinedFunds: []byte("funds"), DeclinedLimit: []byte("limit"), Time: epoch,
		Log: auditlog.Check{EPOID: epoid, EPOHash: h, CustomerSig: make([]byte, 64), Customer: customer, Merchant: merchant, Amount: eur(amount)}}
}

// testKeySet is bytes the log takes for a signed key set (it checks the tag).
func testKeySet(n int) []byte {
	e := ecash.NewEncoder("signed-keyset")
	e.String(fmt.Sprint("test key set ", n))
	return e.Bytes()
}

// checkLog reads the whole log of s and checks it: the size counts the
// entries, which are gap-free, decode and name their own index, and the
// tree hash of the store's stored hashes is that of a replay of the
// entries (through auditlog.MemLog, and auditlog.VerifyLog). It returns
// the decoded entries.
func checkLog(t *testing.T, s bank.Store) []*auditlog.Entry {
	t.Helper()
	size, err := s.LogSize(bg)
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	for int64(len(raw)) < size {
		page, err := s.LogEntries(bg, int64(len(raw)), bank.MaxLogRead, bank.MaxLogReadBytes)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			t.Fatalf("LogEntries(%d) is empty in a log of %d", len(raw), size)
		}
		raw = append(raw, page...)
	}
	if int64(len(raw)) != size {
		t.Fatalf("%d entries in a log of %d", len(raw), size)
	}
	if rest, err := s.LogEntries(bg, size, bank.MaxLogRead, bank.MaxLogReadBytes); err != nil || len(rest) != 0 {
		t.Fatalf("LogEntries past the end = %d entries, %v", len(rest), err)
	}
	mem := auditlog.NewMemLog()
	entries := make([]*auditlog.Entry, len(raw))
	for i, b := range raw {
		e, err := mem.AppendEncoded(b)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		entries[i] = e
	}
	root, err := auditlog.TreeHash(size, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return s.LogHashes(bg, ix) }))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := mem.Checkpoint("test")
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != size || cp.Root != root {
		t.Fatalf("the store's tree of %d entries has root %s, the replay %s", size, root, cp.Root)
	}
	if err := auditlog.VerifyLog(auditlog.Checkpoint{Origin: "test", Size: size, Root: root}, raw); err != nil {
		t.Fatal(err)
	}
	// Every stored hash a log of this size has is there, and matches.
	if size > 0 {
		n := tlog.StoredHashIndex(0, size)
		ix := make([]int64, n)
		for i := range ix {
			ix[i] = int64(i)
		}
		got, err := s.LogHashes(bg, ix)
		if err != nil {
			t.Fatal(err)
		}
		want, err := mem.ReadHashes(ix)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatal("the store's stored hashes differ from the replay's")
		}
		if _, err := s.LogHashes(bg, []int64{n}); err == nil {
			t.Errorf("LogHashes(%d) beyond a log of %d succeeded", n, size)
		}
	}
	return entries
}

// TestLogFrontier: the SQL that reads the frontier with the lock selects
// exactly the committed hashes appending the next entries reads, for small
// and large logs.
func TestLogFrontier(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	query := `SELECT array_agg(i ORDER BY i) FROM (` + frontierIndexes(`(SELECT $1::bigint AS size)`) + `) AS f(i)`
	// Stored-hash indexes are about twice the size: sizes up to 2^61.
	sizes := []int64{1<<61 - 1, 1 << 61, 1<<60 + 1<<40 + 3}
	for n := range int64(300) {
		sizes = append(sizes, n)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		sizes = append(sizes, rng.Int64N(1<<rng.IntN(61)+1))
	}
	for _, n := range sizes {
		var got []int64
		if err := s.pool.QueryRow(bg, query, n).Scan(&got); err != nil {
			t.Fatal(err)
		}
		// What an Appender on a log of n reads from the committed
		// hashes, for the next entries: a recording reader.
		read := map[int64]bool{}
		a := auditlog.NewAppender(n, tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) {
			for _, x := range ix {
				read[x] = true
			}
			return make([]tlog.Hash, len(ix)), nil
		}))
		for i := range 64 {
			if _, _, err := a.Append(auditlog.KeySet{Signed: testKeySet(i)}, epoch); err != nil {
				t.Fatal(err)
			}
		}
		var want []int64
		for l := range 63 {
			if n>>l&1 == 1 {
				want = append(want, tlog.StoredHashIndex(l, n>>l-1))
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("frontier of %d: SQL %v, tlog %v", n, got, want)
		}
		for x := range read {
			if !slices.Contains(want, x) {
				t.Fatalf("appending to a log of %d reads committed hash %d, not in its frontier %v", n, x, want)
			}
		}
	}
}

// TestLogTwoStoresOneDatabase: two Stores (two bankd replicas) over one
// database append concurrently: opens, credits, withdrawals, deposits,
// checks, key sets published by both, with refusals and replays among
// them. The result is one gap-free log with an entry for each change and
// none for the rest, whose stored hashes make the tree of its entries.
func TestLogTwoStoresOneDatabase(t *testing.T) {
	s1, s2 := openConcurrently(t, freshDSN(t))
	defer s1.Close()
	defer s2.Close()
	stores := []*Store{s1, s2}
	const accounts = 8
	ids := make([]uint64, accounts)
	merchants := make([]uint64, accounts)
	var wg sync.WaitGroup
	for i := range accounts {
		wg.Go(func() {
			var err error
			ids[i], err = stores[i%2].OpenAccount(bg, fmt.Sprint("customer ", i), key(fmt.Sprint("customer ", i)), false, epoch)
			if err != nil {
				t.Error(err)
			}
			merchants[i], err = stores[(i+1)%2].OpenAccount(bg, fmt.Sprint("merchant ", i), key(fmt.Sprint("merchant ", i)), true, epoch)
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	var changes atomic.Int64 // operations that changed state
	changes.Add(2 * accounts)
	var (
		mu   sync.Mutex
		refs = map[ecash.Hash]auditlog.Kind{} // logged deposit, withdraw and check hashes
	)
	logged := func(ref ecash.Hash, k auditlog.Kind) {
		changes.Add(1)
		mu.Lock()
		refs[ref] = k
		mu.Unlock()
	}
	const workers, rounds = 16, 12
	for w := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for r := range rounds {
				s := stores[rng.IntN(2)]
				c, m := ids[rng.IntN(accounts)], merchants[rng.IntN(accounts)]
				tag := fmt.Sprintf("%d/%d", w, r)
				// Credit, replayed through the other store.
				credit := loggedCredit(c, 100, "ref "+tag)
				if _, err := s.Credit(bg, credit); err != nil {
					t.Error(err)
					return
				}
				changes.Add(1)
				if _, err := stores[rng.IntN(2)].Credit(bg, credit); err != nil {
					t.Error(err)
				}
				// Withdraw: it may find the balance too low (others
				// withdraw and pay from it too).
				wop := loggedWithdraw(c, 60, tag)
				switch _, err := s.Withdraw(bg, wop); {
				case err == nil:
					logged(wop.RequestHash, auditlog.KindWithdraw)
				case !errors.Is(err, bank.ErrInsufficientFunds):
					t.Error(err)
				}
				// A withdrawal far beyond any balance: refused.
				if _, err := s.Withdraw(bg, loggedWithdraw(c, 1<<40, "poor "+tag)); !errors.Is(err, bank.ErrInsufficientFunds) {
					t.Errorf("withdraw beyond the balance: %v", err)
				}
				// A deposit; a second spend of its coin is refused.
				coin := hashOf("coin %s", tag)
				dop := loggedDeposit(m, 50, tag, coin)
				if _, err := s.Deposit(bg, dop); err != nil {
					t.Error(err)
				} else {
					logged(dop.PaymentHash, auditlog.KindDeposit)
				}
				if _, err := stores[rng.IntN(2)].Deposit(bg, loggedDeposit(m, 50, "again "+tag, coin)); !errors.Is(err, ecash.ErrDoubleSpend) {
					t.Errorf("second spend: %v", err)
				}
				// A check, approved or declined (both logged), and its replay.
				cop := loggedCheck("epo-"+tag, c, m, 30)
				if _, err := s.Check(bg, cop); err != nil {
					t.Error(err)
				} else {
					logged(cop.EPOHash, auditlog.KindCheck)
				}
				if _, err := stores[rng.IntN(2)].Check(bg, cop); err != nil {
					t.Error(err)
				}
				// Both replicas publish the same key set: one entry.
				if err := s.PublishKeySet(bg, testKeySet(r/4), epoch); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	entries := checkLog(t, s1)
	counts := map[auditlog.Kind]int{}
	for _, e := range entries {
		counts[e.Kind()]++
	}
	// Key sets 0, 1, 2 were each published by many, in some order, and
	// may alternate: at least 3, and no two adjacent entries of one.
	keysets := counts[auditlog.KindKeySet]
	if keysets < rounds/4 {
		t.Errorf("%d key set entries, want at least %d", keysets, rounds/4)
	}
	var last []byte
	for _, e := range entries {
		if ks, ok := e.Op.(auditlog.KeySet); ok {
			if bytes.Equal(ks.Signed, last) {
				t.Errorf("entry %d publishes the key set already newest", e.Index)
			}
			last = ks.Signed
		}
	}
	if got, want := int64(len(entries)-keysets), changes.Load(); got != want {
		t.Errorf("%d entries (besides key sets) for %d changes; kinds %v", got, want, counts)
	}
	if got := counts[auditlog.KindAccountOpened]; got != 2*accounts {
		t.Errorf("%d account entries for %d accounts", got, 2*accounts)
	}
	if got := counts[auditlog.KindCredit]; got != workers*rounds {
		t.Errorf("%d credit entries for %d credits", got, workers*rounds)
	}
	// LogIndex finds each entry by its hash, through either replica: from
	// memory for the replica that committed it, from the database for the
	// other.
	for _, s := range stores {
		remembered := 0
		for ref, kind := range refs {
			if _, ok := s.refs.Get(ref); ok {
				remembered++
			}
			i, found, err := s.LogIndex(bg, ref)
			if err != nil || !found || i < 0 || i >= int64(len(entries)) || entries[i].Kind() != kind {
				t.Fatalf("LogIndex(%x) = %d, %v, %v; want a %v entry", ref[:4], i, found, err, kind)
			}
			var got ecash.Hash
			switch o := entries[i].Op.(type) {
			case auditlog.Withdraw:
				got = o.RequestHash
			case auditlog.Deposit:
				got = o.PaymentHash
			case auditlog.Check:
				got = o.EPOHash
			}
			if got != ref {
				t.Fatalf("LogIndex(%x) = %d, an entry of %x", ref[:4], i, got[:4])
			}
		}
		if remembered == 0 || remembered == len(refs) {
			t.Errorf("a replica remembers %d of the %d refs both committed", remembered, len(refs))
		}
	}
	checkConsistent(t, s2)
}

// TestLogLockPlacement: the log's row lock is the last thing a change
// takes, and refusals, replays and unlogged operations never take it.
// While another session holds it, those complete, and a logged change
// waits, with its decision made, then commits once the lock is free.
func TestLogLockPlacement(t *testing.T) {
	dsn := freshDSN(t)
	s := mustOpen(t, dsn)
	defer s.Close()
	c := openAccount(t, s, "c", false)
	m := openAccount(t, s, "m", true)
	if _, err := s.Credit(bg, loggedCredit(c, 100, "r1")); err != nil {
		t.Fatal(err)
	}
	w := loggedWithdraw(c, 10, "w1")
	if _, err := s.Withdraw(bg, w); err != nil {
		t.Fatal(err)
	}
	size, _ := s.LogSize(bg)

	other := mustOpen(t, dsn)
	defer other.Close()
	tx, err := other.pool.Begin(bg)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(bg)
	if _, err := tx.Exec(bg, `SELECT size FROM log_state FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 5*time.Second)
	defer cancel()
	quick := map[string]func() error{
		"refused withdrawal": func() error {
			_, err := s.Withdraw(ctx, loggedWithdraw(c, 1000, "poor"))
			if errors.Is(err, bank.ErrInsufficientFunds) {
				return nil
			}
			return err
		},
		"replayed withdrawal": func() error { _, err := s.Withdraw(ctx, w); return err },
		"replayed credit":     func() error { _, err := s.Credit(ctx, loggedCredit(c, 100, "r1")); return err },
		"unlogged credit": func() error {
			_, err := s.Credit(ctx, bank.CreditOp{Account: c, Amount: 1, Time: epoch})
			return err
		},
		"invalid entry": func() error {
			op := loggedCredit(c, 5, "bad")
			op.Log = auditlog.Credit{Account: 0, Amount: eur(5)} // account 0: invalid
			_, err := s.Credit(ctx, op)
			if errors.Is(err, bank.ErrInvalidOp) {
				return nil
			}
			return fmt.Errorf("credit with an invalid entry: %v, want ErrInvalidOp", err)
		},
		"invalid key": func() error {
			_, err := s.OpenAccount(ctx, "bad key", make([]byte, 32), false, epoch)
			if errors.Is(err, bank.ErrInvalidOp) {
				return nil
			}
			return fmt.Errorf("OpenAccount(small-order key): %v, want ErrInvalidOp", err)
		},
		"policy": func() error { return s.SetLimits(ctx, c, bank.Limits{PerDay: 1 << 40}) },
	}
	for name, fn := range quick {
		done := make(chan error, 1)
		go func() { done <- fn() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("%s waits for the log's lock", name)
		}
	}
	// A logged change waits for the lock, holding only what it decided on.
	done := make(chan error, 1)
	go func() { _, err := s.Deposit(bg, loggedDeposit(m, 5, "p1", hashOf("coin 1"))); done <- err }()
	waitForLockWait(t, dsn)
	select {
	case err := <-done:
		t.Fatalf("deposit completed while the log was locked: %v", err)
	default:
	}
	if err := tx.Rollback(bg); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LogSize(bg); got != size+1 {
		t.Errorf("log size %d, want %d: one deposit", got, size+1)
	}
	checkLog(t, s)
	checkConsistent(t, s)
}

// TestLogOpenAccountOrder: as in the Pebble store, a key in use is
// ErrKeyInUse even if the log would refuse it (an account opened before
// the log), and a key the log refuses opens nothing and uses no id.
func TestLogOpenAccountOrder(t *testing.T) {
	s := mustOpen(t, freshDSN(t))
	defer s.Close()
	bad := make([]byte, 32) // the identity's encoding is 1 ‖ 0…: all zeros is of small order too
	if _, err := s.OpenAccount(bg, "bad", bad, false, epoch); !errors.Is(err, bank.ErrInvalidOp) {
		t.Fatalf("OpenAccount(small-order key) = %v, want ErrInvalidOp", err)
	}
	if _, err := s.OpenAccount(bg, "early", key("early"), false, time.Time{}); !errors.Is(err, bank.ErrInvalidOp) {
		t.Fatalf("OpenAccount at time zero (before 1970) = %v, want ErrInvalidOp", err)
	}
	if id := openAccount(t, s, "first", false); id != FirstUserAccount {
		t.Errorf("first account %d after refusals, want %d", id, FirstUserAccount)
	}
	if _, err := s.pool.Exec(bg, `INSERT INTO accounts (id, name, pubkey, created) VALUES (5000, 'old', $1, now())`, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenAccount(bg, "bad again", bad, false, epoch); !errors.Is(err, bank.ErrKeyInUse) {
		t.Errorf("OpenAccount(key in use the log refuses) = %v, want ErrKeyInUse", err)
	}
	entries := checkLog(t, s)
	if len(entries) != 1 || entries[0].Op.(auditlog.AccountOpened).Account != FirstUserAccount {
		t.Errorf("log %v, want the one account opened", entries)
	}
}

// TestLogMigration: a database of schema version 3, with accounts and
// money, gains an empty log; the changes after it are logged from index 0.
func TestLogMigration(t *testing.T) {
	dsn := freshDSN(t)
	pool, err := pgxpool.New(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := migrate(bg, pool, migrations[:3]); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(bg, `INSERT INTO accounts (id, name, pubkey, created, balance) VALUES (1000, 'old', $1, now(), 0)`, key("old")); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(bg, `UPDATE counters SET value = 1001 WHERE name = 'next_account'`); err != nil {
		t.Fatal(err)
	}
	s := mustOpen(t, dsn)
	defer s.Close()
	if size, err := s.LogSize(bg); err != nil || size != 0 {
		t.Fatalf("LogSize after migrating = %d, %v; want 0", size, err)
	}
	if _, err := s.OpenAccount(bg, "old again", key("old"), false, epoch); !errors.Is(err, bank.ErrKeyInUse) {
		t.Errorf("OpenAccount(old key) = %v, want ErrKeyInUse", err)
	}
	id := openAccount(t, s, "new", false)
	if _, err := s.Credit(bg, loggedCredit(1000, 5, "")); err != nil {
		t.Fatal(err)
	}
	es := checkLog(t, s)
	if len(es) != 2 || es[0].Op.(auditlog.AccountOpened).Account != id || es[1].Op.(auditlog.Credit).Account != 1000 {
		t.Errorf("log after migrating: %+v", es)
	}
}
