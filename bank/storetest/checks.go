package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
)

// checkOp is a payment order of amount from customer to merchant under
// EPOID id; each receipt names its outcome so tests can see which was kept.
func checkOp(id string, customer, merchant uint64, amount int64) bank.CheckOp {
	return bank.CheckOp{
		EPOID: id, EPOHash: hashOf("epo %s %d", id, amount), Customer: customer, Merchant: merchant, Amount: amount,
		Memo: "product " + id, Approved: []byte("approved " + id), DeclinedFunds: []byte("funds " + id),
		DeclinedLimit: []byte("limit " + id), DeclinedLocked: []byte("locked " + id), Record: []byte("record " + id),
		Time: epoch,
	}
}

func (f *fixture) check(op bank.CheckOp) bank.CheckOutcome {
	f.t.Helper()
	out, err := f.s.Check(f.ctx, op)
	if err != nil {
		f.t.Fatalf("Check(%s): %v", op.EPOID, err)
	}
	return out
}

// testChecks: NetBill atomicity at the store: one outcome per EPOID, both
// legs or none, replays byte for byte, declines recorded like approvals.
func testChecks(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	f.credit(c, 1000)

	op := checkOp("m-1-1", c, m, 300)
	out := f.check(op)
	if out.Outcome != bank.CheckApproved || !bytes.Equal(out.Receipt, op.Approved) || out.NewBalance != 700 {
		t.Fatalf("first check: %+v", out)
	}
	f.expectBalances(map[uint64]int64{c: 700, m: 300})
	// A re-submission returns the stored outcome and moves nothing.
	if again := f.check(op); !bytes.Equal(again.Receipt, out.Receipt) || again.Outcome != out.Outcome {
		t.Fatalf("replay: %+v", again)
	}
	f.expectBalances(map[uint64]int64{c: 700, m: 300})
	// A different order under the same EPOID is refused.
	other := checkOp("m-1-1", c, m, 301)
	if _, err := s.Check(f.ctx, other); !errors.Is(err, bank.ErrEPOIDConflict) {
		t.Fatalf("another EPO under a used EPOID: %v, want ErrEPOIDConflict", err)
	}
	rec, found, err := s.CheckRecord(f.ctx, "m-1-1")
	if err != nil || !found || !bytes.Equal(rec.Receipt, op.Approved) || !bytes.Equal(rec.Record, op.Record) || rec.Amount != 300 {
		t.Fatalf("CheckRecord: %+v %v %v", rec, found, err)
	}
	if _, found, err := s.CheckRecord(f.ctx, "m-1-404"); err != nil || found {
		t.Fatalf("CheckRecord(unknown) = %v %v", found, err)
	}

	// Insufficient funds: a recorded, signed decline; nothing moves, and a
	// later top-up does not turn the decided EPOID into an approval.
	poor := checkOp("m-1-2", c, m, 5000)
	if out := f.check(poor); out.Outcome != bank.CheckDeclinedFunds || !bytes.Equal(out.Receipt, poor.DeclinedFunds) {
		t.Fatalf("over balance: %+v", out)
	}
	f.credit(c, 10000)
	if out := f.check(poor); out.Outcome != bank.CheckDeclinedFunds {
		t.Fatalf("replay after top-up: %+v", out)
	}
	f.expectBalances(map[uint64]int64{c: 10700, m: 300})

	// Limits.
	if err := s.SetLimits(f.ctx, c, bank.Limits{PerTransaction: 500, PerDay: 800}); err != nil {
		t.Fatal(err)
	}
	if out := f.check(checkOp("m-1-3", c, m, 600)); out.Outcome != bank.CheckDeclinedLimit {
		t.Fatalf("over the per-transaction limit: %+v", out)
	}
	if out := f.check(checkOp("m-1-4", c, m, 500)); out.Outcome != bank.CheckApproved {
		t.Fatalf("within limits: %+v", out)
	}
	// 300 earlier today + 500 = 800: the next 1 is over the daily limit ...
	if out := f.check(checkOp("m-1-5", c, m, 1)); out.Outcome != bank.CheckDeclinedLimit {
		t.Fatalf("over the daily limit: %+v", out)
	}
	// ... and withdrawals count against the same limit.
	if _, err := s.Withdraw(f.ctx, withdrawOp(c, 1, "limited")); !errors.Is(err, bank.ErrOverLimit) {
		t.Fatalf("withdraw over the daily limit: %v, want ErrOverLimit", err)
	}
	// The next day the daily limit starts again.
	next := checkOp("m-1-6", c, m, 400)
	next.Time = epoch.Add(24 * time.Hour)
	if out := f.check(next); out.Outcome != bank.CheckApproved {
		t.Fatalf("next day: %+v", out)
	}
	// A decline decided before the commit (a late EPO) is recorded like
	// the commit's own: once, moving nothing, and with none of the
	// commit's receipts besides its own.
	late := checkOp("m-1-9", c, m, 1)
	late.Approved, late.DeclinedFunds, late.DeclinedLimit, late.DeclinedLocked = nil, nil, nil, nil
	late.Declined, late.DeclinedReceipt = bank.CheckDeclinedExpired, []byte("expired m-1-9")
	before := f.balances()
	for range 2 {
		if out := f.check(late); out.Outcome != bank.CheckDeclinedExpired || !bytes.Equal(out.Receipt, late.DeclinedReceipt) {
			t.Fatalf("declined before the commit: %+v", out)
		}
	}
	f.expectBalances(before)
	bad := late
	bad.EPOID, bad.Declined = "m-1-10", "made-up"
	if _, err := s.Check(f.ctx, bad); !errors.Is(err, bank.ErrInvalidOp) {
		t.Errorf("a decline of an unknown kind: %v, want ErrInvalidOp", err)
	}
	mixed := checkOp("m-1-11", c, m, 1)
	mixed.Declined, mixed.DeclinedReceipt = bank.CheckDeclinedBadKey, []byte("bad key")
	if _, err := s.Check(f.ctx, mixed); !errors.Is(err, bank.ErrInvalidOp) {
		t.Errorf("a decline with the commit's receipts beside it: %v, want ErrInvalidOp", err)
	}
	// Not a merchant, unknown accounts.
	if _, err := s.Check(f.ctx, checkOp("m-1-7", m, c, 1)); !errors.Is(err, bank.ErrNotMerchant) {
		t.Fatalf("check to a customer account: %v", err)
	}
	if _, err := s.Check(f.ctx, checkOp("m-1-8", c+5000, m, 1)); !errors.Is(err, bank.ErrNoAccount) {
		t.Fatalf("unknown customer: %v", err)
	}
	f.checkLedger()
}

