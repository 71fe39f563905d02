package wallet_test

import (
	"context"
	"errors"
	"testing"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestStuckRefundSwapShowsPending: the swap that collects a refund is
// committed by the bank and its answer lost. Its inputs are coins spent
// before (they spend their refund credit), so none turned pending: the
// balance showed nothing of the refund in flight, and 'wallet recover',
// which goes to the bank only with something pending, left it stuck. It
// counts as pending until Recover finishes it.
func TestStuckRefundSwapShowsPending(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := newWallet(t, f, "EUR:10.00", "EUR:2.00")
	o, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:2.00"), "a lamp", 0)
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.merchant.Refund(ctx, o.ID, 0, ecash.MustParseAmount("EUR:1.00")); err != nil {
		t.Fatal(err)
	}
	lossy := &lossySwaps{BankClient: f.bankc}
	lossy.lose.Store(1)
	if _, err := w.CollectRefunds(ctx, lossy); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("collecting with the answer lost: %v, want ErrPending", err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("refund swap stuck: fresh %s, pending %s", bal.Fresh, bal.Pending)
	if bal.Pending.String() != "EUR:1.00" {
		t.Fatalf("pending %s with the EUR:1.00 refund's swap unsettled", bal.Pending)
	}
	f.checkConservation(t, w)
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	if got := fresh(t, w); got != "EUR:1.00" {
		t.Fatalf("after Recover the wallet holds %s fresh; the refund was EUR:1.00", got)
	}
	f.checkConservation(t, w)
}
