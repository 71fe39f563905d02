package storetest

import (
	"errors"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// testFees: every operation that charges a fee books it to AccountFees in
// the same step: a withdrawal from the account (limits and balance count
// it), a deposit and a swap from what circulates, a refund from the
// merchant. The ledger still sums to zero.
func testFees(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	f.credit(c, 1000)
	w := withdrawOp(c, 900, "w1")
	w.Fee = 101
	if _, err := s.Withdraw(f.ctx, w); !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Fatalf("a withdrawal of 900 + 101 from 1000: %v, want ErrInsufficientFunds", err)
	}
	w.Fee = 9
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Fatal(err)
	}
	f.expectBalances(map[uint64]int64{c: 91, bank.AccountOutstanding: 900, bank.AccountFees: 9})

	d := depositOp(m, 290, "p1", coin("a"), coin("b"), coin("c"))
	d.Fee = 10 // the coins are worth 300
	if _, err := s.Deposit(f.ctx, d); err != nil {
		t.Fatal(err)
	}
	f.expectBalances(map[uint64]int64{m: 290, bank.AccountOutstanding: 600, bank.AccountFees: 19})

	sw := swapOp(200, "s1", coin("d"))
	sw.Fee = 5 // outputs worth 195
	if _, err := s.Swap(f.ctx, sw); err != nil {
		t.Fatal(err)
	}
	f.expectBalances(map[uint64]int64{bank.AccountOutstanding: 595, bank.AccountFees: 24})

	r := refundOp(m, "p1", "r1", 100, map[ecash.Hash]int64{coin("a"): 100})
	r.Fee = 191 // the merchant holds 290: 100 + 191 is too much
	if _, err := s.Refund(f.ctx, r); !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Errorf("refund of 100 + 191 from 290: %v, want ErrInsufficientFunds", err)
	}
	r.Fee = 3
	if _, err := s.Refund(f.ctx, r); err != nil {
		t.Fatal(err)
	}
	f.expectBalances(map[uint64]int64{m: 187, bank.AccountOutstanding: 695, bank.AccountFees: 27})
	hist, err := s.History(f.ctx, bank.AccountFees, 10)
	if err != nil || len(hist) != 4 || hist[0].Kind != bank.KindFee || hist[0].Amount != 3 {
		t.Errorf("fee account history %+v, %v; want four fee postings, newest 3", hist, err)
	}
	for name, op := range map[string]bank.SwapOp{
		"fee of the whole value": func() bank.SwapOp { o := swapOp(10, "s2", coin("e")); o.Fee = 10; return o }(),
		"negative fee":           func() bank.SwapOp { o := swapOp(10, "s3", coin("e")); o.Fee = -1; return o }(),
	} {
		if _, err := s.Swap(f.ctx, op); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	f.checkLedger()
}
