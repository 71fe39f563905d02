package merchant

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestRefundDatedAheadOfBankClock: the bank refuses a refund request dated
// more than MaxClockSkew ahead of its clock, after it looked the request's
// record up and found none. A new refund refused so is dropped (nothing
// was debited) and the error says to set the clock. A pending one (its
// answer lost) refused so is kept, whichever way it is asked for again: a
// replica whose clock is further on may have taken it, and dropped, the
// refund would be lost and its number made again for another request. Once
// the bank's clock reaches its date it is answered (here refused as not
// deposited, the order having been marked paid without a deposit), and
// still kept until no send of it can commit; then dropped, the bank having
// no receipt of it.
func TestRefundDatedAheadOfBankClock(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	o := s.orderMarkedPaid(t, time.Hour)
	amount := ecash.MustParseAmount("EUR:0.50")
	ahead := ecash.MaxClockSkew + time.Minute

	// A new refund made by a merchant whose clock is ahead.
	s.m.Close()
	m, err := Open(ctx, Config{Dir: s.dir, Account: s.account, Bank: s.bankc, AuditLog: s.logc, FS: s.fs, Catalogue: s.cat,
		Now: func() time.Time { return s.clock.now().Add(ahead) }})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Refund(ctx, o.ID, 0, amount)
	if !errors.Is(err, ErrClockAhead) || !strings.Contains(err.Error(), "the refund was not made") || !strings.Contains(err.Error(), "ahead of the bank's clock") {
		t.Fatalf("a new refund dated ahead of the bank's clock: %v, want ErrClockAhead saying by how much", err)
	}
	if code := status.Code(m.toStatus(ctx, err)); code != codes.FailedPrecondition {
		t.Errorf("sent to merchantd's caller as %v, want FailedPrecondition", code)
	}
	if recs, err := m.refunds(o.ID); err != nil || len(recs) != 0 {
		t.Fatalf("a refused new refund kept: %d, %v", len(recs), err)
	}
	m.Close()
	s.open()

	// A pending refund dated ahead of the bank's clock.
	pr, _ := ecash.DecodePaymentRequest(o.Request)
	req := &ecash.RefundRequest{PaymentHash: pr.Hash(), MerchantAccount: s.account, RefundID: 1, Amount: amount, CreatedAt: s.clock.now().Add(ahead)}
	req.Sign(s.m.key)
	if err := s.m.db.Set(refundKey(o.ID, 1), (&refundRecord{Request: req.Encode()}).encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	for _, id := range []uint64{0, 1} {
		_, err := s.m.Refund(ctx, o.ID, id, amount)
		if !errors.Is(err, ErrClockAhead) || !strings.Contains(err.Error(), "stays pending") {
			t.Fatalf("refund id %d, a pending one dated ahead of the bank's clock: %v, want ErrClockAhead", id, err)
		}
		// Not settled: no refusal to merchantd's caller (it may be made).
		if code := status.Code(s.m.toStatus(ctx, err)); code != codes.Unavailable {
			t.Errorf("refund id %d, pending and dated ahead: sent to merchantd's caller as %v, want Unavailable", id, code)
		}
		recs, err := s.m.refunds(o.ID)
		if err != nil || len(recs) != 1 || recs[0].Receipt != nil || string(recs[0].Request) != string(req.Encode()) {
			t.Fatalf("refund id %d: the pending refund not kept as it was (%d records, %v)", id, len(recs), err)
		}
	}
	// Once the bank's clock reaches the date it answers, here with a
	// refusal; but the refund was sent before and stays pending: an
	// earlier send may still be committing (refund.go, ErrRefundInFlight).
	s.clock.add(ahead)
	if _, err := s.m.Refund(ctx, o.ID, 0, amount); !errors.Is(err, ErrRefundInFlight) || errors.Is(err, ErrClockAhead) || !strings.Contains(err.Error(), "no such payment was deposited") {
		t.Fatalf("the pending refund once the bank's clock reached its date: %v, want ErrRefundInFlight with the bank's answer", err)
	}
	if recs, err := s.m.refunds(o.ID); err != nil || len(recs) != 1 || recs[0].Receipt != nil {
		t.Fatalf("a pending refund refused: %d records, %v; want it kept", len(recs), err)
	}
	// Past its send window and the commit bound, the bank's refund
	// receipts of the payment are its word: none, and it is dropped.
	s.clock.add(refundSendWindow + refundCommitBound + 2*ecash.MaxClockSkew + time.Second)
	if _, err := s.m.Refund(ctx, o.ID, 0, amount); !errors.Is(err, ErrRefundDropped) || status.Code(s.m.toStatus(ctx, err)) != codes.FailedPrecondition {
		t.Fatalf("the pending refund past its drop time: %v, want ErrRefundDropped", err)
	}
	if recs, err := s.m.refunds(o.ID); err != nil || len(recs) != 0 {
		t.Fatalf("refunds left: %d, %v", len(recs), err)
	}
}

// jumpingBank moves the merchant's clock on by jump while the bank answers
// a refund: a clock stepped during the send.
type jumpingBank struct {
	*directBank
	clock interface{ add(time.Duration) }
	jump  time.Duration
}

func (b *jumpingBank) Refund(ctx context.Context, in *pb.RefundRequest, opts ...grpc.CallOption) (*pb.RefundResponse, error) {
	b.clock.add(b.jump)
	return b.directBank.Refund(ctx, in, opts...)
}

// TestPendingRefundRefusedAcrossClockJump: a pending refund sent within its
// window is refused, and the merchant's clock jumps past the refund's drop
// time while the bank answers. The refusal alone does not drop it: the
// bank's receipts were not asked, and the send may still commit. The next
// refund of the order, past the window, asks them and only then drops it.
func TestPendingRefundRefusedAcrossClockJump(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	o := s.orderMarkedPaid(t, time.Hour)
	amount := ecash.MustParseAmount("EUR:0.50")
	pr, _ := ecash.DecodePaymentRequest(o.Request)
	req := &ecash.RefundRequest{PaymentHash: pr.Hash(), MerchantAccount: s.account, RefundID: 1, Amount: amount, CreatedAt: s.clock.now()}
	req.Sign(s.m.key)
	if err := s.m.db.Set(refundKey(o.ID, 1), (&refundRecord{Request: req.Encode()}).encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	s.m.Close()
	m, err := Open(ctx, Config{Dir: s.dir, Account: s.account, Bank: &jumpingBank{s.bankc, s.clock, refundSendWindow + refundCommitBound + 2*ecash.MaxClockSkew + time.Minute},
		AuditLog: s.logc, FS: s.fs, Catalogue: s.cat, Now: s.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// Refused (the order was marked paid without a deposit): kept.
	if _, err := m.Refund(ctx, o.ID, 0, amount); !errors.Is(err, ErrRefundInFlight) {
		t.Fatalf("a pending refund refused across a clock jump: %v, want ErrRefundInFlight", err)
	}
	if recs, err := m.refunds(o.ID); err != nil || len(recs) != 1 {
		t.Fatalf("a pending refund refused across a clock jump: %d records, %v; want it kept", len(recs), err)
	}
	// Past its window now: not sent, the receipts asked, none: dropped.
	if _, err := m.Refund(ctx, o.ID, 0, amount); !errors.Is(err, ErrRefundDropped) {
		t.Fatalf("the pending refund once the receipts were asked: %v, want ErrRefundDropped", err)
	}
}

// TestRefundDatedBeforeBankWindow: a merchant whose clock is more than
// bank.RefundWindow and the skew behind the bank's makes a refund the bank
// refuses as dated too long ago (bank.ErrTooOld): it is dropped, nothing
// was debited, and the error says the clock is behind.
func TestRefundDatedBeforeBankWindow(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	o := s.orderMarkedPaid(t, time.Hour)
	s.m.Close()
	behind := bank.RefundWindow + ecash.MaxClockSkew + time.Minute
	m, err := Open(ctx, Config{Dir: s.dir, Account: s.account, Bank: s.bankc, AuditLog: s.logc, FS: s.fs, Catalogue: s.cat,
		Now: func() time.Time { return s.clock.now().Add(-behind) }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, err = m.Refund(ctx, o.ID, 0, ecash.MustParseAmount("EUR:0.50"))
	if !errors.Is(err, ErrClockBehind) || !strings.Contains(err.Error(), "the refund was not made") || !strings.Contains(err.Error(), "dated too long ago") {
		t.Fatalf("a new refund dated before the bank's window: %v, want ErrClockBehind with the bank's word", err)
	}
	if code := status.Code(m.toStatus(ctx, err)); code != codes.FailedPrecondition {
		t.Errorf("sent to merchantd's caller as %v, want FailedPrecondition", code)
	}
	if recs, err := m.refunds(o.ID); err != nil || len(recs) != 0 {
		t.Fatalf("a refused new refund kept: %d, %v", len(recs), err)
	}
}

// orderMarkedPaid is a new order of EUR 1.00, lasting ttl, recorded paid
// without a deposit: the bank refuses its refunds as not deposited (if
// nothing refuses them first), which shows they reached it.
func (s *shop) orderMarkedPaid(t *testing.T, ttl time.Duration) *Order {
	t.Helper()
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", ttl)
	if err != nil {
		t.Fatal(err)
	}
	o.Receipt = []byte("receipt")
	if err := s.m.db.Set(orderKey(o.ID), o.encode(), nil); err != nil {
		t.Fatal(err)
	}
	s.m.orders.put(o)
	return o
}
