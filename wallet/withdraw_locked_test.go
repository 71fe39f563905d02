package wallet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/wallet"
)

// lockAccount makes the bank lock account for the source of in-process
// calls and of the fixture's gRPC server (both ""): MaxAuthFailures
// statement requests signed with a stranger's key.
func lockAccount(t *testing.T, f *fixture, account uint64) {
	t.Helper()
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	for range bank.MaxAuthFailures {
		req := echeck.NewStatementRequest(account, now.Add(-time.Hour), now, now, stranger)
		if _, _, err := f.bank.Statement(context.Background(), req.Encode()); !errors.Is(err, bank.ErrUnauthorized) {
			t.Fatalf("forged statement request: %v, want ErrUnauthorized", err)
		}
	}
}

// TestRecoveredWithdrawalAccountLockedStaysPending: the bank refuses a
// withdraw request from a source that failed authentication too often
// (bank.ErrAccountLocked, about the source, not the request, and not
// recorded under the request's hash). A new request refused so is dropped,
// as any refusal. A request pending from before, refused so, may have
// been taken already, or be committing at another replica, or be taken
// from another source or once the lock is lifted: it stays pending (not
// reported refused, its indices kept), and Recover finishes it once the
// account is unlocked.
func TestRecoveredWithdrawalAccountLockedStaysPending(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, account := fundedWallet(t, f, "EUR:2.00")
	lockAccount(t, f, account)

	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); !bank.AccountLocked(err) {
		t.Fatalf("a new withdrawal from the locked source: %v, want the lock", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending after a new request was refused for the lock, want 0", n)
	}

	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	rep, err := w.Recover(ctx, f.bankc)
	if !errors.Is(err, wallet.ErrPending) || !errors.Is(err, wallet.ErrAccountLocked) || !strings.Contains(err.Error(), bank.ErrAccountLocked.Error()) {
		t.Fatalf("recover of a withdrawal from the locked source: %+v, %v; want ErrPending with the bank's word", rep, err)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 {
		t.Fatalf("%d withdrawals pending after the lock's refusal, want 1", n)
	}
	if err := f.bank.Unlock(ctx, account); err != nil {
		t.Fatal(err)
	}
	if rep, err := w.Recover(ctx, f.bankc); err != nil || len(rep.Refused) != 0 {
		t.Fatalf("recover once unlocked: %+v, %v", rep, err)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending once unlocked, want 0", n)
	}
	if got, acct := fresh(t, w), accountBalance(t, f, w); got != "EUR:1.00" || acct != 100 {
		t.Fatalf("fresh %s, account %d; want EUR:1.00 and 100", got, acct)
	}
}

// TestRecoveredWithdrawalAccountLockedStopsNothingElse: the lock of the
// wallet's source keeps a recovered withdrawal pending, and is Recover's
// error, but is about the account's requests only: a swap, which names
// no account and is not locked, is settled by the same Recover. Stopped
// at the withdrawal, anyone sharing the wallet's address who locked the
// account (a few forgeries naming it) would keep the wallet's swaps and
// payments unsettled until the lock lifts.
func TestRecoveredWithdrawalAccountLockedStopsNothingElse(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, account := newWallet(t, f, "EUR:10.00", "EUR:2.56")
	lossy := &lossySwaps{BankClient: f.bankc}
	lossy.lose.Store(1)
	if _, err := w.Swap(ctx, lossy, ecash.MustParseAmount("EUR:1.28")); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("swap with a lost answer: %v, want ErrPending", err)
	}
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	lockAccount(t, f, account)
	_, err := w.Recover(ctx, f.bankc)
	if !errors.Is(err, wallet.ErrPending) || !strings.Contains(err.Error(), bank.ErrAccountLocked.Error()) {
		t.Fatalf("recover with the account locked: %v; want ErrPending with the bank's word", err)
	}
	if n, _ := w.PendingWithdrawals(); n != 1 {
		t.Fatalf("%d withdrawals pending, want 1 (kept for the lock)", n)
	}
	if n, _ := w.PendingSwaps(); n != 0 {
		t.Fatalf("%d swaps pending after Recover: the lock of the account stopped a swap", n)
	}
	if got := fresh(t, w); got != "EUR:2.56" {
		t.Fatalf("after Recover: fresh %s, want EUR:2.56", got)
	}
	f.checkConservation(t, w)
}

// TestRecoverReportsWhileLocked: Recover's report of what it settled
// (here a withdrawal the bank refused outright, dropped by an earlier
// Withdraw) is taken once; with a withdrawal kept pending for the lock of
// the wallet's source, Recover returned only the lock's error and the
// report waited for a Recover after the lock lifted. It comes with the
// error now, and is not reported again.
func TestRecoverReportsWhileLocked(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, account := fundedWallet(t, f, "EUR:2.00")
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:5.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	// Sent first by this Withdraw, refused for the funds, dropped and
	// kept for Recover's report.
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:0.50"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	lockAccount(t, f, account)
	rep, err := w.Recover(ctx, f.bankc)
	if !errors.Is(err, wallet.ErrAccountLocked) {
		t.Fatalf("recover with the account locked: %v, want ErrAccountLocked", err)
	}
	if rep == nil || len(rep.Refused) != 1 || rep.Refused[0].Amount.String() != "EUR:5.00" || !strings.Contains(rep.Refused[0].Reason, "insufficient funds") {
		t.Fatalf("recover with the account locked reported %+v; want the EUR:5.00 withdrawal refused for the funds", rep)
	}
	if err := f.bank.Unlock(ctx, account); err != nil {
		t.Fatal(err)
	}
	if rep, err := w.Recover(ctx, f.bankc); err != nil || len(rep.Refused) != 0 {
		t.Fatalf("recover once unlocked: %+v, %v; want the refusal not reported again", rep, err)
	}
	if got, acct := fresh(t, w), accountBalance(t, f, w); got != "EUR:1.50" || acct != 50 {
		t.Fatalf("fresh %s, account %d; want EUR:1.50 and 50", got, acct)
	}
}
