package wallet_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// holdFirst holds the first call it sees until released, and counts them.
type holdFirst struct {
	calls            atomic.Int32
	entered, release chan struct{}
}

func newHoldFirst() holdFirst {
	return holdFirst{entered: make(chan struct{}), release: make(chan struct{})}
}

func (h *holdFirst) hold() {
	if h.calls.Add(1) == 1 {
		close(h.entered)
		<-h.release
	}
}

// heldStatusBank holds its first DepositStatus call until released.
type heldStatusBank struct {
	pb.BankClient
	holdFirst
}

func (b *heldStatusBank) DepositStatus(ctx context.Context, in *pb.DepositStatusRequest, opts ...grpc.CallOption) (*pb.DepositResponse, error) {
	b.hold()
	return b.BankClient.DepositStatus(ctx, in, opts...)
}

// TestLateSettleChangesNothing: Recover asks the bank about an expired
// payment and, before the answer comes, a retry of that payment settles it
// and frees its coin, which a second payment then takes. The late answer
// must not free the coin again (a third payment would spend it, and the
// second's expiry would then mark the spent coin fresh).
func TestLateSettleChangesNothing(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:1.00", "EUR:0.01")
	order := func(name string) string {
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.01"), name, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	first := order("first")
	if _, err := w.Pay(ctx, f.bankc, downMerchant{f.shop}, "shop", first, nil); err == nil {
		t.Fatal("paid through a merchant that is down")
	}
	clk.add(time.Hour) // the first payment's request expires
	held := &heldStatusBank{BankClient: f.bankc, holdFirst: newHoldFirst()}
	recovered := make(chan error)
	go func() { _, err := w.Recover(ctx, held); recovered <- err }()
	<-held.entered
	// The retry finds the request expired and unpaid: the coin is free,
	// and the second payment (its merchant down too) takes it.
	if _, err := w.Pay(ctx, f.bankc, downMerchant{f.shop}, "shop", first, nil); err == nil {
		t.Fatal("an expired request paid")
	}
	if _, err := w.Pay(ctx, f.bankc, downMerchant{f.shop}, "shop", order("second"), nil); err == nil {
		t.Fatal("paid through a merchant that is down")
	}
	close(held.release)
	if err := <-recovered; err != nil {
		t.Fatalf("recover: %v", err)
	}
	if b, err := w.Balance(); err != nil || !b.Fresh.IsZero() {
		t.Fatalf("after the late answer: %+v, %v; want the coin still pending for the second payment", b, err)
	}
	f.checkConservation(t, w)
}
