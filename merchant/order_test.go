package merchant

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
)

// CreateOrder refuses a summary the wallet would refuse to show (control
// characters, bidi controls, bad UTF-8), before signing or storing
// anything: the merchant review's summary faked the amount shown.
func TestCreateOrderRefusesControlSummary(t *testing.T) {
	s := newShop(t)
	price := ecash.MustParseAmount("EUR:500.00")
	for _, evil := range []string{"coffee\r\x1b[1A\x1b[2K  amount:\tEUR:0.01\n", "coffee EUR:\u202e00.005", "bad \xff", ""} {
		if _, err := s.m.CreateOrder(price, evil, time.Minute); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("summary %q: %v, want ErrMalformed", evil, err)
		}
	}
	if _, err := s.m.CreateOrder(price, "Café crème × 2", time.Minute); err != nil {
		t.Fatal(err)
	}
}

// CreateOrder makes no request a wallet would refuse for its lifetime (the
// time its coins could stay pending): up to MaxPaymentLifetime, no more.
func TestCreateOrderLifetime(t *testing.T) {
	s := newShop(t)
	price := ecash.MustParseAmount("EUR:1.00")
	o, err := s.m.CreateOrder(price, "thing", ecash.MaxPaymentLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ecash.DecodePaymentRequest(o.Request); err != nil {
		t.Fatalf("the longest-lived order's request: %v", err)
	}
	if _, err := s.m.CreateOrder(price, "thing", ecash.MaxPaymentLifetime+time.Millisecond); !errors.Is(err, ecash.ErrMalformed) {
		t.Fatalf("an order living past MaxPaymentLifetime: %v, want ErrMalformed", err)
	}
}

// A zero refund is refused before anything is saved, and a pending refund
// request that can never be sent (a zero refund an older version saved)
// is dropped instead of being sent first, and failing, by every later
// refund of the order (merchant review R5).
func TestRefundZeroDoesNotWedge(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	o := s.orderMarkedPaid(t, time.Minute)
	for _, bad := range []ecash.Amount{{Currency: "EUR"}, {Currency: "EUR", Value: ecash.MaxValue + 1}} {
		if _, err := s.m.Refund(ctx, o.ID, 0, bad); !errors.Is(err, ecash.ErrBadAmount) {
			t.Fatalf("refund of %s: %v", bad, err)
		}
	}
	if recs, err := s.m.refunds(o.ID); err != nil || len(recs) != 0 {
		t.Fatalf("refunds saved: %d, %v", len(recs), err)
	}
	pr, _ := ecash.DecodePaymentRequest(o.Request)
	zero := &ecash.RefundRequest{PaymentHash: pr.Hash(), MerchantAccount: s.account, RefundID: 1, Amount: ecash.Amount{Currency: "EUR"}, CreatedAt: s.clock.now()}
	zero.Sign(s.m.key)
	if err := s.m.db.Set(refundKey(o.ID, 1), (&refundRecord{Request: zero.Encode()}).encode(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Refund(ctx, o.ID, 0, ecash.MustParseAmount("EUR:0.50")); status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "no such payment was deposited") {
		t.Fatalf("a refund after the wedged one: %v, want the bank's refusal", err)
	}
	if recs, err := s.m.refunds(o.ID); err != nil || len(recs) != 0 {
		t.Fatalf("refunds left: %d, %v", len(recs), err)
	}
}
