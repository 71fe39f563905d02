package pgstore

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/ecash"
)

// TestCrash runs random credits, withdrawals and deposits, each with its
// audit-log entry, from several goroutines against a server of its own,
// kills the server mid-load (pg_ctl stop -m immediate), restarts it (WAL
// recovery), reopens the store (the migrations find nothing to do) and
// checks that every operation acknowledged before the crash is there, that
// replays answer as the first call did, that the ledger is consistent, and
// that the log holds one entry for each recorded change and no other, with
// the tree of its entries. Then again.
func TestCrash(t *testing.T) {
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	srv := pgtest.New(t)
	dsn := srv.NewDatabase(t)
	s := mustOpen(t, dsn)
	const customers, merchants, workers, coinPool = 5, 3, 6, 4000
	var cs, ms []uint64
	for i := range customers {
		cs = append(cs, openAccount(t, s, fmt.Sprint("customer ", i), false))
	}
	for i := range merchants {
		ms = append(ms, openAccount(t, s, fmt.Sprint("merchant ", i), true))
	}
	var (
		log               ackLog
		failed, uncertain atomic.Int64
	)
	// step runs one random operation and logs it if acknowledged. Before
	// the crash every error must be a decision; from the crash on, errors
	// are unacknowledged operations.
	step := func(s *Store, rng *rand.Rand, tag string, crashing *atomic.Bool) {
		var err error
		switch rng.IntN(3) {
		case 0:
			op := loggedCredit(cs[rng.IntN(len(cs))], 1+rng.Int64N(1000), "ref "+tag)
			if _, err = s.Credit(bg, op); err == nil {
				log.add(func() { log.credits = append(log.credits, op) })
			}
		case 1:
			op := loggedWithdraw(cs[rng.IntN(len(cs))], 1+rng.Int64N(700), tag)
			var sigs [][]byte
			if sigs, err = s.Withdraw(bg, op); err == nil {
				log.add(func() { log.withdraws = append(log.withdraws, ackWithdraw{op, sigs}) })
			}
			if errors.Is(err, bank.ErrInsufficientFunds) {
				err = nil
			}
		case 2:
			op := bank.DepositOp{PaymentHash: hashOf("p %s", tag), Merchant: ms[rng.IntN(len(ms))], Amount: 1 + rng.Int64N(300), Receipt: []byte("receipt " + tag), Time: epoch}
			for _, k := range rng.Perm(coinPool)[:1+rng.IntN(4)] {
				op.Coins = append(op.Coins, bank.SpentCoin{ID: hashOf("coin %d", k), Permission: []byte("perm " + tag)})
			}
			logDeposit(&op)
			var receipt []byte
			if receipt, err = s.Deposit(bg, op); err == nil {
				log.add(func() { log.deposits = append(log.deposits, ackDeposit{op, receipt}) })
			}
			if errors.As(err, new(*bank.SpentError)) {
				err = nil
			}
		}
		switch {
		case err == nil:
		case !crashing.Load():
			t.Errorf("%s before the crash: %v", tag, err)
		case errors.Is(err, ErrCommitUnknown):
			uncertain.Add(1)
		default:
			failed.Add(1)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range rounds {
		var (
			stop     = make(chan struct{})
			wg       sync.WaitGroup
			crashing atomic.Bool
		)
		for w := range workers {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(round*workers+w), 7))
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					step(s, rng, fmt.Sprintf("%d/%d/%d", round, w, i), &crashing)
					if crashing.Load() {
						time.Sleep(time.Millisecond) // the server is going or gone
					}
				}
			})
		}
		// Crash after a random number of further acknowledged operations,
		// while the workers keep going.
		target := log.len() + 100 + rng.IntN(200)
		deadline := time.Now().Add(30 * time.Second)
		for log.len() < target {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("round %d: only %d operations acknowledged in 30s", round, log.len())
			}
			time.Sleep(time.Millisecond)
		}
		crashing.Store(true)
		if err := srv.Crash(); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		s.Close()
		// The server is dead: nothing can be acknowledged after this.
		acked := log.snapshot()
		t.Logf("crash %d: %d credits, %d withdraws, %d deposits acknowledged; since the crash %d failed, %d with an unknown outcome",
			round, len(acked.credits), len(acked.withdraws), len(acked.deposits), failed.Swap(0), uncertain.Swap(0))
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		s = mustOpen(t, dsn)
		checkAcked(t, s, acked, rng)
		checkConsistent(t, s)
		checkLogRecords(t, s, acked)
		if t.Failed() {
			break
		}
	}
	s.Close()
}

