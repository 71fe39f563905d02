package merchant

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// marked reports whether order id has a deposit in flight.
func (s *shop) marked(id string) bool {
	s.t.Helper()
	keys, err := s.m.marks(id)
	if err != nil {
		s.t.Fatal(err)
	}
	return len(keys) > 0
}

// orderStatus is the shop's admin query of an order's status.
func (s *shop) orderStatus(id string) string {
	s.t.Helper()
	st, err := s.m.AdminServer().OrderStatus(context.Background(), &pb.OrderStatusRequest{OrderId: id})
	if err != nil {
		s.t.Fatal(err)
	}
	return st.Status
}

// A deposit whose outcome the merchant could not learn (the bank
// unreachable) leaves its order marked in flight: Reconcile and the
// order's status keep asking the bank while it could still take a payment
// of the order, drop the mark once it cannot (ExpiresAt + 2*MaxClockSkew),
// and ask no more after. The mark is synced, so a power loss keeps it
// (merchant review F5).
func TestReconcileDropsDepositBankNeverTook(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sealed := []byte("a sealed payment the bank never got")
	s.bankc.depositsDown.Store(true)
	if _, err := s.m.Pay(ctx, o.ID, sealed); status.Code(err) != codes.Unavailable {
		t.Fatalf("payment with the bank down: %v", err)
	}
	s.bankc.depositsDown.Store(false)
	s.powerLoss()
	if ok, err := s.m.has(attemptKey(o.ID, sealed)); !ok || err != nil {
		t.Fatalf("after a power loss the deposit's mark is gone (%v)", err)
	}
	s.clock.add(time.Minute + 2*ecash.MaxClockSkew - time.Second) // the bank could still take it
	for range 2 {
		if paid, err := s.m.Reconcile(ctx); paid != 0 || err != nil || !s.marked(o.ID) {
			t.Fatalf("within the bank's grace: %d paid, %v, marked %v", paid, err, s.marked(o.ID))
		}
	}
	asked := s.bankc.depositStatus.Load()
	if st := s.orderStatus(o.ID); st != "expired" || s.bankc.depositStatus.Load() != asked+1 {
		t.Fatalf("status %q; the bank asked %d times", st, s.bankc.depositStatus.Load()-asked)
	}
	s.clock.add(2 * time.Second)
	if paid, err := s.m.Reconcile(ctx); paid != 0 || err != nil || s.marked(o.ID) {
		t.Fatalf("past the bank's grace: %d paid, %v, marked %v", paid, err, s.marked(o.ID))
	}
	asked = s.bankc.depositStatus.Load()
	if st := s.orderStatus(o.ID); st != "expired" || s.bankc.depositStatus.Load() != asked {
		t.Fatalf("status %q; the bank asked %d times", st, s.bankc.depositStatus.Load()-asked)
	}
}

// Anyone who knows an order id can send the merchant junk for it (merchant
// review F4). The bank refuses it, and the refusal ends that attempt: the
// order is not in flight, so neither Reconcile (every 30 s) nor a shop
// polling the order's status asks the bank about it for the rest of its
// life (a month here), and the status works with the bank unreachable.
func TestRefusedPaymentLeavesNothingInFlight(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Pay(ctx, o.ID, []byte("junk")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("junk payment: %v", err)
	}
	if s.marked(o.ID) {
		t.Fatal("a refused payment left its order in flight")
	}
	asked := s.bankc.depositStatus.Load()
	if paid, err := s.m.Reconcile(ctx); paid != 0 || err != nil {
		t.Fatalf("reconcile: %d paid, %v", paid, err)
	}
	if st := s.orderStatus(o.ID); st != "unpaid" {
		t.Fatalf("status %q", st)
	}
	if n := s.bankc.depositStatus.Load() - asked; n != 0 {
		t.Fatalf("the merchant asked the bank %d times about an order nothing is in flight for", n)
	}
}

// After a run that did not close cleanly (a power loss: a mark written
// without a sync may be gone) the merchant asks the bank once about every
// unpaid order that could still have been paid, and about none other;
// after a clean close it asks about none (merchant review F5). It keeps
// the order's mark and asks once more, to drop it, when the bank can take
// no payment of the order.
func TestUncleanShutdownAsksBankOnceAboutOpenOrders(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	old, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "old", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.clock.add(time.Minute + 2*ecash.MaxClockSkew + time.Second) // old can be paid no more
	open, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "open", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reconcile := func(what string, wantAsked int32) {
		t.Helper()
		asked := s.bankc.depositStatus.Load()
		if paid, err := s.m.Reconcile(ctx); paid != 0 || err != nil {
			t.Fatalf("%s: reconcile: %d paid, %v", what, paid, err)
		}
		if n := s.bankc.depositStatus.Load() - asked; n != wantAsked {
			t.Fatalf("%s: the bank asked %d times, want %d", what, n, wantAsked)
		}
	}
	s.m.Close()
	s.open()
	reconcile("after a clean close", 0)
	s.powerLoss()
	if !s.marked(open.ID) || s.marked(old.ID) {
		t.Fatalf("after a power loss: open order marked %v, old one %v", s.marked(open.ID), s.marked(old.ID))
	}
	reconcile("after a power loss", 1)
	reconcile("again", 0)
	// The mark stays, not asked about, until the bank can take no payment
	// of the order: a send of the last run may still be committing. Nor
	// does a look at the order ask (a shop polling its open orders).
	if !s.marked(open.ID) {
		t.Fatal("the open order's mark went at the first answer; a send of the last run may still commit")
	}
	asked := s.bankc.depositStatus.Load()
	if o, err := s.m.CheckOrder(ctx, open.ID); err != nil || o.Receipt != nil || s.bankc.depositStatus.Load() != asked {
		t.Fatalf("a look at the open order: %v, asked the bank %d times; want it unpaid, not asked", err, s.bankc.depositStatus.Load()-asked)
	}
	s.clock.add(time.Hour + 2*ecash.MaxClockSkew + time.Second)
	reconcile("once the bank can take no payment of it", 1)
	if s.marked(open.ID) {
		t.Error("the open order's mark stayed once the bank could take no payment of it")
	}
	reconcile("after that", 0)
}
