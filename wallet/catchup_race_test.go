package wallet_test

import (
	"context"
	"sync"
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

// duringScan runs hook once, on the second IssuedSignatures call (the
// first is issuedBefore's check, the second a catch-up scan's first batch).
type duringScan struct {
	pb.BankClient
	calls atomic.Int32
	hook  func()
}

func (b *duringScan) IssuedSignatures(ctx context.Context, in *pb.IssuedSignaturesRequest, opts ...grpc.CallOption) (*pb.IssuedSignaturesResponse, error) {
	if b.calls.Add(1) == 2 && b.hook != nil {
		b.hook()
	}
	return b.BankClient.IssuedSignatures(ctx, in, opts...)
}

// TestNoReservationDuringCatchUp: a wallet put back from a copy
// withdraws; the bank refuses (ErrAlreadyIssued) and the wallet catches up.
// No other request reserves indices while its scan runs. Without that
// While its scan runs, another goroutine on the same wallet withdraws: it
// reserved indices from the counter the wallet knew was stale, under
// other denominations than the lost copy used there, so the bank
// signed and debited. The coins shared their ids (coin keys) with the lost
// copy's coins the scan then found: one of each pair was dropped.
func TestNoReservationDuringCatchUp(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 40*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	r, _ := putBackWallet(t, f, clk, "", "EUR:0.63", "EUR:0.07")
	var bErr error
	bDone := make(chan struct{})
	bank := &duringScan{BankClient: f.bankc}
	bank.hook = func() {
		go func() {
			defer close(bDone)
			_, bErr = r.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:0.01"), nil)
		}()
		// B reserves now, unless the catch-up holds it back (then it
		// waits, and the scan goes on after this second).
		select {
		case <-bDone:
		case <-time.After(time.Second):
		}
	}
	_, aErr := r.Withdraw(ctx, bank, ecash.MustParseAmount("EUR:0.03"), nil)
	<-bDone
	t.Logf("A (caught up): %v; B (during the scan): %v", aErr, bErr)
	if aErr != nil || bErr != nil {
		t.Fatal("a withdrawal failed")
	}
	bal, err := r.Balance()
	if err != nil {
		t.Fatal(err)
	}
	// The lost copy's 0.70, A's 0.03, B's 0.01: all debited from the account.
	next, _ := wallet.NextIndex(r)
	top, n, _ := wallet.TopCoinIndex(r)
	t.Logf("counter %d; %d coins, top index %d; fresh %s", next, n, top, bal.Fresh)
	if bal.Fresh.Value != 70+3+1 {
		t.Fatalf("wallet holds %s fresh; the account paid for EUR:0.74 of coins", bal.Fresh)
	}
}

// flakyAll fails every third first round (giveBack), refuses every fourth
// withdrawal and every third swap outright without forwarding them (park,
// skip).
type flakyAll struct {
	pb.BankClient
	prep, wd, sw atomic.Int32
}

func (b *flakyAll) PrepareWithdraw(ctx context.Context, in *pb.PrepareWithdrawRequest, opts ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	if b.prep.Add(1)%3 == 0 {
		return nil, status.Error(codes.Unavailable, "down")
	}
	return b.BankClient.PrepareWithdraw(ctx, in, opts...)
}

func (b *flakyAll) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if b.wd.Add(1)%4 == 0 {
		return nil, status.Error(codes.FailedPrecondition, "refused")
	}
	return b.BankClient.Withdraw(ctx, in, opts...)
}

func (b *flakyAll) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	if b.sw.Add(1)%3 == 0 {
		return nil, status.Error(codes.FailedPrecondition, "refused")
	}
	return b.BankClient.Swap(ctx, in, opts...)
}

