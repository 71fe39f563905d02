package wallet_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// aheadWallet starts a bank on the real clock and a wallet funded with
// EUR 2 there whose clock is ahead by what offset holds: the skew and a
// minute, to begin with.
func aheadWallet(t *testing.T) (f *fixture, w *wallet.Wallet, offset *atomic.Int64) {
	t.Helper()
	f, offset = newFixture(t), new(atomic.Int64)
	offset.Store(int64(ecash.MaxClockSkew + time.Minute))
	w, err := wallet.Create(t.TempDir(), wallet.Options{Now: func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	f.fund(t, w, "EUR:2.00")
	return f, w, offset
}

// accountBalance is what the bank holds on the wallet's account.
func accountBalance(t *testing.T, f *fixture, w *wallet.Wallet) int64 {
	t.Helper()
	id, err := w.Account()
	if err != nil {
		t.Fatal(err)
	}
	a, err := f.bank.Store().Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// TestWithdrawClockAhead: a wallet whose clock runs more than the skew
// ahead of the bank's is refused its withdrawal. It is told so
// (ErrClockAhead, the bank's message saying by how much), nothing is
// debited or left pending, its planchet indices go to the next withdrawal,
// and once its clock is right it withdraws.
func TestWithdrawClockAhead(t *testing.T) {
	ctx := context.Background()
	f, w, offset := aheadWallet(t)
	n0, _ := wallet.NextIndex(w)
	_, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil)
	if !errors.Is(err, wallet.ErrClockAhead) || !strings.Contains(err.Error(), "ahead of the bank's clock") {
		t.Fatalf("withdrawal by a wallet 6 minutes ahead: %v; want ErrClockAhead with the bank's word", err)
	}
	t.Log(err)
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals left pending after a refusal", n)
	}
	if b := accountBalance(t, f, w); b != 200 {
		t.Fatalf("account holds %d after a refused withdrawal, want 200", b)
	}
	if n, _ := wallet.NextIndex(w); n != n0 {
		t.Fatalf("planchet counter %d after a refused withdrawal, want %d (its indices parked)", n, n0)
	}
	offset.Store(0) // the clock set right
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatalf("withdrawal once the clock is right: %v", err)
	}
	if got := fresh(t, w); got != "EUR:1.00" || accountBalance(t, f, w) != 100 {
		t.Fatalf("after the withdrawal: fresh %s, account %d; want EUR:1.00 and 100", got, accountBalance(t, f, w))
	}
}

// TestRecoveredWithdrawalClockAheadParksIndices: a withdrawal by a wallet
// whose clock is ahead never reaches the bank; Recover sends it and the
// bank refuses it for its date, after looking its record up (like a
// refusal for funds): its indices are parked for the next withdrawal, not
// skipped, and the refusal is reported with the bank's word.
func TestRecoveredWithdrawalClockAheadParksIndices(t *testing.T) {
	ctx := context.Background()
	f, w, _ := aheadWallet(t)
	n0, _ := wallet.NextIndex(w)
	if _, err := w.Withdraw(ctx, unsentWithdraw{f.bankc}, ecash.MustParseAmount("EUR:1.00"), nil); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("withdrawal never sent: %v, want ErrPending", err)
	}
	rep, err := w.Recover(ctx, f.bankc)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Refused) != 1 || !strings.Contains(rep.Refused[0].Reason, "ahead of the bank's clock") {
		t.Fatalf("recover reports %+v; want the withdrawal refused for its date", rep.Refused)
	}
	if n, _ := w.PendingWithdrawals(); n != 0 {
		t.Fatalf("%d withdrawals pending after the refusal", n)
	}
	if n, _ := wallet.NextIndex(w); n != n0 {
		t.Fatalf("planchet counter %d after the recovered refusal, want %d (its indices parked)", n, n0)
	}
}
