package wallet_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// corruptingBank forwards to the real bank and, when told, flips a bit of
// the last blind signature of its answers to withdrawals and swaps: a bank
// that committed and answered wrong (a faulty signer, or a hostile bank).
type corruptingBank struct {
	pb.BankClient
	withdraws, swaps atomic.Bool
	flood            atomic.Bool // answer withdrawals with too many signatures
}

func corruptLast(sigs [][]byte) {
	if len(sigs) > 0 {
		last := sigs[len(sigs)-1]
		last[len(last)-1] ^= 1
	}
}

func (c *corruptingBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	resp, err := c.BankClient.Withdraw(ctx, in, opts...)
	if err == nil && c.withdraws.Load() {
		corruptLast(resp.BlindSignatures)
	}
	if err == nil && c.flood.Load() {
		// What fits in a gRPC message: more signatures than a request may
		// carry, and one longer than a field may be.
		for range ecash.MaxCoinsPerRequest + 1 {
			resp.BlindSignatures = append(resp.BlindSignatures, []byte{1})
		}
		resp.BlindSignatures[0] = make([]byte, ecash.MaxFieldLen+1)
	}
	return resp, err
}

func (c *corruptingBank) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	resp, err := c.BankClient.Swap(ctx, in, opts...)
	if err == nil && c.swaps.Load() {
		corruptLast(resp.BlindSignatures)
	}
	return resp, err
}

// outstandingGap is the e-cash the bank has issued that the wallet does not
// hold: what bad answers cost it.
func (f *fixture) outstandingGap(t *testing.T, w *wallet.Wallet) int64 {
	t.Helper()
	totals, err := f.bank.Store().Totals(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	return totals[bank.AccountOutstanding] - int64(bal.Fresh.Value+bal.Pending.Value)
}

// TestBadAnswerKeptAsDispute: a withdrawal and a swap the bank commits but
// answers with a signature that does not verify fail with ErrBadAnswer
// (the answer would be the same on every retry), are kept as disputes with
// the answer, and leave nothing pending: the wallet goes on withdrawing and
// swapping.
func TestBadAnswerKeptAsDispute(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, acct := fundedWallet(t, f, "EUR:10.00")
	bad := &corruptingBank{BankClient: f.bankc}

	bad.withdraws.Store(true)
	_, err := w.Withdraw(ctx, bad, ecash.MustParseAmount("EUR:2.00"), nil)
	if !errors.Is(err, wallet.ErrBadAnswer) || !errors.Is(err, ecash.ErrBadSignature) {
		t.Fatalf("withdraw answered wrong: %v, want ErrBadAnswer and ErrBadSignature", err)
	}
	if got := f.balance(t, acct); got != 800 {
		t.Fatalf("account %d after the bad answer, want 800: the bank committed", got)
	}
	if n, err := w.PendingWithdrawals(); n != 0 || err != nil {
		t.Fatalf("%d pending withdrawals (%v): a bad answer must not be retried forever", n, err)
	}
	if gap := f.outstandingGap(t, w); gap != 200 {
		t.Errorf("issued but not held: %d, want the 200 of the bad withdrawal", gap)
	}

	// The wallet is not stuck: the next withdrawal and Recover work.
	bad.withdraws.Store(false)
	if _, err := w.Withdraw(ctx, bad, ecash.MustParseAmount("EUR:5.12"), nil); err != nil {
		t.Fatalf("withdraw after a dispute: %v", err)
	}
	if err := w.Recover(ctx, bad); err != nil {
		t.Fatalf("recover after a dispute: %v", err)
	}
	if got := fresh(t, w); got != "EUR:5.12" {
		t.Fatalf("fresh %s, want EUR:5.12", got)
	}

	bad.swaps.Store(true)
	gapBefore := f.outstandingGap(t, w)
	if _, err := w.Swap(ctx, bad, ecash.MustParseAmount("EUR:1.00")); !errors.Is(err, wallet.ErrBadAnswer) {
		t.Fatalf("swap answered wrong: %v, want ErrBadAnswer", err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if !bal.Pending.IsZero() || bal.Fresh.Value >= 512 {
		t.Errorf("after the bad swap: fresh %s, pending %s; want the inputs spent and nothing pending", bal.Fresh, bal.Pending)
	}
	if gap := f.outstandingGap(t, w); gap <= gapBefore {
		t.Errorf("issued but not held: %d, was %d: the bad swap's outputs are lost to the wallet", gap, gapBefore)
	}
	bad.swaps.Store(false)
	if _, err := w.Swap(ctx, bad, ecash.MustParseAmount("EUR:0.01")); err != nil {
		t.Fatalf("swap after a dispute: %v", err)
	}

	ds, err := w.Disputes()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, d := range ds {
		kinds = append(kinds, d.Kind)
	}
	if slices.Sort(kinds); !slices.Equal(kinds, []string{"swap", "withdraw"}) {
		t.Fatalf("disputes %q, want a withdraw and a swap", kinds)
	}
	if ds[0].Kind != "withdraw" {
		ds[0], ds[1] = ds[1], ds[0]
	}
	for _, d := range ds {
		if len(d.Request) == 0 || len(d.Answer) == 0 || d.Reason == "" || d.At.IsZero() {
			t.Errorf("%s dispute without its evidence: %+v", d.Kind, d)
		}
	}
	if _, err := ecash.DecodeWithdrawRequest(ds[0].Request); err != nil {
		t.Errorf("the withdraw dispute's request: %v", err)
	}

	// An answer beyond every bound is kept cut to the record's bounds, and
	// the disputes still read.
	bad.flood.Store(true)
	if _, err := w.Withdraw(ctx, bad, ecash.MustParseAmount("EUR:0.01"), nil); !errors.Is(err, wallet.ErrBadAnswer) {
		t.Fatalf("withdraw answered with too many signatures: %v, want ErrBadAnswer", err)
	}
	ds, err = w.Disputes()
	if err != nil || len(ds) != 3 {
		t.Fatalf("after a flooded answer: %d disputes, %v", len(ds), err)
	}
	if !slices.ContainsFunc(ds, func(d wallet.Dispute) bool {
		return len(d.Answer) == ecash.MaxCoinsPerRequest && len(d.Answer[0]) == ecash.MaxFieldLen
	}) {
		t.Error("the flooded answer is not kept cut to the record's bounds")
	}
}
