package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// testConcurrentNonceLock: withdrawals and swaps of many requests race to
// answer one CS nonce, each for another blinded message (two answers
// would reveal the denomination's key): one is recorded, every other is
// refused with ErrNonceReused, and only the winner debits or spends.
func testConcurrentNonceLock(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	f.fundOutstanding(1000)
	const n = 40
	lock := func(i int) bank.NonceLock {
		return bank.NonceLock{Denom: hashOf("raced denom"), Nonce: []byte("raced nonce"), Blinded: hashOf("challenge %d", i)}
	}
	raced := func(i int) ecash.Hash { return coin(fmt.Sprint("nonce race ", i)) }
	errs := make([]error, n)
	run(n, func(i int) {
		tag := fmt.Sprint("nonce race ", i)
		if i%2 == 0 {
			op := withdrawOp(c, 10, tag)
			op.Locks = []bank.NonceLock{lock(i)}
			_, errs[i] = s.Withdraw(f.ctx, op)
		} else {
			op := swapOp(10, tag, raced(i))
			op.Locks = []bank.NonceLock{lock(i)}
			_, errs[i] = s.Swap(f.ctx, op)
		}
	})
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("one nonce answered for two blinded messages: requests %d and %d", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, bank.ErrNonceReused):
			t.Errorf("request %d: %v, want ErrNonceReused", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no request was answered")
	}
	want := int64(1000)
	if winner%2 == 0 {
		want -= 10
	}
	f.expectBalances(map[uint64]int64{c: want})
	var coins []ecash.Hash
	for i := 1; i < n; i += 2 {
		coins = append(coins, raced(i))
	}
	spent, err := s.Spent(f.ctx, coins)
	if err != nil {
		t.Fatal(err)
	}
	for j, sp := range spent {
		if i := 2*j + 1; sp != (i == winner) {
			t.Errorf("swap %d's input spent: %v (the winner is %d)", i, sp, winner)
		}
	}
	// The nonce stays locked to the winner's message.
	op := withdrawOp(c, 10, "nonce race after")
	op.Locks = []bank.NonceLock{lock(n)}
	if _, err := s.Withdraw(f.ctx, op); !errors.Is(err, bank.ErrNonceReused) {
		t.Errorf("the raced nonce for another message afterwards: %v, want ErrNonceReused", err)
	}
	op.Locks = []bank.NonceLock{lock(winner)}
	if _, err := s.Withdraw(f.ctx, op); err != nil {
		t.Errorf("the raced nonce for the winner's message afterwards: %v", err)
	}
	f.checkLedger()
}

// testConcurrentCreditReference: a credit retried at once through every
// replica moves its money once, and a credit and a payout racing for one
// reference: one direction wins, the other conflicts.
func testConcurrentCreditReference(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	const n = 40
	op := bank.CreditOp{Account: c, Amount: 100, Reference: "raced wire", Time: epoch}
	bals := make([]int64, n)
	errs := make([]error, n)
	run(n, func(i int) { bals[i], errs[i] = s.Credit(f.ctx, op) })
	for i := range n {
		if errs[i] != nil || bals[i] != 100 {
			t.Errorf("credit %d of one reference: balance %d, %v; want 100", i, bals[i], errs[i])
		}
	}
	f.expectBalances(map[uint64]int64{c: 100, bank.AccountFunding: -100})

	run(n, func(i int) {
		op := bank.CreditOp{Account: c, Amount: 50, Reference: "raced both ways", Payout: i%2 == 1, Time: epoch}
		_, errs[i] = s.Credit(f.ctx, op)
	})
	var won [2]int
	for i, err := range errs {
		switch {
		case err == nil:
			won[i%2]++
		case !errors.Is(err, bank.ErrReferenceConflict):
			t.Errorf("credit or payout %d: %v, want ErrReferenceConflict", i, err)
		}
	}
	want := map[[2]int]int64{{n / 2, 0}: 150, {0, n / 2}: 50}[won]
	if want == 0 {
		t.Fatalf("%d credits and %d payouts of one reference applied, want every one of one kind and none of the other", won[0], won[1])
	}
	f.expectBalances(map[uint64]int64{c: want, bank.AccountFunding: -want})
	f.checkLedger()
}

