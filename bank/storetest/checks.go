package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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
		DeclinedLimit: []byte("limit " + id), Record: []byte("record " + id),
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
	late.Approved, late.DeclinedFunds, late.DeclinedLimit = nil, nil, nil
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

// testLockout: five failed authentications of an account from one source
// in a day lock the account out for that source only, until the next day
// or an admin unlock, which clears every source; counts are exact under
// concurrent failures, and earlier days' counts are dropped. The lock is
// the bank's to apply: a store's Check and Withdraw do not look at it.
func testLockout(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, m := f.customer(), f.merchant()
	f.credit(c, 1000)
	locked := func(source string, at time.Time) bool {
		t.Helper()
		l, err := s.AuthLocked(f.ctx, c, source, at)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	lockedSources := func(at time.Time) int {
		t.Helper()
		n, err := s.LockedSources(f.ctx, c, at)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	fail := func(source string, at time.Time) bool {
		t.Helper()
		l, err := s.AuthFailure(f.ctx, c, source, at)
		if err != nil {
			t.Fatalf("AuthFailure(%q): %v", source, err)
		}
		return l
	}
	const stranger, holder, other = "203.0.113.7", "198.51.100.1", "2001:db8::/64"
	for i := 1; i <= bank.MaxAuthFailures; i++ {
		if l := fail(stranger, epoch); l != (i == bank.MaxAuthFailures) {
			t.Fatalf("failure %d: locked %v", i, l)
		}
	}
	if !locked(stranger, epoch) || locked(holder, epoch) || locked("", epoch) || locked(other, epoch) {
		t.Fatalf("locked for the failing source %v, for others %v %v %v", locked(stranger, epoch),
			locked(holder, epoch), locked("", epoch), locked(other, epoch))
	}
	if n := lockedSources(epoch); n != 1 {
		t.Fatalf("LockedSources = %d, want 1", n)
	}
	// A failure dated the next day, by a clock ahead (another replica's
	// past midnight first, or this one's before it is stepped back), does
	// not drop the counts of the day the other clocks are still on.
	if fail("192.0.2.200", epoch.Add(24*time.Hour)) {
		t.Fatal("locked by one failure")
	}
	if !locked(stranger, epoch) || lockedSources(epoch) != 1 {
		t.Fatalf("a failure dated the next day dropped the day's lock: locked %v, %d locked sources", locked(stranger, epoch), lockedSources(epoch))
	}
	// A failure dated before 1970 (a clock reset to zero) is refused: its
	// day would sweep no day, or every day.
	if _, err := s.AuthFailure(f.ctx, c, stranger, time.Date(1969, 12, 30, 0, 0, 0, 0, time.UTC)); !errors.Is(err, bank.ErrInvalidOp) {
		t.Fatalf("failure dated before 1970: %v, want ErrInvalidOp", err)
	}
	if !locked(stranger, epoch) {
		t.Fatal("a failure dated before 1970 dropped the day's lock")
	}
	// Another source's failures are its own: four do not lock it.
	for range bank.MaxAuthFailures - 1 {
		if fail(holder, epoch) {
			t.Fatal("locked for a source with fewer failures")
		}
	}
	// Not the store's to apply: a check and a withdrawal go through.
	if out := f.check(checkOp("m-2-1", c, m, 10)); out.Outcome != bank.CheckApproved {
		t.Fatalf("check of an account locked for some source: %+v", out)
	}
	if _, err := s.Withdraw(f.ctx, withdrawOp(c, 10, "locked")); err != nil {
		t.Fatalf("withdrawal of an account locked for some source: %v", err)
	}
	// The next day every count starts again.
	tomorrow := epoch.Add(24 * time.Hour)
	if locked(stranger, tomorrow) || lockedSources(tomorrow) != 0 {
		t.Fatal("still locked the next day")
	}
	if fail(stranger, tomorrow) || fail(holder, tomorrow) {
		t.Fatal("locked by the next day's first failure")
	}
	// Unlock clears every source.
	for range bank.MaxAuthFailures {
		fail(stranger, tomorrow)
		fail(other, tomorrow)
	}
	if n := lockedSources(tomorrow); n != 2 {
		t.Fatalf("LockedSources = %d, want 2", n)
	}
	if err := s.Unlock(f.ctx, c); err != nil {
		t.Fatal(err)
	}
	if locked(stranger, tomorrow) || locked(other, tomorrow) || lockedSources(tomorrow) != 0 {
		t.Fatal("locked after Unlock")
	}
	for range bank.MaxAuthFailures - 1 {
		if fail(holder, tomorrow) {
			t.Fatal("Unlock left a source's earlier failures counted")
		}
	}
	// Sources are told apart whole, however long.
	long := strings.Repeat("s", bank.MaxSourceLen-1)
	for range bank.MaxAuthFailures {
		fail(long+"a", tomorrow)
	}
	if locked(long+"b", tomorrow) || !locked(long+"a", tomorrow) {
		t.Fatal("sources differing in their last byte confused")
	}
	// Another account locked out for a source the same day.
	c2 := f.customer()
	for range bank.MaxAuthFailures {
		if _, err := s.AuthFailure(f.ctx, c2, holder, tomorrow); err != nil {
			t.Fatal(err)
		}
	}
	lockedOf := func(id uint64, at time.Time) int {
		t.Helper()
		n, err := s.LockedSources(f.ctx, id, at)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if lockedOf(c, tomorrow) != 1 || lockedOf(c2, tomorrow) != 1 {
		t.Fatalf("locked sources %d and %d, want 1 and 1", lockedOf(c, tomorrow), lockedOf(c2, tomorrow))
	}
	// Concurrent failures from one source are each counted once: of 2×Max,
	// those from the Max-th on report the lock.
	d := tomorrow.Add(24 * time.Hour)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range 2 * bank.MaxAuthFailures {
		wg.Go(func() {
			l, err := s.AuthFailure(f.ctx, c, stranger, d)
			if err != nil {
				t.Error(err)
			}
			if l {
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if n.Load() != bank.MaxAuthFailures+1 {
		t.Errorf("%d of %d concurrent failures reported the lock, want %d", n.Load(), 2*bank.MaxAuthFailures, bank.MaxAuthFailures+1)
	}
	// Counts of the days before the day before are dropped as failures are
	// counted, every account's (they count for nothing, and would pile up
	// day after day); the day before's are kept (above).
	if _, err := s.AuthFailure(f.ctx, c2, stranger, d.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if lockedOf(c, tomorrow) != 0 || lockedOf(c2, tomorrow) != 0 {
		t.Errorf("the day before's counts kept: %d and %d locked sources", lockedOf(c, tomorrow), lockedOf(c2, tomorrow))
	}
	// Refusals.
	if _, err := s.AuthFailure(f.ctx, c+5000, stranger, epoch); !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("AuthFailure of an unknown account: %v, want ErrNoAccount", err)
	}
	if _, err := s.AuthFailure(f.ctx, bank.AccountFunding, stranger, epoch); !errors.Is(err, bank.ErrInvalidOp) {
		t.Errorf("AuthFailure of a system account: %v, want ErrInvalidOp", err)
	}
	if _, err := s.AuthFailure(f.ctx, c, long+"xx", epoch); !errors.Is(err, bank.ErrInvalidOp) {
		t.Errorf("AuthFailure from a source of %d bytes: %v, want ErrInvalidOp", len(long)+2, err)
	}
	if err := s.Unlock(f.ctx, c+5000); !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("Unlock of an unknown account: %v, want ErrNoAccount", err)
	}
	if l, err := s.AuthLocked(f.ctx, c+5000, stranger, epoch); err != nil || l {
		t.Errorf("AuthLocked of an unknown account: %v %v", l, err)
	}
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
