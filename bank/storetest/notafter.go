package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// testNotAfter: a withdrawal, deposit, refund, swap or payment order
// whose NotAfter the store's clock (the real one, for both stores; the
// database's, for PostgreSQL) is past commits nothing (ErrTooLate),
// however many times it is sent; with a NotAfter ahead it commits, and a
// later send past it is answered from the record, which the bound does
// not touch.
func testNotAfter(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	c, m := f.customer(), f.merchant()
	f.credit(c, 500)
	// An hour either way: PostgreSQL judges by the database server's clock.
	past, ahead := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)

	w := withdrawOp(c, 100, "late")
	d := depositOp(m, 300, "late", coin("late a"), coin("late b"))
	r := refundOp(m, "late", "late", 150, map[ecash.Hash]int64{coin("late a"): 50})
	sw := swapOp(100, "late", coin("late swap"))
	ch := checkOp("late", c, m, 100)
	for _, tc := range []struct {
		name string
		// commit sends the operation with NotAfter at, returning what
		// the store answered (signatures or a receipt).
		commit func(at time.Time) (any, error)
		// unmade reports what of the operation the store shows, if
		// anything, after its refusals.
		unmade func() error
		after  map[uint64]int64 // the balances once it is made
	}{
		{"withdrawal", func(at time.Time) (any, error) { w.NotAfter = at; return s.Withdraw(f.ctx, w) }, func() error {
			if _, found, err := s.Withdrawal(f.ctx, w.RequestHash); found || err != nil {
				return fmt.Errorf("the store has the withdrawal: found %v, %v", found, err)
			}
			return nil
		}, map[uint64]int64{c: 400, m: 0, bank.AccountOutstanding: 1100}},
		{"deposit", func(at time.Time) (any, error) { d.NotAfter = at; return s.Deposit(f.ctx, d) }, func() error {
			if st := f.coinState(coin("late a")); st.Permission != nil {
				return fmt.Errorf("its coin spent: %+v", st)
			}
			return nil
		}, map[uint64]int64{c: 400, m: 300, bank.AccountOutstanding: 800}},
		{"refund", func(at time.Time) (any, error) { r.NotAfter = at; return s.Refund(f.ctx, r) }, func() error {
			if _, found, err := s.RefundRecord(f.ctx, r.RequestHash); found || err != nil || f.coinState(coin("late a")).Refunded != 0 {
				return fmt.Errorf("the store has the refund: found %v, %v; the coin's state %+v", found, err, f.coinState(coin("late a")))
			}
			return nil
		}, map[uint64]int64{c: 400, m: 250, bank.AccountOutstanding: 850}},
		{"swap", func(at time.Time) (any, error) { sw.NotAfter = at; return s.Swap(f.ctx, sw) }, func() error {
			if _, found, err := s.SwapRecord(f.ctx, sw.RequestHash); found || err != nil || f.coinState(coin("late swap")).Permission != nil {
				return fmt.Errorf("the store has the swap: found %v, %v; its coin %+v", found, err, f.coinState(coin("late swap")))
			}
			return nil
		}, map[uint64]int64{c: 400, m: 250, bank.AccountOutstanding: 850}},
		{"payment order", func(at time.Time) (any, error) { ch.NotAfter = at; return s.Check(f.ctx, ch) }, func() error {
			if _, found, err := s.CheckRecord(f.ctx, ch.EPOID); found || err != nil {
				return fmt.Errorf("the store has the order's decision: found %v, %v", found, err)
			}
			return nil
		}, map[uint64]int64{c: 300, m: 350, bank.AccountOutstanding: 850}},
	} {
		before, size := f.balances(), f.logSize()
		for range 2 {
			if got, err := tc.commit(past); !errors.Is(err, bank.ErrTooLate) {
				t.Fatalf("%s past its NotAfter = %q, %v; want ErrTooLate", tc.name, got, err)
			}
		}
		if err := tc.unmade(); err != nil {
			t.Errorf("%s refused as too late: %v; want nothing of it", tc.name, err)
		}
		if got := f.balances(); !reflect.DeepEqual(got, before) || f.logSize() != size {
			t.Errorf("%s refused as too late moved the balances %v → %v, the log %d → %d", tc.name, before, got, size, f.logSize())
		}
		made, err := tc.commit(ahead)
		if err != nil {
			t.Fatalf("%s before its NotAfter: %v", tc.name, err)
		}
		if got, err := tc.commit(past); err != nil || !reflect.DeepEqual(got, made) {
			t.Errorf("a retry of the %s past its NotAfter = %q, %v; want its record's answer %q", tc.name, got, err, made)
		}
		f.expectBalances(tc.after)
	}
	f.checkLedger()
}