// testLockout: five failed authentications in a day lock the account (for
// checks and withdrawals) until the next day or an admin unlock.
func testLockout(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	f.credit(c, 1000)
	for i := 1; i <= bank.MaxAuthFailures; i++ {
		locked, err := s.AuthFailure(f.ctx, c, epoch)
		if err != nil {
			t.Fatal(err)
		}
		if locked != (i == bank.MaxAuthFailures) {
			t.Fatalf("failure %d: locked %v", i, locked)
		}
	}
	if out := f.check(checkOp("m-2-1", c, m, 10)); out.Outcome != bank.CheckDeclinedLocked {
		t.Fatalf("locked account's check: %+v", out)
	}
	if _, err := s.Withdraw(f.ctx, withdrawOp(c, 10, "locked")); !errors.Is(err, bank.ErrAccountLocked) {
		t.Fatalf("locked account's withdrawal: %v", err)
	}
	tomorrow := checkOp("m-2-2", c, m, 10)
	tomorrow.Time = epoch.Add(24 * time.Hour)
	if out := f.check(tomorrow); out.Outcome != bank.CheckApproved {
		t.Fatalf("the next day: %+v", out)
	}
	for range bank.MaxAuthFailures {
		s.AuthFailure(f.ctx, c, epoch)
	}
	if err := s.Unlock(f.ctx, c); err != nil {
		t.Fatal(err)
	}
	if out := f.check(checkOp("m-2-3", c, m, 10)); out.Outcome != bank.CheckApproved {
		t.Fatalf("after unlock: %+v", out)
	}
	f.expectBalances(map[uint64]int64{c: 980, m: 20})
	f.checkLedger()
}

// testConcurrentChecks: the same endorsed EPO submitted 100 times in
// parallel debits exactly once, and every caller sees the same receipt.
func testConcurrentChecks(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	f.credit(c, 1000)
	op := checkOp("m-3-1", c, m, 250)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for range 100 {
		wg.Go(func() {
			out, err := s.Check(f.ctx, op)
			if err == nil && (out.Outcome != bank.CheckApproved || !bytes.Equal(out.Receipt, op.Approved)) {
				err = fmt.Errorf("outcome %+v", out)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	f.expectBalances(map[uint64]int64{c: 750, m: 250})
	f.checkLedger()
}
