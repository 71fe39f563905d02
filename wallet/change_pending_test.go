package wallet_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// countingShop counts the payments handed to the merchant.
type countingShop struct {
	pb.MerchantClient
	pays atomic.Int32
}

func (c *countingShop) Pay(ctx context.Context, in *pb.PayRequest, opts ...grpc.CallOption) (*pb.PayResponse, error) {
	c.pays.Add(1)
	return c.MerchantClient.Pay(ctx, in, opts...)
}

// walletNeedingChange returns a wallet holding EUR:1.29 that pays EUR:0.03
// only by making change (a coin of EUR:0.01 and one of EUR:1.28), and an
// order of EUR:0.03.
func walletNeedingChange(t *testing.T, f *fixture) (*wallet.Wallet, string) {
	t.Helper()
	ctx := context.Background()
	w, _ := newWallet(t, f, "EUR:10.00", "EUR:2.56")
	first, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.27"), "the small coins", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", first.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := fresh(t, w); got != "EUR:1.29" {
		t.Fatalf("fresh %s, want EUR:1.29", got)
	}
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "change pending", 0)
	if err != nil {
		t.Fatal(err)
	}
	return w, o.ID
}

// TestPayChangePending: the swap making change for a payment is committed
// by the bank and its answer lost. Nothing was sent to the merchant, yet
// Pay returned the bare ErrPending a payment sent and unconfirmed returns,
// which 'wallet pay' reported as "the payment ... was sent". It returns a
// *ChangePendingError now (still ErrPending), and so does a re-run that
// cannot settle the swap either; the run that can settles the swap and
// pays once, and every coin is accounted for.
func TestPayChangePending(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, order := walletNeedingChange(t, f)
	lossy := &lossySwaps{BankClient: f.bankc}
	lossy.lose.Store(2)
	shop := &countingShop{MerchantClient: f.shop}
	var change []bool
	confirm := func(o *wallet.Offer) error {
		change = append(change, o.Change)
		return nil
	}

	_, err := w.Pay(ctx, lossy, shop, "shop", order, confirm)
	var cp *wallet.ChangePendingError
	if !errors.As(err, &cp) || !errors.Is(err, wallet.ErrPending) || cp.Recoup {
		t.Fatalf("pay with the change swap's answer lost: %v, want a *ChangePendingError wrapping ErrPending, Recoup not set", err)
	}
	if len(change) != 1 || !change[0] {
		t.Fatalf("offers confirmed %v, want one that makes change", change)
	}
	if n := shop.pays.Load(); n != 0 {
		t.Fatalf("%d payments sent to the merchant, want none", n)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if bal.Pending.IsZero() || bal.Fresh.Value+bal.Pending.Value != 129 {
		t.Fatalf("after the lost answer: fresh %s, pending %s; want the swapped coin pending, the rest fresh", bal.Fresh, bal.Pending)
	}
	f.checkConservation(t, w)

	// Run again with the bank's answer lost again: the swap left pending
	// is re-sent first, and the payment is not made.
	_, err = w.Pay(ctx, lossy, shop, "shop", order, confirm)
	if !errors.As(err, &cp) || !errors.Is(err, wallet.ErrPending) || cp.Recoup {
		t.Fatalf("pay run again, the swap still unanswered: %v, want a *ChangePendingError, Recoup not set", err)
	}
	if n := shop.pays.Load(); n != 0 {
		t.Fatalf("%d payments sent to the merchant, want none", n)
	}
	f.checkConservation(t, w)

	// The bank answers: the swap settles and the order is paid once.
	rcpt, err := w.Pay(ctx, lossy, shop, "shop", order, confirm)
	if err != nil {
		t.Fatalf("pay run once the bank answers: %v", err)
	}
	if rcpt.Total.String() != "EUR:0.03" {
		t.Fatalf("receipt for %s, want EUR:0.03", rcpt.Total)
	}
	if n := shop.pays.Load(); n != 1 {
		t.Errorf("%d payments sent to the merchant, want 1", n)
	}
	if got := fresh(t, w); got != "EUR:1.26" {
		t.Errorf("after paying: fresh %s, want EUR:1.26", got)
	}
	if got := f.balance(t, f.shopAcct); got != 130 {
		t.Errorf("merchant credited %d, want 130", got)
	}
	if n := lossy.swaps.Load(); n != 3 {
		t.Errorf("%d swap calls, want 3 (one swap, re-sent twice)", n)
	}
	f.checkConservation(t, w)
}

// TestPayChangePendingRecover: after the change swap's answer is lost,
// Recover settles the swap, and the payment run again pays once.
func TestPayChangePendingRecover(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, order := walletNeedingChange(t, f)
	lossy := &lossySwaps{BankClient: f.bankc}
	lossy.lose.Store(1)
	shop := &countingShop{MerchantClient: f.shop}
	var cp *wallet.ChangePendingError
	if _, err := w.Pay(ctx, lossy, shop, "shop", order, nil); !errors.As(err, &cp) {
		t.Fatalf("pay with the change swap's answer lost: %v, want a *ChangePendingError", err)
	}
	if _, err := w.Recover(ctx, lossy); err != nil {
		t.Fatal(err)
	}
	if got := fresh(t, w); got != "EUR:1.29" {
		t.Fatalf("after Recover: fresh %s, want EUR:1.29", got)
	}
	f.checkConservation(t, w)
	if _, err := w.Pay(ctx, lossy, shop, "shop", order, nil); err != nil {
		t.Fatalf("pay after Recover: %v", err)
	}
	if n := shop.pays.Load(); n != 1 {
		t.Errorf("%d payments sent to the merchant, want 1", n)
	}
	if got := fresh(t, w); got != "EUR:1.26" {
		t.Errorf("after paying: fresh %s, want EUR:1.26", got)
	}
	f.checkConservation(t, w)
}

// lossyReissues relays a real bank, losing the answers to the next lose
// recoups by re-issue (those with outputs) after the bank committed them.
type lossyReissues struct {
	pb.BankClient
	lose atomic.Int32
}

func (l *lossyReissues) Recoup(ctx context.Context, in *pb.RecoupRequest, opts ...grpc.CallOption) (*pb.RecoupResponse, error) {
	resp, err := l.BankClient.Recoup(ctx, in, opts...)
	if err == nil && len(resp.BlindSignatures) > 0 && l.lose.Add(-1) >= 0 {
		return nil, status.Error(codes.Unavailable, "connection reset (simulated)")
	}
	return resp, err
}

// recoupPending is a wallet whose recoup of a revoked coin that came from
// a swap is pending: the re-issue's answer was lost, and the next one (of
// lossy) will be lost too.
func recoupPending(t *testing.T) (*fixture, *wallet.Wallet, *lossyReissues) {
	t.Helper()
	ctx := context.Background()
	k := keys(t)
	f := newFixture(t)
	w := f.walletWithCoins(t, wallet.Options{}, "EUR:10.00", "EUR:1.00")
	// A coin of EUR:0.04 swapped for EUR:0.01, EUR:0.02 and EUR:0.01: a
	// coin of EUR:0.02 that came from a swap.
	if _, err := w.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.04")); err != nil {
		t.Fatal(err)
	}
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	revokeValue(t, f, k, ks, 2, time.Now())
	lossy := &lossyReissues{BankClient: f.bankc}
	lossy.lose.Store(2)
	if _, err := w.Recoup(ctx, lossy); !errors.Is(err, wallet.ErrPending) {
		t.Fatalf("recoup with the re-issue's answer lost: %v, want ErrPending", err)
	}
	if lossy.lose.Load() != 1 {
		t.Fatal("no re-issue was made: the test needs a revoked coin that came from a swap")
	}
	return f, w, lossy
}

