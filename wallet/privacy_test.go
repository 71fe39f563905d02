package wallet_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// seenBank records every blinded message and CS nonce the wallet sends.
type seenBank struct {
	pb.BankClient
	mu   sync.Mutex
	sent map[string]string // blinded message or nonce -> the request kind that sent it
}

func (s *seenBank) saw(kind string, b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent == nil {
		s.sent = map[string]string{}
	}
	if prev, ok := s.sent[string(b)]; ok && prev != kind+"#" {
		s.sent[string(b)] = prev + "+" + kind
		return
	}
	s.sent[string(b)] = kind
}

func (s *seenBank) PrepareWithdraw(ctx context.Context, in *pb.PrepareWithdrawRequest, opts ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	for _, it := range in.Items {
		s.saw("nonce", it.Request)
	}
	return s.BankClient.PrepareWithdraw(ctx, in, opts...)
}

func (s *seenBank) Withdraw(ctx context.Context, in *pb.WithdrawRequest, opts ...grpc.CallOption) (*pb.WithdrawResponse, error) {
	if r, err := ecash.DecodeWithdrawRequest(in.Body); err == nil {
		for _, p := range r.Planchets {
			s.saw("withdraw", p.Blinded)
		}
	}
	return s.BankClient.Withdraw(ctx, in, opts...)
}

func (s *seenBank) Swap(ctx context.Context, in *pb.SwapRequest, opts ...grpc.CallOption) (*pb.SwapResponse, error) {
	if r, err := ecash.DecodeSwapRequest(in.Body); err == nil {
		for _, p := range r.Outputs {
			s.saw("swap", p.Blinded)
		}
	}
	return s.BankClient.Swap(ctx, in, opts...)
}

// TestRefusedPlanchetsNotReused: the planchets of a withdrawal the bank
// refused (the account lacks the funds) are never sent again, so a later
// swap cannot be linked to the account by them.
func TestRefusedPlanchetsNotReused(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := fundedWallet(t, f, "EUR:3.00")
	seen := &seenBank{BankClient: f.bankc}
	if _, err := w.Withdraw(ctx, seen, ecash.MustParseAmount("EUR:5.00"), nil); err == nil {
		t.Fatal("withdrawing more than the account holds succeeded")
	}
	refused := len(seen.sent)
	if refused == 0 {
		t.Fatal("the refused withdrawal sent nothing")
	}
	if _, err := w.Withdraw(ctx, seen, ecash.MustParseAmount("EUR:2.00"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Swap(ctx, seen, ecash.MustParseAmount("EUR:0.50")); err != nil {
		t.Fatal(err)
	}
	for b, kinds := range seen.sent {
		if strings.Contains(kinds, "+") {
			t.Errorf("sent twice (%s): %x…", kinds, b[:8])
		}
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
