package wallet_test

import (
	"context"
	"errors"
	"slices"
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
	for _, amount := range []string{"EUR:1.00", "EUR:0.25"} {
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount(amount), "settled", 0)
		if err != nil {
			t.Fatal(err)
		}
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

// A deposit made just before a period's end can be posted just after it
// (its commit waited behind a later-stamped one): reported late, not
// missing. The merchant remembers which deposits checked statements held,
// and reports the earlier ones that none did, so a bank cannot leave a
// deposit between two statements; an honest bank's statements, checked
// again or in another order, draw no such report.
func TestSettlementCoverage(t *testing.T) {
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
	end := time.Now().Add(time.Minute)
	st, err := f.bank.Settlement(ctx, f.shopAcct, start, end)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := f.merchant.Order(orders[1])
	if err != nil {
		t.Fatal(err)
	}
	second, err := ecash.DecodeDepositReceipt(rec.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	// statement is st over [from, to), keeping the lines keep keeps, with
	// the balances made up again, signed by the bank's key: what a bank
	// would sign.
	statement := func(from, to time.Time, keep func(echeck.StatementLine) bool) []byte {
		n := *st
		n.From, n.To, n.Lines = from, to, nil
		for _, l := range st.Lines {
			if !l.PostedAt.Before(from) && l.PostedAt.Before(to) && keep(l) {
				n.Lines = append(n.Lines, l)
			}
		}
		for i := range n.Lines {
			if i == 0 {
				n.Opening = n.Lines[0].Balance - n.Lines[0].Amount
			} else {
				n.Lines[i].Balance = n.Lines[i-1].Balance + n.Lines[i].Amount
			}
		}
		n.Sign(f.bank.Keys().Signing)
		return n.Encode()
	}
	all := func(echeck.StatementLine) bool { return true }
	hidden := func(l echeck.StatementLine) bool { return l.Memo != "payment "+second.PaymentHash.String() }
	check := func(name string, raw []byte, late, unsettled []string) {
		t.Helper()
		rep, err := f.merchant.VerifySettlement(ctx, raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(rep.Late, late) || !slices.Equal(rep.Unsettled, unsettled) {
			t.Errorf("%s: late %v, unsettled %v; want %v, %v", name, rep.Late, rep.Unsettled, late, unsettled)
		}
	}
	cut := second.DepositedAt.Add(time.Millisecond)
	// The period ends just after the second deposit, which it lacks.
	check("posted after the end", statement(start, cut, hidden), []string{orders[1]}, nil)
	check("the same again", statement(start, cut, hidden), []string{orders[1]}, nil)
	// The next statements leave it out: it is on none, wherever they start.
	check("the next without it", statement(cut, end, hidden), nil, []string{orders[1]})
	check("a gap, then one without it", statement(cut.Add(time.Second), end, hidden), nil, []string{orders[1]})
	// One holds it: settled, and no later statement needs it.
	check("one that holds it", statement(second.DepositedAt.Add(-time.Second), end, all), nil, nil)
	check("after it", statement(end, end.Add(time.Minute), all), nil, nil)
	check("the first again", statement(start, cut, hidden), nil, nil) // no longer late: settled since
	check("after it again", statement(end, end.Add(time.Minute), all), nil, nil)
}

// The same gap with the statements checked newest first, and a deposit
// whose receipt the merchant recorded only after the statement holding
// it was checked (its answer lost, Reconcile later): the first is found
// unsettled, the second is not.
func TestSettlementCoverageInAnyOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	w, _ := newWallet(t, f, "EUR:10.00", "EUR:5.12")
	start := time.Now().Add(-time.Minute)
	o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "settled", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil); err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(time.Minute)
	st, err := f.bank.Settlement(ctx, f.shopAcct, start, end)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := f.merchant.Order(o.ID)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ecash.DecodeDepositReceipt(rec.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	statement := func(from, to time.Time) []byte {
		n := *st
		n.From, n.To, n.Lines, n.Opening = from, to, nil, 0
		n.Sign(f.bank.Keys().Signing)
		return n.Encode()
	}
	// Newest first: [d+1ms, end), then [start, d).
	for _, s := range [][]byte{statement(d.DepositedAt.Add(time.Millisecond), end), statement(start, d.DepositedAt)} {
		if _, err := f.merchant.VerifySettlement(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := f.merchant.VerifySettlement(ctx, statement(start, d.DepositedAt))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Unsettled, []string{o.ID}) {
		t.Errorf("a deposit between two statements checked newest first: unsettled %v, want %s", rep.Unsettled, o.ID)
	}
	// The honest statement, checked: the deposit is held, nothing else is due.
	if rep, err := f.merchant.VerifySettlement(ctx, st.Encode()); err != nil || len(rep.Unsettled) != 0 {
		t.Fatalf("the whole period: %+v, %v", rep, err)
	}

	// A payment the merchant missed (the bank's answer and then the bank
	// lost to it): the statement holding it is checked before the
	// merchant has its receipt, then Reconcile records it. The next
	// statement does not report it.
	link := f.linkStatus()
	paidFrom := time.Now().Add(-time.Second)
	missed := f.missedPayment(t, w, link)
	f.toBank.BankClient = f.bankc
	mid := time.Now().Add(time.Minute)
	held, err := f.bank.Settlement(ctx, f.shopAcct, paidFrom, mid)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := f.merchant.VerifySettlement(ctx, held.Encode()); err != nil || len(rep.Unmatched) != 1 {
		t.Fatalf("the statement holding the missed payment: %+v, %v; want it unmatched", rep, err)
	}
	if n, err := f.merchant.Reconcile(ctx); n != 1 || err != nil {
		t.Fatalf("reconcile: %d, %v", n, err)
	}
	after, err := f.bank.Settlement(ctx, f.shopAcct, mid, mid.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := f.merchant.VerifySettlement(ctx, after.Encode()); err != nil || len(rep.Unsettled) != 0 {
		t.Errorf("the next statement: %+v, %v; want order %s settled by the one before", rep, err, missed)
	}
}
