package wallet_test

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// seenBank records every blinded message and CS nonce the wallet sends,
// with the phase of the test that sent it.
type seenBank struct {
	pb.BankClient
	mu    sync.Mutex
	phase string
	sent  map[string]map[string]bool // blinded message or nonce -> phases
}

func (s *seenBank) saw(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent == nil {
		s.sent = map[string]map[string]bool{}
	}
	if s.sent[string(b)] == nil {
		s.sent[string(b)] = map[string]bool{}
	}
	s.sent[string(b)][s.phase] = true
}

func (s *seenBank) PrepareWithdraw(ctx context.Context, in *pb.PrepareWithdrawRequest, opts ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	for _, it := range in.Items {
		s.saw(it.Request)
	}
	return s.BankClient.PrepareWithdraw(ctx, in, opts...)
}

func (s *seenBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if r, err := ecash.DecodeWithdrawRequest(in.Body); err == nil {
		for _, p := range r.Planchets {
			s.saw(p.Blinded)
		}
	}
	return s.BankClient.Withdraw(ctx, in, opts...)
}

func (s *seenBank) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	if r, err := ecash.DecodeSwapRequest(in.Body); err == nil {
		for _, p := range r.Outputs {
			s.saw(p.Blinded)
		}
	}
	return s.BankClient.Swap(ctx, in, opts...)
}

// TestRefusedPlanchetsNotReused: the planchets of withdrawals the bank
// refused (the account lacks the funds) go only to the account's next
// withdrawal, never to a swap, which they would link to the account; and
// refusals leave no hole a restore cannot cross.
func TestRefusedPlanchetsNotReused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:3.00")
	seen := &seenBank{BankClient: f.bankc, phase: "withdrawals"}
	if _, err := w.Withdraw(ctx, seen, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	// 6 × 64 indices, more than RestoreGap, were they skipped; the last
	// refusal takes fewer than the first parked, whose rest stays parked.
	for _, amount := range []string{"EUR:500.00", "EUR:500.00", "EUR:500.00", "EUR:500.00", "EUR:500.00", "EUR:500.00", "EUR:4.00"} {
		if _, err := w.Withdraw(ctx, seen, ecash.MustParseAmount(amount), nil); err == nil {
			t.Fatal("withdrawing more than the account holds succeeded")
		}
	}
	seen.phase = "swap"
	if _, err := w.Swap(ctx, seen, ecash.MustParseAmount("EUR:0.50")); err != nil {
		t.Fatal(err)
	}
	seen.phase = "withdrawals"
	if _, err := w.Withdraw(ctx, seen, ecash.MustParseAmount("EUR:1.00"), nil); err != nil {
		t.Fatal(err)
	}
	for b, phases := range seen.sent {
		if len(phases) > 1 {
			t.Errorf("sent in a withdrawal and in a swap: %x…", b[:8])
		}
	}
	want, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	r, rep, err := wallet.Restore(ctx, t.TempDir(), w.Seed(), f.bankc, wallet.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if rep.Fresh != want.Fresh {
		t.Errorf("restore found %s, the wallet holds %s: refusals left a hole", rep.Fresh, want.Fresh)
	}
}

// TestNoClockInAnonymousRequests: a payment's permissions carry the
// payment request's time and a swap carries time 0, not the wallet's clock,
// whose offset (to the millisecond, in every signed withdrawal) would let
// the bank match anonymous requests to the account.
func TestNoClockInAnonymousRequests(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := newWallet(t, f, "EUR:10.00", "EUR:5.12")
	var swaps []*ecash.SwapRequest
	spy := &swapSpy{BankClient: f.bankc, got: &swaps}
	if _, err := w.Swap(ctx, spy, ecash.MustParseAmount("EUR:0.50")); err != nil {
		t.Fatal(err)
	}
	if len(swaps) == 0 {
		t.Fatal("no swap sent")
	}
	for _, r := range swaps {
		if r.CreatedAt.UnixMilli() != 0 {
			t.Errorf("a swap sent with the wallet's clock %v", r.CreatedAt)
		}
	}
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.03"), "clock", 0)
	if err != nil {
		t.Fatal(err)
	}
	capture := &capturingMerchant{MerchantClient: f.shop}
	if _, err := w.Pay(ctx, spy, capture, "shop", o.ID, nil); err == nil {
		t.Fatal("the capturing merchant answered")
	}
	pr, err := ecash.DecodePaymentRequest(o.Request)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ecash.OpenPayment(keys(t).HPKE, pr, capture.got.SealedPayment)
	if err != nil {
		t.Fatal(err)
	}
	for _, dp := range p.Permissions {
		if !dp.Timestamp.Equal(pr.CreatedAt) {
			t.Errorf("a permission timestamped %v, want the request's %v", dp.Timestamp, pr.CreatedAt)
		}
	}
}

// swapSpy forwards swaps and keeps their requests.
type swapSpy struct {
	pb.BankClient
	got *[]*ecash.SwapRequest
}

func (s *swapSpy) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	if r, err := ecash.DecodeSwapRequest(in.Body); err == nil {
		*s.got = append(*s.got, r)
	}
	return s.BankClient.Swap(ctx, in, opts...)
}
