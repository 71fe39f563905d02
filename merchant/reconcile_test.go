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

// A deposit the bank refused leaves its order marked in flight (the
// merchant cannot tell a refusal of these coins from the order being paid
// with others): Reconcile and the order's status keep asking the bank
// while it could still take a payment of the order, drop the mark once it
// cannot (ExpiresAt + 2*MaxClockSkew), and ask no more after.
func TestReconcileDropsDepositBankNeverTook(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "thing", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.Pay(ctx, o.ID, []byte("not a sealed payment")); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("junk payment: %v", err)
	}
	marked := func() bool {
		t.Helper()
		ok, err := s.m.has(depositKey(o.ID))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	orderStatus := func() string {
		t.Helper()
		st, err := s.m.AdminServer().OrderStatus(ctx, &pb.OrderStatusRequest{OrderId: o.ID})
		if err != nil {
			t.Fatal(err)
		}
		return st.Status
	}
	s.clock.add(time.Minute + 2*ecash.MaxClockSkew) // the bank could still take it
	if paid, err := s.m.Reconcile(ctx); paid != 0 || err != nil || !marked() {
		t.Fatalf("within the bank's grace: %d paid, %v, marked %v", paid, err, marked())
	}
	asked := s.bankc.depositStatus.Load()
	if st := orderStatus(); st != "expired" || s.bankc.depositStatus.Load() != asked+1 {
		t.Fatalf("status %q; the bank asked %d times", st, s.bankc.depositStatus.Load()-asked)
	}
	s.clock.add(time.Second)
	if paid, err := s.m.Reconcile(ctx); paid != 0 || err != nil || marked() {
		t.Fatalf("past the bank's grace: %d paid, %v, marked %v", paid, err, marked())
	}
	asked = s.bankc.depositStatus.Load()
	if st := orderStatus(); st != "expired" || s.bankc.depositStatus.Load() != asked {
		t.Fatalf("status %q; the bank asked %d times", st, s.bankc.depositStatus.Load()-asked)
	}
}
