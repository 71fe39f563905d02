package wallet_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// distinctPayments counts the distinct sealed payments sent to a
// merchant, from any number of goroutines.
type distinctPayments struct {
	pb.MerchantClient
	mu   sync.Mutex
	seen map[string]bool
}

func (d *distinctPayments) Pay(ctx context.Context, in *pb.PayRequest, opts ...grpc.CallOption) (*pb.PayResponse, error) {
	d.mu.Lock()
	d.seen[string(in.SealedPayment)] = true
	d.mu.Unlock()
	return d.MerchantClient.Pay(ctx, in, opts...)
}

func (d *distinctPayments) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.seen)
}

// TestPayConcurrentSameOrder: two payments of one order run at once in
// one wallet, the order paid already by another wallet. The second one
// passed the check for a kept paid-with-other-coins receipt while the
// first was still sending, and once the first had been refused and had
// kept that receipt, it reserved other coins and sent them: a second
// payment the bank refused, revealing more coins bound to the order (and
// asking to confirm twice, making change twice). Now the second waits for
// the first and is answered from the receipt it kept: nothing more sent.
func TestPayConcurrentSameOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	other := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.06"), "gum", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	shop := &distinctPayments{MerchantClient: f.shop, seen: map[string]bool{}}
	var confirms atomic.Int32
	inFirst, inSecond, firstDone := make(chan struct{}), make(chan struct{}), make(chan struct{})
	// The first holds at its confirmation until the second reaches its
	// own (as it did, both past the checks), or a second has passed.
	first := func(*wallet.Offer) error {
		confirms.Add(1)
		close(inFirst)
		select {
		case <-inSecond:
		case <-time.After(time.Second):
		}
		return nil
	}
	// The second goes on only once the first has ended.
	second := func(*wallet.Offer) error {
		confirms.Add(1)
		close(inSecond)
		<-firstDone
		return nil
	}
	var err1 error
	go func() {
		defer close(firstDone)
		_, err1 = w.Pay(ctx, f.bankc, shop, "shop", o.ID, first)
	}()
	<-inFirst
	_, err2 := w.Pay(ctx, f.bankc, shop, "shop", o.ID, second)
	<-firstDone
	var po1, po2 *wallet.PaidOtherwiseError
	if !errors.As(err1, &po1) || po1.Err == nil {
		t.Errorf("first payment: %v; want a *wallet.PaidOtherwiseError with the refusal", err1)
	}
	if !errors.As(err2, &po2) || po2.Err != nil {
		t.Errorf("second payment: %v; want a *wallet.PaidOtherwiseError from the receipt kept, nothing sent", err2)
	}
	if n, c := shop.count(), confirms.Load(); n != 1 || c != 1 {
		t.Errorf("%d payments sent, %d confirmations asked; want 1 and 1", n, c)
	}
}

// TestPayLockReleasedOnPanic: a confirm that panics (a caller's callback,
// the panic recovered by the caller) left the request's payment lock held,
// so every later payment of the order in this wallet waited until its
// context ended. The lock is released as the panic unwinds.
func TestPayLockReleasedOnPanic(t *testing.T) {
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.06"), "gum", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("confirm's panic did not reach the caller")
			}
		}()
		w.Pay(context.Background(), f.bankc, f.shop, "shop", o.ID, func(*wallet.Offer) error { panic("confirm failed") })
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatalf("paying again after the panic: %v; want it paid", err)
	}
}
