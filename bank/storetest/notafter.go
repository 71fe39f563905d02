package storetest

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// testNotAfter: a withdrawal, deposit, refund or swap whose NotAfter the store's clock
// (the real one, for both stores; the database's, for PostgreSQL) is past
// commits nothing (ErrTooLate), however many times it is sent; with a
// NotAfter ahead it commits, and a later send past it is answered from
// the record, which the bound does not touch.
func testNotAfter(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	f.fundOutstanding(1000)
	c, m := f.customer(), f.merchant()
	f.credit(c, 500)
	size, err := s.LogSize(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// An hour either way: PostgreSQL judges by the database server's clock.
	past, ahead := time.Now().Add(-time.Hour), time.Now().Add(time.Hour)

	w := withdrawOp(c, 100, "late")
	w.NotAfter = past
	d := depositOp(m, 300, "late", coin("late a"), coin("late b"))
	d.NotAfter = past
	for range 2 {
		if sigs, err := s.Withdraw(f.ctx, w); !errors.Is(err, bank.ErrTooLate) {
			t.Fatalf("Withdraw past its NotAfter = %q, %v; want ErrTooLate", sigs, err)
		}
		if rcpt, err := s.Deposit(f.ctx, d); !errors.Is(err, bank.ErrTooLate) {
			t.Fatalf("Deposit past its NotAfter = %q, %v; want ErrTooLate", rcpt, err)
		}
	}
	f.expectBalances(map[uint64]int64{c: 500, m: 0, bank.AccountOutstanding: 1000})
	if got, err := s.LogSize(f.ctx); err != nil || got != size {
		t.Errorf("log size %d after the late ops, want %d (%v)", got, size, err)
	}
	if _, found, err := s.Withdrawal(f.ctx, w.RequestHash); found || err != nil {
		t.Errorf("Withdrawal(late) = found %v, %v; want nothing recorded", found, err)
	}
	if st := f.coinState(coin("late a")); st.Permission != nil {
		t.Errorf("a late deposit's coin: %+v; want it unspent", st)
	}

	w.NotAfter, d.NotAfter = ahead, ahead
	sigs, err := s.Withdraw(f.ctx, w)
	if err != nil {
		t.Fatalf("Withdraw before its NotAfter: %v", err)
	}
	rcpt, err := s.Deposit(f.ctx, d)
	if err != nil {
		t.Fatalf("Deposit before its NotAfter: %v", err)
	}
	w.NotAfter, d.NotAfter = past, past
	if got, err := s.Withdraw(f.ctx, w); err != nil || !slices.EqualFunc(got, sigs, bytes.Equal) {
		t.Errorf("a retry of the withdrawal past its NotAfter = %q, %v; want the recorded signatures", got, err)
	}
	if got, err := s.Deposit(f.ctx, d); err != nil || !bytes.Equal(got, rcpt) {
		t.Errorf("a retry of the deposit past its NotAfter = %q, %v; want the recorded receipt", got, err)
	}
	f.expectBalances(map[uint64]int64{c: 400, m: 300, bank.AccountOutstanding: 800})

	r := refundOp(m, "late", "late", 150, map[ecash.Hash]int64{coin("late a"): 50})
	r.NotAfter = past
	for range 2 {
		if got, err := s.Refund(f.ctx, r); !errors.Is(err, bank.ErrTooLate) {
			t.Fatalf("Refund past its NotAfter = %q, %v; want ErrTooLate", got, err)
		}
	}
	if st := f.coinState(coin("late a")); st.Refunded != 0 {
		t.Errorf("a late refund's coin: %+v; want nothing refunded", st)
	}
	if _, found, err := s.RefundRecord(f.ctx, r.RequestHash); found || err != nil {
		t.Errorf("RefundRecord(late) = found %v, %v; want none", found, err)
	}
	r.NotAfter = ahead
	receipt, err := s.Refund(f.ctx, r)
	if err != nil {
		t.Fatalf("Refund before its NotAfter: %v", err)
	}
	r.NotAfter = past
	if got, err := s.Refund(f.ctx, r); err != nil || !bytes.Equal(got, receipt) {
		t.Errorf("a retry of the refund past its NotAfter = %q, %v; want the recorded receipt", got, err)
	}
	f.expectBalances(map[uint64]int64{c: 400, m: 250, bank.AccountOutstanding: 850})

	sw := swapOp(100, "late", coin("late swap"))
	sw.NotAfter = past
	for range 2 {
		if got, err := s.Swap(f.ctx, sw); !errors.Is(err, bank.ErrTooLate) {
			t.Fatalf("Swap past its NotAfter = %q, %v; want ErrTooLate", got, err)
		}
	}
	if st := f.coinState(coin("late swap")); st.Permission != nil {
		t.Errorf("a late swap's coin: %+v; want it unspent", st)
	}
	if _, found, err := s.SwapRecord(f.ctx, sw.RequestHash); found || err != nil {
		t.Errorf("SwapRecord(late) = found %v, %v; want none", found, err)
	}
	sw.NotAfter = ahead
	swapped, err := s.Swap(f.ctx, sw)
	if err != nil {
		t.Fatalf("Swap before its NotAfter: %v", err)
	}
	sw.NotAfter = past
	if got, err := s.Swap(f.ctx, sw); err != nil || !slices.EqualFunc(got, swapped, bytes.Equal) {
		t.Errorf("a retry of the swap past its NotAfter = %q, %v; want the recorded signatures", got, err)
	}
	f.expectBalances(map[uint64]int64{c: 400, m: 250, bank.AccountOutstanding: 850})
	f.checkLedger()
}