type ackWithdraw struct {
	op   bank.WithdrawOp
	sigs [][]byte
}

type ackDeposit struct {
	op      bank.DepositOp
	receipt []byte
}

// ackLog records operations that returned success. Slices only grow, so a
// snapshot can share their backing arrays.
type ackLog struct {
	mu        sync.Mutex
	credits   []bank.CreditOp
	withdraws []ackWithdraw
	deposits  []ackDeposit
}

func (l *ackLog) add(fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn()
}

func (l *ackLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.credits) + len(l.withdraws) + len(l.deposits)
}

func (l *ackLog) snapshot() *ackLog {
	l.mu.Lock()
	defer l.mu.Unlock()
	return &ackLog{credits: l.credits, withdraws: l.withdraws, deposits: l.deposits}
}

// sample returns the indexes of up to n random elements of a slice of
// length total, always including the last n/2 (the ones most at risk).
func sample(rng *rand.Rand, total, n int) []int {
	if total <= n {
		out := make([]int, total)
		for i := range out {
			out[i] = i
		}
		return out
	}
	var out []int
	for i := total - n/2; i < total; i++ {
		out = append(out, i)
	}
	for range n - n/2 {
		out = append(out, rng.IntN(total-n/2))
	}
	return out
}

// checkAcked checks that every acknowledged operation is recorded as
// acknowledged, and that a sample replays, through the API, to its first
// answer without moving money.
func checkAcked(t *testing.T, s *Store, acked *ackLog, rng *rand.Rand) {
	t.Helper()
	refs := map[string][2]int64{}
	rows, err := s.pool.Query(bg, `SELECT reference, account, amount FROM credit_refs`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var ref []byte
		var acct, amount int64
		if err := rows.Scan(&ref, &acct, &amount); err != nil {
			t.Fatal(err)
		}
		refs[string(ref)] = [2]int64{acct, amount}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, op := range acked.credits {
		if r, ok := refs[op.Reference]; !ok || r != [2]int64{int64(op.Account), op.Amount} {
			t.Fatalf("acknowledged credit %q: record %v (found %v)", op.Reference, r, ok)
		}
	}
	for _, w := range acked.withdraws {
		sigs, found, err := s.Withdrawal(bg, w.op.RequestHash)
		if err != nil || !found || !slices.EqualFunc(sigs, w.sigs, bytes.Equal) {
			t.Fatalf("acknowledged withdraw %x lost: %q, %v, %v", w.op.RequestHash[:4], sigs, found, err)
		}
	}
	for _, d := range acked.deposits {
		receipt, _, found, err := s.DepositRecord(bg, d.op.PaymentHash)
		if err != nil || !found || !bytes.Equal(receipt, d.receipt) {
			t.Fatalf("acknowledged deposit %x lost: %q, %v, %v", d.op.PaymentHash[:4], receipt, found, err)
		}
	}
	before, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range sample(rng, len(acked.credits), 20) {
		op := acked.credits[i]
		op.Amount++
		if _, err := s.Credit(bg, op); !errors.Is(err, bank.ErrReferenceConflict) {
			t.Errorf("acknowledged credit %q: conflicting replay = %v", op.Reference, err)
		}
	}
	for _, i := range sample(rng, len(acked.withdraws), 20) {
		w := acked.withdraws[i]
		op := w.op
		op.BlindSigs = [][]byte{[]byte("fresh sig")}
		if sigs, err := s.Withdraw(bg, op); err != nil || !slices.EqualFunc(sigs, w.sigs, bytes.Equal) {
			t.Errorf("acknowledged withdraw %x: replay = %q, %v; want %q", op.RequestHash[:4], sigs, err, w.sigs)
		}
	}
	for _, i := range sample(rng, len(acked.deposits), 20) {
		d := acked.deposits[i]
		op := d.op
		op.Receipt = []byte("fresh receipt")
		if r, err := s.Deposit(bg, op); err != nil || !bytes.Equal(r, d.receipt) {
			t.Errorf("acknowledged deposit %x: replay = %q, %v; want %q", op.PaymentHash[:4], r, err, d.receipt)
		}
	}
	after, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	if !mapsEqual(before, after) {
		t.Errorf("replays moved money: %v → %v", before, after)
	}
}

// checkConsistent checks a database's records against its ledger:
// balances sum to zero; each account's postings are numbered 1..n, add up
// to its balance and carry correct running balances; every spent coin
// belongs to exactly the deposit that names it; the system accounts equal
// the totals of the credit, withdraw and deposit records; and the
// partitions hold every row of their tables.
func checkConsistent(t *testing.T, s *Store) {
	t.Helper()
	totals, err := s.Totals(bg)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for id, bal := range totals {
		sum += bal
		hist, err := s.History(bg, id, math.MaxInt)
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for i, p := range hist {
			total += p.Amount
			if i+1 < len(hist) && (hist[i+1].Balance+p.Amount != p.Balance || hist[i+1].Seq+1 != p.Seq) {
				t.Errorf("account %d: posting %d does not follow posting %d", id, p.Seq, hist[i+1].Seq)
			}
		}
		if total != bal || (len(hist) > 0 && (hist[0].Balance != bal || hist[len(hist)-1].Seq != 1)) {
			t.Errorf("account %d: balance %d, postings sum to %d", id, bal, total)
		}
	}
	if sum != 0 {
		t.Errorf("balances sum to %d", sum)
	}
	var orphans, coins, coinRefs int64
	if err := s.pool.QueryRow(bg, `SELECT
			(SELECT count(*) FROM spent_coins c LEFT JOIN deposits d ON d.payment_hash = c.payment_hash
				WHERE d.payment_hash IS NULL OR NOT (c.coin_id = ANY (d.coins))),
			(SELECT count(*) FROM spent_coins),
			(SELECT coalesce(sum(cardinality(coins)), 0) FROM deposits)`).Scan(&orphans, &coins, &coinRefs); err != nil {
		t.Fatal(err)
	}
	if orphans != 0 || coins != coinRefs {
		t.Errorf("%d spent coins without their deposit; %d spent coins, %d coins in deposits", orphans, coins, coinRefs)
	}
	var withdrawn, deposited, credited, postedCredits int64
	if err := s.pool.QueryRow(bg, `SELECT
			(SELECT coalesce(sum(amount), 0) FROM withdrawals),
			(SELECT coalesce(sum(amount), 0) FROM deposits),
			(SELECT coalesce(sum(amount), 0) FROM credit_refs),
			(SELECT coalesce(sum(amount), 0) FROM postings WHERE kind = 'credit' AND amount > 0)`).Scan(&withdrawn, &deposited, &credited, &postedCredits); err != nil {
		t.Fatal(err)
	}
	if got := totals[bank.AccountOutstanding]; got != withdrawn-deposited {
		t.Errorf("outstanding %d, withdraw records %d − deposit records %d", got, withdrawn, deposited)
	}
	// Credits without a reference have no record: compare the referenced
	// ones with the postings only where every credit had one.
	if credited == postedCredits {
		if got := totals[bank.AccountFunding]; got != -credited {
			t.Errorf("funding %d, reference records %d", got, credited)
		}
	}
	// Every withdraw and deposit record has its postings, and no posting
	// lacks its record.
	var wPosts, wRecs, dPosts, dRecs int64
	if err := s.pool.QueryRow(bg, `SELECT
			(SELECT count(*) FROM postings WHERE kind = 'withdraw' AND amount < 0),
			(SELECT count(*) FROM withdrawals),
			(SELECT count(*) FROM postings WHERE kind = 'deposit' AND amount > 0),
			(SELECT count(*) FROM deposits)`).Scan(&wPosts, &wRecs, &dPosts, &dRecs); err != nil {
		t.Fatal(err)
	}
	if wPosts != wRecs || dPosts != dRecs {
		t.Errorf("%d withdraw postings for %d records, %d deposit postings for %d records", wPosts, wRecs, dPosts, dRecs)
	}
	var checkOutcomes int64
	if err := s.pool.QueryRow(bg, `SELECT count(*) FROM checks c WHERE c.outcome = 'approved' AND NOT EXISTS (
			SELECT 1 FROM postings p WHERE p.account = c.customer AND p.kind = 'check' AND p.ref = c.epoid AND p.amount = -c.amount)`).Scan(&checkOutcomes); err != nil {
		t.Fatal(err)
	}
	if checkOutcomes != 0 {
		t.Errorf("%d approved checks without their debit", checkOutcomes)
	}
}

// checkLogRecords checks the log against the records after a crash: it is
// whole (checkLog), holds one entry per account, credit reference,
// withdrawal and deposit recorded (every operation of the crash test is
// logged, and its entry commits with its record or not at all), and finds
// each acknowledged withdrawal's and deposit's entry by its hash.
func checkLogRecords(t *testing.T, s *Store, acked *ackLog) {
	t.Helper()
	entries := checkLog(t, s)
	counts := map[auditlog.Kind]int64{}
	for _, e := range entries {
		counts[e.Kind()]++
	}
	var accounts, credits, withdrawals, deposits, refs int64
	if err := s.pool.QueryRow(bg, `SELECT
			(SELECT count(*) FROM accounts WHERE id >= $1),
			(SELECT count(*) FROM credit_refs),
			(SELECT count(*) FROM withdrawals),
			(SELECT count(*) FROM deposits),
			(SELECT count(*) FROM log_refs)`, int64(FirstUserAccount)).Scan(&accounts, &credits, &withdrawals, &deposits, &refs); err != nil {
		t.Fatal(err)
	}
	want := map[auditlog.Kind]int64{auditlog.KindAccountOpened: accounts, auditlog.KindCredit: credits,
		auditlog.KindWithdraw: withdrawals, auditlog.KindDeposit: deposits}
	if !maps.Equal(counts, want) {
		t.Errorf("log entries by kind %v, records %v", counts, want)
	}
	if refs != withdrawals+deposits {
		t.Errorf("%d log refs for %d withdrawals and %d deposits", refs, withdrawals, deposits)
	}
	find := func(ref ecash.Hash, match func(auditlog.Op) bool) {
		t.Helper()
		i, found, err := s.LogIndex(bg, ref)
		if err != nil || !found || i < 0 || i >= int64(len(entries)) || !match(entries[i].Op) {
			t.Fatalf("acknowledged operation %x: LogIndex = %d, %v, %v", ref[:4], i, found, err)
		}
	}
	for _, w := range acked.withdraws {
		find(w.op.RequestHash, func(o auditlog.Op) bool {
			e, ok := o.(auditlog.Withdraw)
			return ok && e.RequestHash == w.op.RequestHash && e.Account == w.op.Account
		})
	}
	for _, d := range acked.deposits {
		find(d.op.PaymentHash, func(o auditlog.Op) bool {
			e, ok := o.(auditlog.Deposit)
			return ok && e.PaymentHash == d.op.PaymentHash && e.Merchant == d.op.Merchant
		})
	}
}