// testConcurrentOpenAccount: one account asked for at once (retries of a
// request whose answer was lost, through any replica) is opened once and
// logged once, and every caller gets its id; asked for under two names,
// one name wins and the other is ErrKeyInUse.
func testConcurrentOpenAccount(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	size, err := s.LogSize(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	ids := make([]uint64, n)
	errs := make([]error, n)
	run(n, func(i int) { ids[i], errs[i] = s.OpenAccount(f.ctx, "raced", fakeKey("raced"), false, epoch) })
	for i := range n {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Errorf("OpenAccount %d: %d, %v; OpenAccount 0: %d", i, ids[i], errs[i], ids[0])
		}
	}
	if got, err := s.LogSize(f.ctx); err != nil || got != size+1 {
		t.Errorf("log size %d after one account opened %d times at once, want %d (%v)", got, n, size+1, err)
	}

	run(n, func(i int) {
		ids[i], errs[i] = s.OpenAccount(f.ctx, fmt.Sprint("name ", i%2), fakeKey("raced twice"), false, epoch)
	})
	id := map[int]uint64{}
	for i, err := range errs {
		switch {
		case err == nil:
			if prev, ok := id[i%2]; ok && prev != ids[i] {
				t.Errorf("one account got ids %d and %d", prev, ids[i])
			}
			id[i%2] = ids[i]
		case !errors.Is(err, bank.ErrKeyInUse):
			t.Errorf("OpenAccount %d: %v, want ErrKeyInUse", i, err)
		}
	}
	if len(id) != 1 {
		t.Errorf("accounts opened for one key under two names: %v, want one", id)
	}
}

// testConcurrentDebits: withdrawals, payouts and payment orders race to
// spend one balance. A debit is refused only once the balance is below
// it, so exactly as many succeed as the balance covers, each acknowledged
// debit is applied once, and the refused ones move nothing.
func testConcurrentDebits(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	f.credit(c, 1000)
	const n, debit = 60, 30 // 1,800 asked of 1,000: 33 debits fit
	var (
		mu       sync.Mutex
		moved    = map[uint64]int64{} // the other side of each acknowledged debit
		refusals int
	)
	run(n, func(i int) {
		tag := fmt.Sprint("debit race ", i)
		var (
			to  uint64
			err error
		)
		switch i % 3 {
		case 0:
			to = bank.AccountOutstanding
			_, err = s.Withdraw(f.ctx, withdrawOp(c, debit, tag))
		case 1:
			to = bank.AccountFunding
			_, err = s.Credit(f.ctx, bank.CreditOp{Account: c, Amount: debit, Payout: true, Reference: tag, Time: epoch})
		case 2:
			to = m
			var out bank.CheckOutcome
			out, err = s.Check(f.ctx, checkOp(tag, c, m, debit))
			if err == nil && out.Outcome == bank.CheckDeclinedFunds {
				err = bank.ErrInsufficientFunds
			} else if err == nil && out.Outcome != bank.CheckApproved {
				err = fmt.Errorf("outcome %s", out.Outcome)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err == nil:
			moved[to] += debit
		case errors.Is(err, bank.ErrInsufficientFunds):
			refusals++
		default:
			t.Errorf("%s: %v", tag, err)
		}
	})
	if got := n - refusals; got != 1000/debit {
		t.Errorf("%d debits of %d applied to a balance of 1000, want %d", got, debit, 1000/debit)
	}
	f.expectBalances(map[uint64]int64{
		c:                       1000 % debit,
		m:                       moved[m],
		bank.AccountOutstanding: moved[bank.AccountOutstanding],
		bank.AccountFunding:     -1000 + moved[bank.AccountFunding],
	})
	f.checkLedger()
}
