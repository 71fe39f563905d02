package merchant

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// hasEndorsedMark reports whether the till holds the sale's mark.
func (s *shop) hasEndorsedMark(id echeck.EPOID) bool {
	s.t.Helper()
	ok, err := s.m.has(endorsedKey(id))
	if err != nil {
		s.t.Fatal(err)
	}
	return ok
}

// TestReconcileSettlesEndorsedSales: a sale endorsed and never answered
// ends with the bank's signed receipt in the till's store, through
// Reconcile, without the customer or anyone asking: when the bank decided
// it and the answer was lost (the till closed since), when the bank never
// got it (decided now), and when it never got it and the EPO has expired
// since (a signed decline; nobody charged).
func TestReconcileSettlesEndorsedSales(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name     string
		lose     func(*directBank)
		wait     time.Duration
		decision echeck.Decision
		charged  int64
	}{
		{"answer lost", func(d *directBank) { d.loseAnswers.Store(true) }, 0, echeck.Approved, 700},
		{"never reached the bank", func(d *directBank) { d.checksDown.Store(true) }, 0, echeck.Approved, 700},
		{"never reached the bank, expired since", func(d *directBank) { d.checksDown.Store(true) }, time.Hour, echeck.Declined, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newShop(t)
			_, q, d := s.offer("film")
			raw := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute)))
			c.lose(s.bankc)
			if _, err := s.m.SubmitEPO(ctx, raw); err == nil {
				t.Fatal("answered")
			}
			if !s.hasEndorsedMark(d.EPOID) {
				t.Fatal("endorsed without a mark")
			}
			s.bankc.loseAnswers.Store(false)
			s.bankc.checksDown.Store(false)
			s.m.Close()
			s.clock.add(c.wait)
			s.open()
			if _, err := s.m.Reconcile(ctx); err != nil {
				t.Fatal(err)
			}
			sl, err := s.m.loadSale(d.EPOID)
			if err != nil || sl.Receipt == nil {
				t.Fatalf("after Reconcile: no receipt stored (%v)", err)
			}
			r, err := echeck.DecodeReceipt(sl.Receipt)
			if err != nil || r.Decision != c.decision {
				t.Fatalf("receipt %+v, %v; want %s", r, err, c.decision)
			}
			if s.hasEndorsedMark(d.EPOID) {
				t.Fatal("the mark outlived the receipt")
			}
			if s.balance(s.custAcct) != 2000-c.charged || s.balance(s.account) != c.charged {
				t.Fatalf("balances %d and %d, want %d moved once", s.balance(s.custAcct), s.balance(s.account), c.charged)
			}
			// Settled: the next run asks the bank nothing.
			n := s.bankc.submits.Load()
			if _, err := s.m.Reconcile(ctx); err != nil || s.bankc.submits.Load() != n {
				t.Fatalf("a second Reconcile: %v, %d more submissions", err, s.bankc.submits.Load()-n)
			}
		})
	}
}

