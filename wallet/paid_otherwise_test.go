package wallet_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// countingMerchant counts the payments handed to the merchant.
type countingMerchant struct {
	pb.MerchantClient
	pays atomic.Int32
}

func (m *countingMerchant) Pay(ctx context.Context, in *pb.PayRequest, opts ...grpc.CallOption) (*pb.PayResponse, error) {
	m.pays.Add(1)
	return m.MerchantClient.Pay(ctx, in, opts...)
}

// countingBank counts the swaps sent to the bank.
type countingBank struct {
	pb.BankClient
	swaps atomic.Int32
}

func (b *countingBank) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	b.swaps.Add(1)
	return b.BankClient.Swap(ctx, in, opts...)
}

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

	shop := &countingMerchant{MerchantClient: f.shop}
	bank := &countingBank{BankClient: f.bankc}
	for _, addr := range []string{"shop", "127.0.0.1:shop"} {
		asked := false
		_, err = w.Pay(ctx, bank, shop, addr, o.ID, func(*wallet.Offer) error { asked = true; return nil })
		po = nil
		if !errors.As(err, &po) || po.Err != nil || po.Receipt == nil || !bytes.Equal(po.Receipt.Encode(), paid.Encode()) {
			t.Fatalf("paying it again at %s: %v; want a *wallet.PaidOtherwiseError with the first wallet's receipt, kept, and no refusal (nothing sent)", addr, err)
		}
		if asked || shop.pays.Load() != 0 || bank.swaps.Load() != 0 {
			t.Fatalf("paying it again at %s: asked to confirm %v, %d payments sent, %d swaps; want none", addr, asked, shop.pays.Load(), bank.swaps.Load())
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
