package storetest

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/blindbank/blindbank/bank"
)

func refuseOp(id uint64, tag, reason string) bank.RefuseWithdrawalOp {
	return bank.RefuseWithdrawalOp{
		RequestHash: hashOf("withdraw %s", tag),
		Account:     id,
		Refusal:     bank.WithdrawRefusal{Code: codes.FailedPrecondition, Reason: reason},
		Time:        epoch,
	}
}

// refusalOf returns the *WithdrawRefusal err is, or nil.
func refusalOf(err error) *bank.WithdrawRefusal {
	var r *bank.WithdrawRefusal
	if errors.As(err, &r) {
		return r
	}
	return nil
}

// testWithdrawRefusal: a refusal recorded under a request hash is the
// answer to that hash from then on: Withdrawal reports it, Withdraw is
// refused with it (moving and logging nothing), and a second refusal gets
// the first. A withdrawal recorded first answers the refusal instead, and
// no refusal is recorded. Neither touches another account's hash.
func testWithdrawRefusal(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c, other := f.customer(), f.customer()
	f.credit(c, 1000)
	size, err := s.LogSize(f.ctx)
	if err != nil {
		t.Fatal(err)
	}

	// Refusal first, then the commit.
	op := refuseOp(c, "refused", "bank: insufficient funds")
	sigs, err := s.RefuseWithdrawal(f.ctx, op)
	if r := refusalOf(err); sigs != nil || r == nil || *r != op.Refusal {
		t.Fatalf("RefuseWithdrawal(unrecorded) = %q, %v; want the refusal as recorded", sigs, err)
	}
	if _, found, err := s.Withdrawal(f.ctx, op.RequestHash); found || refusalOf(err) == nil || *refusalOf(err) != op.Refusal {
		t.Fatalf("Withdrawal(refused) = found %v, %v; want the refusal", found, err)
	}
	w := withdrawOp(c, 100, "refused")
	if sigs, err := s.Withdraw(f.ctx, w); refusalOf(err) == nil || *refusalOf(err) != op.Refusal {
		t.Fatalf("Withdraw(refused hash) = %q, %v; want the recorded refusal", sigs, err)
	}
	again := refuseOp(c, "refused", "bank: another reason, later")
	again.Refusal.Code = codes.InvalidArgument
	if _, err := s.RefuseWithdrawal(f.ctx, again); refusalOf(err) == nil || *refusalOf(err) != op.Refusal {
		t.Fatalf("second RefuseWithdrawal = %v; want the first refusal", err)
	}
	if _, err := s.RefuseWithdrawal(f.ctx, refuseOp(other, "refused", "x")); !errors.Is(err, bank.ErrRequestConflict) {
		t.Errorf("RefuseWithdrawal of a refused hash for another account = %v, want ErrRequestConflict", err)
	}
	if _, err := s.Withdraw(f.ctx, withdrawOp(other, 100, "refused")); !errors.Is(err, bank.ErrRequestConflict) {
		t.Errorf("Withdraw of a hash refused for another account = %v, want ErrRequestConflict", err)
	}
	f.expectBalances(map[uint64]int64{c: 1000, bank.AccountOutstanding: 0})
	if got, err := s.LogSize(f.ctx); err != nil || got != size {
		t.Errorf("log size %d after refusals, want %d (%v): a refusal is not logged", got, size, err)
	}
	if _, found, err := s.LogIndex(f.ctx, op.RequestHash); err != nil || found {
		t.Errorf("LogIndex(refused) = found %v, %v", found, err)
	}

	// The commit first, then the refusal: answered from the record.
	w = withdrawOp(c, 100, "taken")
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Fatal(err)
	}
	sigs, err = s.RefuseWithdrawal(f.ctx, refuseOp(c, "taken", "bank: refused after all"))
	if err != nil || !equalSigs(sigs, w.BlindSigs) {
		t.Fatalf("RefuseWithdrawal(withdrawn) = %q, %v; want the recorded signatures", sigs, err)
	}
	if sigs, found, err := s.Withdrawal(f.ctx, w.RequestHash); err != nil || !found || !equalSigs(sigs, w.BlindSigs) {
		t.Fatalf("Withdrawal after a refusal of a withdrawn hash = %q found %v, %v; want the signatures", sigs, found, err)
	}
	if _, err := s.RefuseWithdrawal(f.ctx, refuseOp(other, "taken", "x")); !errors.Is(err, bank.ErrRequestConflict) {
		t.Errorf("RefuseWithdrawal of another account's withdrawal = %v, want ErrRequestConflict", err)
	}
	if sigs, err := s.Withdraw(f.ctx, w); err != nil || !equalSigs(sigs, w.BlindSigs) {
		t.Errorf("Withdraw replay after a refusal answered from the record: %v", err)
	}
	f.expectBalances(map[uint64]int64{c: 900, bank.AccountOutstanding: 100})
	if got, err := s.LogSize(f.ctx); err != nil || got != size {
		t.Errorf("log size %d, want %d (%v): the withdrawal carried no Log, and a refusal is not logged", got, size, err)
	}

	// Malformed refusals change nothing.
	bad := map[string]bank.RefuseWithdrawalOp{
		"no refusal's code":  refuseOp(c, "bad code", "x"),
		"text too long":      refuseOp(c, "bad text", strings.Repeat("x", bank.MaxRefusalLen+1)),
		"system account":     refuseOp(bank.AccountOutstanding, "bad account", "x"),
		"the zero code (OK)": refuseOp(c, "zero code", "x"),
	}
	op = bad["no refusal's code"]
	op.Refusal.Code = codes.Unavailable
	bad["no refusal's code"] = op
	op = bad["the zero code (OK)"]
	op.Refusal.Code = codes.OK
	bad["the zero code (OK)"] = op
	for name, op := range bad {
		if _, err := s.RefuseWithdrawal(f.ctx, op); !errors.Is(err, bank.ErrInvalidOp) {
			t.Errorf("RefuseWithdrawal(%s) = %v, want ErrInvalidOp", name, err)
		}
		if _, found, err := s.Withdrawal(f.ctx, op.RequestHash); found || err != nil {
			t.Errorf("Withdrawal after RefuseWithdrawal(%s) = found %v, %v; want nothing recorded", name, found, err)
		}
	}
	if _, err := s.RefuseWithdrawal(f.ctx, refuseOp(c+1000, "nobody", "x")); !errors.Is(err, bank.ErrNoAccount) {
		t.Errorf("RefuseWithdrawal(unknown account) = %v, want ErrNoAccount", err)
	}
	f.checkLedger()
}

