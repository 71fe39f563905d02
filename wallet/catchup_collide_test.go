package wallet_test

import (
	"bytes"
	"context"
	"errors"
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
// refuse it again): its inputs are the wallet's, pending until Recover.
// Taking a held coin at an output's planchet for "X went through",
// Balance stopped counting them (EUR:0.64 missing until Recover), and the
// transcript got coin lines for the lost copy's coins as X's outputs,
// which tell an audit X spent its inputs: paid later, they fail it
// ("already spent at line 2 (swap …)").
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
	if _, err := r.Withdraw(ctx, b, ecash.MustParseAmount("EUR:0.64"), nil); err != nil {
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
	// The transcript's coins: R's 7 (the retry's); the lost copy's come
	// of no request of this transcript (TRANSCRIPTS.md §3, "coin").
	n := 0
	for _, l := range transcriptSteps(t, tr.Bytes()) {
		if l.Step == "coin" {
			n++
		}
	}
	if n != 7 {
		t.Errorf("%d coin lines, want R's 7: the lost copy's coins at X's planchets recorded as X's outputs", n)
	}
}