// TestReturnRecoupPending: a return (coins deposited back to the account)
// with a recoup's re-issue pending stops before depositing anything and
// says a recoup is pending, as a payment does; it returns once the bank
// answers.
func TestReturnRecoupPending(t *testing.T) {
	ctx := context.Background()
	f, w, lossy := recoupPending(t)
	before, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Return(ctx, lossy, ecash.MustParseAmount("EUR:0.03"))
	var cp *wallet.ChangePendingError
	if !errors.As(err, &cp) || !errors.Is(err, wallet.ErrPending) || !cp.Recoup {
		t.Fatalf("return with the recoup's answer lost again: %v, want a *ChangePendingError wrapping ErrPending, Recoup set", err)
	}
	if msg := err.Error(); strings.Contains(msg, "change") || !strings.Contains(msg, "recoup") {
		t.Errorf("return with a recoup pending says %q; want a recoup pending, and no change", msg)
	}
	if after, err := w.Balance(); err != nil || after.Fresh != before.Fresh || after.Revealed != before.Revealed {
		t.Errorf("the wallet holds %+v (%v) after the refused return, %+v before", after, err, before)
	}
	f.checkConservation(t, w)
	if _, err := w.Return(ctx, lossy, ecash.MustParseAmount("EUR:0.03")); err != nil {
		t.Fatalf("return once the bank answers: %v", err)
	}
	f.checkConservation(t, w)
}

// TestPayRecoupPending: the swap a payment finds pending is a recoup's
// re-issue of a revoked coin, its answer lost, not change made for a
// payment. The payment is not made (a *ChangePendingError, nothing sent
// to the merchant), but the error said "making change is pending", which
// the wallet never did: it says a recoup is pending now, and Recoup is set.
// Once the bank answers, the payment settles the recoup and pays once.
func TestPayRecoupPending(t *testing.T) {
	ctx := context.Background()
	f, w, lossy := recoupPending(t)
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "recoup pending", 0)
	if err != nil {
		t.Fatal(err)
	}
	shop := &countingShop{MerchantClient: f.shop}
	_, err = w.Pay(ctx, lossy, shop, "shop", o.ID, nil)
	var cp *wallet.ChangePendingError
	if !errors.As(err, &cp) || !errors.Is(err, wallet.ErrPending) || !cp.Recoup {
		t.Fatalf("pay with the recoup's answer lost again: %v, want a *ChangePendingError wrapping ErrPending, Recoup set", err)
	}
	if msg := err.Error(); strings.Contains(msg, "change") || !strings.Contains(msg, "recoup") || !strings.Contains(msg, "nothing was paid") {
		t.Errorf("pay with a recoup pending says %q; want a recoup pending, nothing paid, and no change", msg)
	}
	if n := shop.pays.Load(); n != 0 {
		t.Fatalf("%d payments sent to the merchant, want none", n)
	}
	f.checkConservation(t, w)

	if _, err := w.Pay(ctx, lossy, shop, "shop", o.ID, nil); err != nil {
		t.Fatalf("pay once the bank answers: %v", err)
	}
	if n := shop.pays.Load(); n != 1 {
		t.Errorf("%d payments sent to the merchant, want 1", n)
	}
	f.checkConservation(t, w)
}
