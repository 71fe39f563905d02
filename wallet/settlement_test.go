package wallet_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	"github.com/blindbank/blindbank/merchant"
)

// TestSettlement: a merchant paid in e-cash is paid out; the bank's signed
// statement of the period matches the merchant's receipts; a statement of a
// period that leaves a receipt out, or of another account, is refused.
func TestSettlement(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := newWallet(t, f, "EUR:10.00", "EUR:5.12")
	start := time.Now().Add(-time.Minute)
	var orders []string
	for _, amount := range []string{"EUR:1.00", "EUR:0.25"} {
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount(amount), "settled", 0)
		if err != nil {
			t.Fatal(err)
		}
		orders = append(orders, o.ID)
		if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	bal, err := f.bank.Payout(ctx, f.shopAcct, ecash.MustParseAmount("EUR:1.20"), "settlement", "wire-1")
	if err != nil || bal.String() != "EUR:0.05" {
		t.Fatalf("payout: %s, %v", bal, err)
	}
	end := time.Now().Add(time.Minute)
	st, err := f.bank.Settlement(ctx, f.shopAcct, start, end)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := f.merchant.VerifySettlement(ctx, st.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deposits != 2 || rep.Deposited.String() != "EUR:1.25" || rep.PaidOut.String() != "EUR:1.20" || len(rep.Unmatched) != 0 {
		t.Fatalf("report %+v", rep)
	}
	f.checkConservation(t, w)

	// A deposit made just before the period's end can be posted just
	// after it (its commit waited behind a later-stamped one): the period
	// up to just after the second receipt, without its line, is what the
	// bank signs then. It is reported late, not missing.
	var second *ecash.DepositReceipt
	for _, o := range orders {
		rec, err := f.merchant.Order(o)
		if err != nil {
			t.Fatal(err)
		}
		if r, err := ecash.DecodeDepositReceipt(rec.Receipt); err != nil {
			t.Fatal(err)
		} else if second == nil || r.DepositedAt.After(second.DepositedAt) {
			second = r
		}
	}
	cut := *st
	cut.To = second.DepositedAt.Add(time.Millisecond)
	cut.Lines = nil
	for _, l := range st.Lines {
		if l.PostedAt.Before(second.DepositedAt) {
			cut.Lines = append(cut.Lines, l)
		}
	}
	cut.Sign(f.bank.Keys().Signing)
	late, err := f.merchant.VerifySettlement(ctx, cut.Encode())
	if err != nil {
		t.Fatalf("a deposit posted just after the period: %v", err)
	}
	if late.Deposits != 1 || len(late.Late) != 1 || late.Late[0] != orders[1] {
		t.Errorf("report %+v, want one deposit matched and order %s late", late, orders[1])
	}
	// The next statement must hold it: a bank cannot drop it by starting
	// that one after it. With it, the mark is cleared, and a later
	// statement without it (rightly) passes.
	next := func(from time.Time, keep func(echeck.StatementLine) bool) []byte {
		n := *st
		n.From, n.Lines = from, nil
		for _, l := range st.Lines {
			if !l.PostedAt.Before(from) && keep(l) {
				n.Lines = append(n.Lines, l)
			}
		}
		if len(n.Lines) > 0 {
			n.Opening = n.Lines[0].Balance - n.Lines[0].Amount
		}
		for i, bal := range n.Lines {
			if i > 0 {
				n.Lines[i].Balance = n.Lines[i-1].Balance + bal.Amount
			}
		}
		n.Sign(f.bank.Keys().Signing)
		return n.Encode()
	}
	hidden := func(l echeck.StatementLine) bool { return l.Memo != "payment "+second.PaymentHash.String() }
	if _, err := f.merchant.VerifySettlement(ctx, next(cut.To, hidden)); !errors.Is(err, merchant.ErrSettlement) {
		t.Errorf("the next statement without the late deposit: %v, want ErrSettlement", err)
	}
	if _, err := f.merchant.VerifySettlement(ctx, next(cut.To.Add(time.Second), hidden)); !errors.Is(err, merchant.ErrSettlement) {
		t.Errorf("a later statement without the late deposit: %v, want ErrSettlement", err)
	}
	if rep, err := f.merchant.VerifySettlement(ctx, next(second.DepositedAt.Add(-time.Second), func(echeck.StatementLine) bool { return true })); err != nil || rep.Deposits == 0 {
		t.Errorf("the next statement with the late deposit: %+v, %v", rep, err)
	}
	if _, err := f.merchant.VerifySettlement(ctx, next(end, hidden)); err != nil {
		t.Errorf("a statement after the late deposit was settled: %v", err)
	}

	// A period that ends before the payments: the receipts are missing.
	early, err := f.bank.Settlement(ctx, f.shopAcct, start.Add(-time.Hour), start)
	if err != nil {
		t.Fatal(err)
	}
	early.To = end // claims the whole period; re-signed by the bank's key
	early.Sign(f.bank.Keys().Signing)
	if _, err := f.merchant.VerifySettlement(ctx, early.Encode()); !errors.Is(err, merchant.ErrSettlement) {
		t.Errorf("statement missing the deposits: %v, want ErrSettlement", err)
	}
	// Another account's statement.
	other, err := f.bank.Settlement(ctx, f.shopAcct+1, start, end)
	if err == nil {
		if _, err := f.merchant.VerifySettlement(ctx, other.Encode()); !errors.Is(err, merchant.ErrSettlement) {
			t.Errorf("another account's statement: %v, want ErrSettlement", err)
		}
	}
	// A payout beyond the balance moves nothing.
	if _, err := f.bank.Payout(ctx, f.shopAcct, ecash.MustParseAmount("EUR:1.00"), "", "wire-2"); err == nil {
		t.Error("payout beyond the balance succeeded")
	}
	if got := f.balance(t, f.shopAcct); got != 5 {
		t.Errorf("merchant balance %d, want 5", got)
	}
}
