package wallet_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestPayAgainOrderPaidOtherwise: an order another wallet paid is answered,
// the second time, from the bank's receipt the wallet kept the first time
// (across a restart): each attempt used to make change, reveal new coins to
// the bank bound to that order and swap them again, paying a swap fee and
// giving the bank one more payment to link, for an order it can never pay.
func TestPayAgainOrderPaidOtherwise(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	first := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	dir := filepath.Join(t.TempDir(), "w")
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.fund(t, w, "EUR:10.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.06"), "gum", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	paid, err := first.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
	var po *wallet.PaidOtherwiseError
	if !errors.As(err, &po) || po.Err == nil {
		t.Fatalf("paying an order another wallet paid: %v; want a *wallet.PaidOtherwiseError with the merchant's refusal", err)
	}
	before, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	next, err := wallet.NextIndex(w)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w, err = wallet.Open(dir, wallet.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })

	shop := &sealedSpy{MerchantClient: f.shop, sealed: map[string][]byte{}}
	var swaps []*ecash.SwapRequest
	bank := &swapSpy{BankClient: f.bankc, got: &swaps}
	for _, addr := range []string{"shop", "127.0.0.1:shop"} {
		asked := false
		_, err = w.Pay(ctx, bank, shop, addr, o.ID, func(*wallet.Offer) error { asked = true; return nil })
		po = nil
		if !errors.As(err, &po) || po.Err != nil || po.Receipt == nil || !bytes.Equal(po.Receipt.Encode(), paid.Encode()) {
			t.Fatalf("paying it again at %s: %v; want a *wallet.PaidOtherwiseError with the first wallet's receipt, kept, and no refusal (nothing sent)", addr, err)
		}
		if asked || len(shop.sealed) != 0 || len(swaps) != 0 {
			t.Fatalf("paying it again at %s: asked to confirm %v, %d payments sent, %d swaps; want none", addr, asked, len(shop.sealed), len(swaps))
		}
	}
	after, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	nextAfter, err := wallet.NextIndex(w)
	if err != nil {
		t.Fatal(err)
	}
	if after.Fresh != before.Fresh || after.Revealed != before.Revealed || !after.Pending.IsZero() || nextAfter != next {
		t.Fatalf("after paying again: fresh %s (revealed %s), pending %s, next index %d; want fresh %s (revealed %s), nothing pending, next index %d",
			after.Fresh, after.Revealed, after.Pending, nextAfter, before.Fresh, before.Revealed, next)
	}
}
