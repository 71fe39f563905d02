package wallet_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestWithdrawRefusalOverBudgetStaysPending: a refusal the bank does not
// record, the account's budget of recorded refusals spent
// (bank.LimitRefusals), is answered RESOURCE_EXHAUSTED: no refusal, so the
// wallet keeps the request pending (ErrPending) rather than drop it while
// nothing excludes its commit, and Recover stops on it too. With budget
// again, Recover gets the refusal, recorded now, drops the request and
// reports it.
func TestWithdrawRefusalOverBudgetStaysPending(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:2.00")
	f.bank.LimitRefusals(bank.NewRateLimiter(0.000001, 0, 100)) // no refusal recorded
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:4.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("a withdrawal the funds cannot pay, no refusal recorded: %v, want ErrPending", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 {
		t.Fatalf("%d withdrawals pending, want 1", n)
	}
	if _, err := w.Recover(ctx, f.bankc); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("recover, no refusal recorded: %v, want ErrPending", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 {
		t.Fatalf("%d withdrawals pending after recover, want 1", n)
	}
	f.bank.LimitRefusals(nil)
	rep, err := w.Recover(ctx, f.bankc)
	if err != nil || len(rep.Refused) != 1 || !strings.Contains(rep.Refused[0].Reason, bank.ErrInsufficientFunds.Error()) {
		t.Fatalf("recover with budget again: %+v, %v; want the request refused", rep, err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending once refused, want 0", n)
	}
}