// TestOpenMarksEndorsedSalesOfAnOlderStore: a store written before the
// marks were kept has its endorsed, unanswered sales marked at Open, once.
func TestOpenMarksEndorsedSalesOfAnOlderStore(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	_, q, d := s.offer("song")
	raw := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute)))
	s.bankc.checksDown.Store(true)
	if _, err := s.m.SubmitEPO(ctx, raw); err == nil {
		t.Fatal("answered")
	}
	s.bankc.checksDown.Store(false)
	// As an older version left it: no mark, no sign of keeping them.
	for _, k := range [][]byte{endorsedKey(d.EPOID), keyEndorsedMarks} {
		if err := s.m.db.Delete(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.m.Close()
	s.open()
	if !s.hasEndorsedMark(d.EPOID) {
		t.Fatal("Open did not mark the endorsed sale")
	}
	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if sl, _ := s.m.loadSale(d.EPOID); sl == nil || sl.Receipt == nil || s.balance(s.account) != 150 {
		t.Fatalf("receipt stored %v, merchant balance %d; want settled and paid", sl != nil && sl.Receipt != nil, s.balance(s.account))
	}
}

// TestReconcilePrunesDeliveriesNeverPaid: a delivery no payment order
// followed is deleted once none can pay it (DeliveryTTL and the skew after
// its EPOID's time), and not before; a sale that was endorsed is kept.
// Deliveries used to be kept for the longest EPO lifetime (30 days), so
// one free quote accepted again and again grew the store by a month of
// calls; a store such a version left is pruned to the new window.
func TestReconcilePrunesDeliveriesNeverPaid(t *testing.T) {
	// In batches of 7 sales: the 51 span batches, the paid sale among them.
	defer func(n int) { pruneBatch = n }(pruneBatch)
	pruneBatch = 7
	ctx := context.Background()
	s := newShop(t)
	req := &echeck.PriceRequest{Customer: s.customerPub(), ProductID: "song", Bid: ecash.Amount{Currency: "EUR"}}
	rawQ, err := s.m.Quote(req.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var unpaid []echeck.EPOID
	for range 50 {
		raw, err := s.m.GetGoods(ctx, rawQ)
		if err != nil {
			t.Fatal(err)
		}
		d, err := echeck.DecodeDelivery(raw)
		if err != nil {
			t.Fatal(err)
		}
		unpaid = append(unpaid, d.EPOID)
	}
	_, q, paid := s.offer("film")
	if _, err := s.m.SubmitEPO(ctx, s.sign(echeck.NewGoodsEPO(s.customerPub(), q, paid, s.clock.now().Add(10*time.Minute)))); err != nil {
		t.Fatal(err)
	}
	// The watermark such an older version left.
	old := s.clock.now().Add(-echeck.MaxEPOLifetime - ecash.MaxClockSkew).UnixMilli()
	if err := s.m.db.Set(keyPrunedTo, binary.BigEndian.AppendUint64(nil, uint64(old)), nil); err != nil {
		t.Fatal(err)
	}
	kept := func() (n int) {
		for _, id := range unpaid {
			if _, err := s.m.loadSale(id); err == nil {
				n++
			}
		}
		return n
	}
	s.clock.add(DeliveryTTL + ecash.MaxClockSkew - time.Second)
	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := kept(); n != len(unpaid) {
		t.Fatalf("%d of %d deliveries too young to prune kept", n, len(unpaid))
	}
	s.clock.add(2 * time.Second)
	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := kept(); n != 0 {
		t.Fatalf("%d deliveries that can no longer be paid for kept, want none", n)
	}
	if sl, err := s.m.loadSale(paid.EPOID); err != nil || sl.Receipt == nil {
		t.Fatalf("the paid sale: %v; want kept with its receipt", err)
	}
}

// TestSubmitEPOAfterDeliveryTTL: a payment order that comes more than
// DeliveryTTL after its delivery is refused by the till (pruneDeliveries
// deletes such deliveries), and not sent to the bank; one within it is
// taken.
func TestSubmitEPOAfterDeliveryTTL(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	_, q, d := s.offer("song")
	_, q2, d2 := s.offer("film")
	s.clock.add(DeliveryTTL - time.Second)
	if _, err := s.m.SubmitEPO(ctx, s.sign(echeck.NewGoodsEPO(s.customerPub(), q2, d2, s.clock.now().Add(time.Hour)))); err != nil {
		t.Fatalf("an EPO within DeliveryTTL of its delivery: %v", err)
	}
	s.clock.add(2 * time.Second)
	before := s.bankc.submits.Load()
	if _, err := s.m.SubmitEPO(ctx, s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(time.Hour)))); !errors.Is(err, echeck.ErrExpired) {
		t.Fatalf("an EPO past DeliveryTTL: %v, want echeck.ErrExpired", err)
	}
	if s.bankc.submits.Load() != before || s.hasEndorsedMark(d.EPOID) {
		t.Fatal("an EPO past DeliveryTTL was endorsed")
	}
}

// TestReconcileSettlesPastTheResubmissionRate: the bank charges a
// re-submission of a decided order to a rate of its merchant and customer
// together, and the till forwards every re-submission it is sent, so the
// customer (or anyone holding one of its orders) can use that rate up. The
// till's own recovery of another of that customer's orders, whose answer
// was lost, must not wait on it: refused past that rate, Reconcile asks
// the bank's record by status query (the merchant's own rate) and settles
// the sale. It did not: the refusal is not definitive, so the mark stayed,
// and the sale was never settled while the rate was kept used up.
func TestReconcileSettlesPastTheResubmissionRate(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	s.bank.LimitAccounts(bank.NewRateLimiter(1, 2, 100)) // the clock stands still: no token comes back
	_, q, d := s.offer("film")
	paid := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute)))
	if _, err := s.m.SubmitEPO(ctx, paid); err != nil {
		t.Fatal(err)
	}
	_, q, d = s.offer("song")
	lost := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute)))
	s.bankc.loseAnswers.Store(true)
	if _, err := s.m.SubmitEPO(ctx, lost); err == nil {
		t.Fatal("answered")
	}
	s.bankc.loseAnswers.Store(false)
	refused := false
	for range 10 {
		_, err := s.m.SubmitEPO(ctx, paid)
		if status.Code(err) == codes.ResourceExhausted {
			refused = true
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if !refused {
		t.Fatal("re-submissions of a decided order never refused")
	}
	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatalf("Reconcile, the re-submission rate used up: %v", err)
	}
	sl, err := s.m.loadSale(d.EPOID)
	if err != nil || sl.Receipt == nil || s.hasEndorsedMark(d.EPOID) {
		t.Fatalf("after Reconcile: receipt stored %v, marked %v (%v); want settled", sl != nil && sl.Receipt != nil, s.hasEndorsedMark(d.EPOID), err)
	}
	if s.balance(s.account) != 850 {
		t.Fatalf("merchant balance %d, want both orders paid once", s.balance(s.account))
	}
}