// testConcurrentWithdrawRefusal: a withdrawal and refusals of its request
// race (a wallet's original still committing while a retry is refused
// elsewhere). One kind wins for good: either every Withdraw and every
// RefuseWithdrawal answer the signatures and the account is debited
// once, or every call answers the one refusal and nothing moves.
func testConcurrentWithdrawRefusal(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	const rounds, n = 20, 8
	f.credit(c, rounds*100)
	var taken, refused int
	for round := range rounds {
		tag := fmt.Sprint("raced refusal ", round)
		sigs := make([][][]byte, n)
		errs := make([]error, n)
		run(n, func(i int) {
			// Each kind lets the other go first in every other round,
			// so that both orders are seen (the count is logged).
			if (i%2 == 0) == (round%2 == 0) {
				for range 10 {
					runtime.Gosched()
				}
			}
			if i%2 == 0 {
				sigs[i], errs[i] = s.Withdraw(f.ctx, withdrawOp(c, 100, tag))
				return
			}
			sigs[i], errs[i] = s.RefuseWithdrawal(f.ctx, refuseOp(c, tag, fmt.Sprint("refusal ", i)))
		})
		var won *bank.WithdrawRefusal
		for i, err := range errs {
			switch r := refusalOf(err); {
			case err == nil:
				if !equalSigs(sigs[i], withdrawOp(c, 100, tag).BlindSigs) {
					t.Errorf("round %d call %d: signatures %q", round, i, sigs[i])
				}
			case r != nil && (won == nil || *won == *r):
				won = r
			default:
				t.Errorf("round %d call %d: %v", round, i, err)
			}
		}
		want := withdrawOp(c, 100, tag).RequestHash
		recSigs, found, err := s.Withdrawal(f.ctx, want)
		switch {
		case won != nil && (found || refusalOf(err) == nil || *refusalOf(err) != *won):
			t.Errorf("round %d: refused, then Withdrawal = found %v, %v", round, found, err)
		case won == nil && (!found || err != nil || !equalSigs(recSigs, withdrawOp(c, 100, tag).BlindSigs)):
			t.Errorf("round %d: withdrawn, then Withdrawal = found %v, %v", round, found, err)
		}
		if won != nil {
			for i, err := range errs {
				if err == nil {
					t.Errorf("round %d: call %d answered signatures, another the refusal %q", round, i, won.Reason)
				}
			}
			refused++
		} else {
			taken++
		}
		f.expectBalances(map[uint64]int64{c: int64(rounds*100 - taken*100), bank.AccountOutstanding: int64(taken * 100)})
	}
	t.Logf("%d rounds withdrawn, %d refused", taken, refused)
	f.checkLedger()
}

