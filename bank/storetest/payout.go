package storetest

import (
	"errors"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
)

// testPayout: a payout moves money from an account to the outside, never
// beyond its balance; its reference is idempotent and shared with credits;
// it posts a payout line and logs a Payout entry.
func testPayout(t *testing.T, s bank.Store) {
	f := newFixture(t, s)
	m := f.merchant()
	f.credit(m, 500)
	before := f.balance(bank.AccountFunding)
	op := bank.CreditOp{Account: m, Amount: 300, Payout: true, Reference: "wire-1", Memo: "settlement", Time: epoch,
		Log: auditlog.Payout{Account: m, Amount: eur(300), Reference: auditlog.OptionalHash("wire-1")}}
	for range 2 { // the replay pays nothing
		bal, err := s.Credit(f.ctx, op)
		if err != nil || bal != 200 {
			t.Fatalf("payout = %d, %v; want balance 200", bal, err)
		}
	}
	f.expectBalances(map[uint64]int64{m: 200, bank.AccountFunding: before + 300})
	hist, err := s.History(f.ctx, m, 1)
	if err != nil || len(hist) != 1 || hist[0].Kind != bank.KindPayout || hist[0].Amount != -300 {
		t.Fatalf("last posting %+v, %v; want a payout of -300", hist, err)
	}
	// The same reference as a credit, or for another amount, conflicts.
	credit := bank.CreditOp{Account: m, Amount: 300, Reference: "wire-1", Time: epoch}
	if _, err := s.Credit(f.ctx, credit); !errors.Is(err, bank.ErrReferenceConflict) {
		t.Errorf("a credit reusing a payout's reference: %v, want ErrReferenceConflict", err)
	}
	other := op
	other.Amount, other.Log = 100, nil
	if _, err := s.Credit(f.ctx, other); !errors.Is(err, bank.ErrReferenceConflict) {
		t.Errorf("the reference for another amount: %v, want ErrReferenceConflict", err)
	}
	// Never beyond the balance, never from a system account.
	big := bank.CreditOp{Account: m, Amount: 201, Payout: true, Time: epoch}
	if _, err := s.Credit(f.ctx, big); !errors.Is(err, bank.ErrInsufficientFunds) {
		t.Errorf("payout beyond the balance: %v, want ErrInsufficientFunds", err)
	}
	sys := bank.CreditOp{Account: bank.AccountOutstanding, Amount: 1, Payout: true, Time: epoch}
	if _, err := s.Credit(f.ctx, sys); !errors.Is(err, bank.ErrInvalidOp) {
		t.Errorf("payout from a system account: %v, want ErrInvalidOp", err)
	}
	f.expectBalances(map[uint64]int64{m: 200})
	es := f.entries()
	if last := es[len(es)-1]; last.Kind() != auditlog.KindPayout {
		t.Errorf("last log entry %s, want the payout", last.Kind())
	}
	f.checkLogTree()
	f.checkLedger()
}
