package wallet_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// refusalLostSwaps relays Swap and loses the first refusal: the wallet
// sees Unavailable where the bank refused.
type refusalLostSwaps struct {
	pb.BankClient
	lost atomic.Bool
}

func (b *refusalLostSwaps) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	resp, err := b.BankClient.Swap(ctx, in, opts...)
	if err != nil && bank.Definitive(err) && b.lost.CompareAndSwap(false, true) {
		return nil, status.Errorf(codes.Unavailable, "connection reset (simulated; the bank said %v)", err)
	}
	return resp, err
}

// TestCatchUpCoinsAtRefusedSwapPlanchets: a wallet put back from a copy
// (counter c) withdraws (R, [c, c+7)); meanwhile it swaps its EUR:0.64
// (X, [c+7, c+14)). The lost copy withdrew at [c, c+7) and [c+7, c+14)
// under the same denominations (a split always starts 1, 2, 4, ...): the
// bank refuses X (ErrAlreadyIssued), and that refusal is lost, so X stays
// pending, its inputs with it. R is refused too and catches up: the scan
// from c takes in the lost copy's coins, among them the coins at X's
// planchets, which X's would be. X did not go through (the bank will
// refuse it again): its inputs are the wallet's. Taking a held coin at an
// output's planchet for "X went through", Balance stopped counting them
// (EUR:0.64 missing until Recover): the catch-up now sends X again before
// it scans, and settles it on the refusal. A scan that wrote coin lines
// for the coins it found at a pending swap's planchets wrote the lost
// copy's as X's outputs, which tell an audit X spent its inputs: paid
// later, they fail it ("already spent at line 2 (swap …)"). A scan writes
// none.
func TestCatchUpCoinsAtRefusedSwapPlanchets(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, scheduleKeys(t, clk.now(), 40*time.Hour), clk.now)
	var tr bytes.Buffer
	r, _ := putBackWalletWith(t, f, clk, wallet.Options{Transcript: &tr}, "EUR:0.64", "EUR:0.64", "EUR:0.64")
	var swapErr error
	b := &collectDuringWithdraw{BankClient: f.bankc}
	b.collect = func() {
		_, swapErr = r.Swap(ctx, &refusalLostSwaps{BankClient: f.bankc}, ecash.MustParseAmount("EUR:0.64"))
	}
	withdrawn, err := r.Withdraw(ctx, b, ecash.MustParseAmount("EUR:0.64"), nil)
	if err != nil {
		t.Fatalf("withdrawal (caught up): %v", err)
	}
	if !errors.Is(swapErr, wallet.ErrPending) {
		t.Fatalf("the swap, its refusal lost: %v, want ErrPending", swapErr)
	}
	bal, err := r.Balance()
	if err != nil {
		t.Fatal(err)
	}
	// The lost copy's 1.28, R's 0.64 and X's inputs, 0.64: fresh, or
	// X's inputs pending while X is.
	t.Logf("after the catch-up: fresh %s, pending %s", bal.Fresh, bal.Pending)
	if bal.Fresh.Value+bal.Pending.Value != 128+64+64 {
		t.Errorf("fresh %s, pending %s; want EUR:2.56 together: X's inputs are the wallet's", bal.Fresh, bal.Pending)
	}
	f.checkConservation(t, r)
	if _, err := r.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	bal, _ = r.Balance()
	t.Logf("after Recover: fresh %s, pending %s", bal.Fresh, bal.Pending)
	if bal.Fresh.Value != 128+64+64 || !bal.Pending.IsZero() {
		t.Errorf("after Recover: fresh %s, pending %s; want EUR:2.56 fresh", bal.Fresh, bal.Pending)
	}
	f.checkConservation(t, r)
	// The transcript's coins: R's (the retry's); the lost copy's, X's
	// among them, come of no request of this transcript.
	checkCoinLines(t, "after Recover", tr.Bytes(), withdrawn)
}

// heldSwaps relays Swap; the first call's answer is held until release
// is closed (sent is closed once it is held).
type heldSwaps struct {
	pb.BankClient
	calls   atomic.Int32
	sent    chan struct{}
	release chan struct{}
}

func (b *heldSwaps) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	resp, err := b.BankClient.Swap(ctx, in, opts...)
	if b.calls.Add(1) == 1 {
		close(b.sent)
		<-b.release
	}
	return resp, err
}

// TestCatchUpCoinsAtInFlightSwapPlanchets is
// TestCatchUpCoinsAtRefusedSwapPlanchets with X's refusal not lost but
// slow: X is still in flight (its call holds it) when R's catch-up scans,
// so the catch-up cannot settle it first, and the scan takes in the lost
// copy's coins at X's planchets while X is pending. Then X's refusal
// comes, and X's call catches up and swaps X's inputs again (X'). A scan
// that wrote the coins it found at a pending swap's planchets to the
// transcript as that swap's outputs told an audit that X went through and
// spent its inputs: X' spending them again failed it ("already spent at
// line N (swap)"), for good. The coins a scan takes in get no coin line
// (TRANSCRIPTS.md §3, "coin"): the transcript's coins are exactly those
// R' and X' returned, each once.
func TestCatchUpCoinsAtInFlightSwapPlanchets(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, scheduleKeys(t, clk.now(), 40*time.Hour), clk.now)
	var tr bytes.Buffer
	r, _ := putBackWalletWith(t, f, clk, wallet.Options{Transcript: &tr}, "EUR:0.64", "EUR:0.64", "EUR:0.64")
	held := &heldSwaps{BankClient: f.bankc, sent: make(chan struct{}), release: make(chan struct{})}
	var swapped []ecash.Coin
	var swapErr error
	swapDone := make(chan struct{})
	b := &collectDuringWithdraw{BankClient: f.bankc}
	b.collect = func() {
		go func() {
			defer close(swapDone)
			swapped, swapErr = r.Swap(ctx, held, ecash.MustParseAmount("EUR:0.64"))
		}()
		<-held.sent // X is pending, its refusal on the way
	}
	withdrawn, err := r.Withdraw(ctx, b, ecash.MustParseAmount("EUR:0.64"), nil)
	if err != nil {
		close(held.release)
		t.Fatalf("withdrawal (caught up): %v", err)
	}
	checkCoinLines(t, "after the catch-up, X in flight", tr.Bytes(), withdrawn)
	bal, err := r.Balance()
	if err != nil {
		t.Fatal(err)
	}
	// X presumed through (Balance.Pending): its inputs are not shown
	// until its refusal is processed.
	t.Logf("after the catch-up, X in flight: fresh %s, pending %s", bal.Fresh, bal.Pending)

	close(held.release)
	<-swapDone
	if swapErr != nil {
		t.Fatalf("the swap, refused and sent again past the lost copy's planchets: %v", swapErr)
	}
	checkCoinLines(t, "after X' went through", tr.Bytes(), append(slices.Clone(withdrawn), swapped...))
	bal, err = r.Balance()
	if err != nil {
		t.Fatal(err)
	}
	// The lost copy's 1.28, R's 0.64 and X''s 0.64.
	t.Logf("after X': fresh %s, pending %s", bal.Fresh, bal.Pending)
	if bal.Fresh.Value != 128+64+64 || !bal.Pending.IsZero() {
		t.Errorf("after X': fresh %s, pending %s; want EUR:2.56 fresh", bal.Fresh, bal.Pending)
	}
	f.checkConservation(t, r)
}
