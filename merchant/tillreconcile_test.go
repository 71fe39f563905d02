package merchant

import (
	"context"
	"testing"
	"time"

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
// followed is deleted once no EPO for it can be valid (the longest EPO
// lifetime and the skew after its EPOID's time), and not before; a sale
// that was endorsed is kept.
func TestReconcilePrunesDeliveriesNeverPaid(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	_, _, unpaid := s.offer("song")
	_, q, paid := s.offer("film")
	if _, err := s.m.SubmitEPO(ctx, s.sign(echeck.NewGoodsEPO(s.customerPub(), q, paid, s.clock.now().Add(10*time.Minute)))); err != nil {
		t.Fatal(err)
	}
	s.clock.add(echeck.MaxEPOLifetime + ecash.MaxClockSkew - time.Second)
	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.loadSale(unpaid.EPOID); err != nil {
		t.Fatalf("a delivery that could still be paid for: %v", err)
	}
	s.clock.add(2 * time.Second)
	if _, err := s.m.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.m.loadSale(unpaid.EPOID); err != ErrNoSale {
		t.Fatalf("a delivery that can no longer be paid for: %v, want deleted", err)
	}
	if sl, err := s.m.loadSale(paid.EPOID); err != nil || sl.Receipt == nil {
		t.Fatalf("the paid sale: %v; want kept with its receipt", err)
	}
}