// testPruneWithdrawRefusals: PruneWithdrawRefusals deletes the refusals
// recorded before its cutoff, and only those (one at the cutoff stays),
// and says how many; a request whose refusal is gone is decided afresh
// (Withdraw takes it, a new refusal is recorded), and nothing else is
// touched: withdrawals, other refusals, the balances, the log.
func testPruneWithdrawRefusals(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	c := f.customer()
	f.credit(c, 1000)
	taken := withdrawOp(c, 100, "taken long ago")
	taken.Time = epoch.Add(-48 * time.Hour)
	if _, err := s.Withdraw(f.ctx, taken); err != nil {
		t.Fatal(err)
	}
	var ops []bank.RefuseWithdrawalOp
	for i, age := range []time.Duration{48 * time.Hour, time.Hour + time.Microsecond, time.Hour, 0} {
		op := refuseOp(c, fmt.Sprintf("pruned %d", i), "bank: insufficient funds")
		op.Time = epoch.Add(-age)
		if _, err := s.RefuseWithdrawal(f.ctx, op); refusalOf(err) == nil {
			t.Fatalf("RefuseWithdrawal %d = %v", i, err)
		}
		ops = append(ops, op)
	}
	size, err := s.LogSize(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	cutoff := epoch.Add(-time.Hour)
	if n, err := s.PruneWithdrawRefusals(f.ctx, cutoff); err != nil || n != 2 {
		t.Fatalf("PruneWithdrawRefusals = %d, %v; want the 2 recorded before the cutoff", n, err)
	}
	for i, op := range ops {
		_, found, err := s.Withdrawal(f.ctx, op.RequestHash)
		switch pruned := op.Time.Before(cutoff); {
		case pruned && (found || err != nil):
			t.Errorf("Withdrawal(refusal %d, pruned) = found %v, %v; want nothing recorded", i, found, err)
		case !pruned && refusalOf(err) == nil:
			t.Errorf("Withdrawal(refusal %d, kept) = found %v, %v; want the refusal", i, found, err)
		}
	}
	if sigs, found, err := s.Withdrawal(f.ctx, taken.RequestHash); err != nil || !found || !equalSigs(sigs, taken.BlindSigs) {
		t.Errorf("Withdrawal(older withdrawal) after pruning = found %v, %v; want it kept", found, err)
	}
	if n, err := s.PruneWithdrawRefusals(f.ctx, cutoff); err != nil || n != 0 {
		t.Errorf("PruneWithdrawRefusals again = %d, %v; want 0", n, err)
	}
	f.expectBalances(map[uint64]int64{c: 900, bank.AccountOutstanding: 100})
	if got, err := s.LogSize(f.ctx); err != nil || got != size {
		t.Errorf("log size %d after pruning, want %d (%v)", got, size, err)
	}
	// Decided afresh: one pruned request is taken, another refused anew.
	w := withdrawOp(c, 100, "pruned 0")
	if _, err := s.Withdraw(f.ctx, w); err != nil {
		t.Fatalf("Withdraw of a request whose refusal was pruned: %v", err)
	}
	again := refuseOp(c, "pruned 1", "bank: over the daily limit")
	if _, err := s.RefuseWithdrawal(f.ctx, again); refusalOf(err) == nil || *refusalOf(err) != again.Refusal {
		t.Fatalf("RefuseWithdrawal of a request whose refusal was pruned = %v; want the new refusal", err)
	}
	f.expectBalances(map[uint64]int64{c: 800, bank.AccountOutstanding: 200})
}