func TestConcurrentFlakyIndices(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 40*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:400.00", "EUR:10.00")
	bank := &flakyAll{BankClient: f.bankc}
	var wg sync.WaitGroup
	var withdrawn atomic.Int64
	for range 3 {
		wg.Go(func() {
			for range 6 {
				got, err := w.Withdraw(ctx, bank, ecash.MustParseAmount("EUR:1.23"), nil)
				for _, c := range got {
					_ = c
				}
				if err == nil {
					withdrawn.Add(123)
				} else {
					t.Logf("withdraw: %v (%d coins)", err, len(got))
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 6 {
				if _, err := w.Swap(ctx, bank, ecash.MustParseAmount("EUR:0.64")); err != nil {
					t.Logf("swap: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	next, _ := wallet.NextIndex(w)
	top, n, _ := wallet.TopCoinIndex(w)
	t.Logf("counter %d; %d coins, top %d; fresh %s; withdrawn %d", next, n, top, bal.Fresh, withdrawn.Load())
	if next <= top {
		t.Errorf("counter %d at or below coin index %d", next, top)
	}
	if bal.Fresh.Value != uint64(1000+withdrawn.Load()) {
		t.Errorf("fresh %s, want %d", bal.Fresh, 1000+withdrawn.Load())
	}
	f.checkConservation(t, w)
}

// refuseFirstWithdraw refuses the first withdrawal outright (a definitive
// refusal other than ErrAlreadyIssued, nothing forwarded): parkIndices.
type refuseFirstWithdraw struct {
	pb.BankClient
	n atomic.Int32
}

func (b *refuseFirstWithdraw) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if b.n.Add(1) == 1 {
		return nil, status.Error(codes.FailedPrecondition, "refused")
	}
	return b.BankClient.Withdraw(ctx, in, opts...)
}

// TestCatchUpCoversParkedRange: a wallet put back from a copy has a
// withdrawal refused outright (its indices [c, c+6) parked); its next
// swap skips the parked range, collides with the lost copy's coins at
// c+6 (ErrAlreadyIssued) and catches up. The scan starts at the counter as
// the swap found it, c: from c+6, the lost copy's coins at [c, c+6) were
// never taken in, though the account paid for them (PROTOCOL: the wallet
// "scans forward from its counter").
func TestCatchUpCoversParkedRange(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 40*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	r, _ := putBackWallet(t, f, clk, "EUR:1.00", "EUR:0.63", "EUR:0.63")
	_, err := r.Withdraw(ctx, &refuseFirstWithdraw{BankClient: f.bankc}, ecash.MustParseAmount("EUR:0.63"), nil)
	t.Logf("refused withdrawal: %v", err)
	_, err = r.Swap(ctx, f.bankc, ecash.MustParseAmount("EUR:0.64"))
	t.Logf("swap (caught up): %v", err)
	bal, _ := r.Balance()
	next, _ := wallet.NextIndex(r)
	top, n, _ := wallet.TopCoinIndex(r)
	t.Logf("counter %d; %d coins, top %d; fresh %s", next, n, top, bal.Fresh)
	if bal.Fresh.Value != 100+126 {
		t.Fatalf("fresh %s after the catch-up; the lost copy's coins (EUR:1.26) and the wallet's EUR:1.00 make EUR:2.26", bal.Fresh)
	}
}

// swapDuringWithdraw, on the first Withdraw, starts swap (before
// forwarding it) and waits until the bank has committed that swap's
// Swap; the Swap's answer is then held until release is closed.
type swapDuringWithdraw struct {
	pb.BankClient
	withdraws atomic.Int32
	swap      func()
	committed chan struct{}
	release   chan struct{}
}

func (b *swapDuringWithdraw) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if b.withdraws.Add(1) == 1 {
		go b.swap()
		<-b.committed
	}
	return b.BankClient.Withdraw(ctx, in, opts...)
}

func (b *swapDuringWithdraw) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	resp, err := b.BankClient.Swap(ctx, in, opts...)
	close(b.committed)
	<-b.release
	return resp, err
}

// TestSwapSettledAfterCatchUpKeepsSpentOutputs: a wallet put back from a
// copy withdraws (R, indices [c, c+6), which the lost copy used); meanwhile
// a swap X reserves [c+6, c+13), and the bank commits it, its answer slow.
// R is refused (ErrAlreadyIssued) and catches up: the scan from c takes in
// the lost copy's coins and X's outputs, which the bank signed. A payment
// spends every fresh coin, X's outputs among them (X is in flight: the
// payment's recovery leaves it to its call). Then X's answer comes: its
// settlement wrote its outputs fresh again, over the spent records, and
// the wallet counted EUR:0.64 it had paid away.
func TestSwapSettledAfterCatchUpKeepsSpentOutputs(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, scheduleKeys(t, clk.now(), 40*time.Hour), clk.now)
	r, _ := putBackWallet(t, f, clk, "EUR:0.64", "EUR:0.63")
	bank := &swapDuringWithdraw{BankClient: f.bankc, committed: make(chan struct{}), release: make(chan struct{})}
	var xErr error
	xDone := make(chan struct{})
	bank.swap = func() {
		defer close(xDone)
		_, xErr = r.Swap(ctx, bank, ecash.MustParseAmount("EUR:0.64"))
	}
	if _, err := r.Withdraw(ctx, bank, ecash.MustParseAmount("EUR:0.63"), nil); err != nil {
		t.Fatalf("withdrawal (caught up): %v", err)
	}
	bal, _ := r.Balance()
	t.Logf("after the catch-up: fresh %s, pending %s", bal.Fresh, bal.Pending)
	// X went through (the scan found its outputs signed): its inputs are
	// spent, its outputs fresh; counted pending too, they were counted twice.
	if !bal.Pending.IsZero() {
		t.Errorf("pending %s after the catch-up took in X's outputs: X's inputs counted beside them", bal.Pending)
	}
	f.checkConservation(t, r)
	o, err := f.merchant.CreateOrder(bal.Fresh, "everything", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatalf("paying %s: %v", bal.Fresh, err)
	}
	close(bank.release)
	<-xDone
	if xErr != nil {
		t.Fatalf("swap X: %v", xErr)
	}
	bal, _ = r.Balance()
	t.Logf("after X settled: fresh %s, pending %s", bal.Fresh, bal.Pending)
	if !bal.Fresh.IsZero() || !bal.Pending.IsZero() {
		t.Fatalf("the wallet paid every coin it held, X's outputs among them; it counts %s fresh and %s pending", bal.Fresh, bal.Pending)
	}
	f.checkConservation(t, r)
}
