package wallet_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestPayReceiptUncheckedStaysPending: the bank rotated its signing key
// since the wallet fetched its key set, and the bank's key set cannot be
// fetched when the receipt, signed by the new key, comes back. The receipt
// is neither verified nor refuted: the payment stays pending and the error
// says to retry (ErrPending); it was "merchant returned a bad receipt", not
// retryable. Paid again once the key set can be fetched, the payment
// completes with the receipt.
func TestPayReceiptUncheckedStaysPending(t *testing.T) {
	ctx := context.Background()
	f, w, clk := rotatedWallet(t, "EUR:5.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Pay(ctx, &downKeys{BankClient: f.bankc}, f.shop, "shop", o.ID, nil)
	var unchecked *wallet.KeySetUnfetchedError
	if !errors.Is(err, wallet.ErrPending) || !errors.As(err, &unchecked) || strings.Contains(err.Error(), "bad receipt") {
		t.Fatalf("payment whose receipt cannot be checked: %v; want pending (ErrPending, *KeySetUnfetchedError), not a bad receipt", err)
	}
	if bal, err := w.Balance(); err != nil || bal.Pending.String() != "EUR:1.00" {
		t.Fatalf("balance: %+v, %v; want EUR:1.00 pending", bal, err)
	}
	clk.ahead.Add(int64(10 * time.Second)) // past the bound on fetching the key set again
	rcpt, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	if err != nil {
		t.Fatalf("paying again with the key set reachable: %v", err)
	}
	if ks, _ := f.bank.KeySet(); !rcpt.SignerPub.Equal(ks.SigningPub) || rcpt.Total.String() != "EUR:1.00" {
		t.Errorf("receipt of %s signed by %x, want EUR:1.00 by the new key", rcpt.Total, rcpt.SignerPub[:8])
	}
	if bal, err := w.Balance(); err != nil || !bal.Pending.IsZero() || bal.Fresh.String() != "EUR:4.00" {
		t.Errorf("balance after: %+v, %v; want EUR:4.00 fresh, nothing pending", bal, err)
	}
}

// TestReturnReceiptUncheckedStaysPending: the same for a return, whose
// receipt the bank hands the wallet itself. Its error was the bare
// *KeySetUnfetchedError, which the CLI showed as a plain failure with the
// coins left pending and no word of 'wallet recover'; it wraps ErrPending,
// and Recover settles it once the key set can be fetched.
func TestReturnReceiptUncheckedStaysPending(t *testing.T) {
	ctx := context.Background()
	f, w, clk := rotatedWallet(t, "EUR:5.00")
	_, err := w.Return(ctx, &downKeys{BankClient: f.bankc}, ecash.MustParseAmount("EUR:1.00"))
	var unchecked *wallet.KeySetUnfetchedError
	if !errors.Is(err, wallet.ErrPending) || !errors.As(err, &unchecked) {
		t.Fatalf("return whose receipt cannot be checked: %v; want pending (ErrPending, *KeySetUnfetchedError)", err)
	}
	if bal, err := w.Balance(); err != nil || bal.Pending.String() != "EUR:1.00" {
		t.Fatalf("balance: %+v, %v; want EUR:1.00 pending", bal, err)
	}
	clk.ahead.Add(int64(10 * time.Second)) // past the bound on fetching the key set again
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatalf("recover with the key set reachable: %v", err)
	}
	if bal, err := w.Balance(); err != nil || !bal.Pending.IsZero() || bal.Fresh.String() != "EUR:4.00" {
		t.Errorf("balance after: %+v, %v; want EUR:4.00 fresh, nothing pending", bal, err)
	}
}
