package wallet_test

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestRevealedByAnOlderBuildKeptApart: coins two refused payments revealed
// under a build that did not record by what (f2d10d2, before 3303a69)
// carry no Payment. A refresh swaps each alone, never together: that would
// tell the bank that one payer made both refused payments.
func TestRevealedByAnOlderBuildKeptApart(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, b := copiedWallet(t, f, "EUR:0.15") // 0.01 + 0.02 + 0.04 + 0.08
	r := refuseTwice(t, f, a, b, noSwaps{BankClient: f.bankc}, noSwaps{BankClient: f.bankc})
	wantBalance(t, a, "after both refusals", "EUR:0.10", "EUR:0.10")
	if err := wallet.ForgetRevealedBy(a); err != nil { // as the older build stored them
		t.Fatal(err)
	}
	var swaps []*ecash.SwapRequest
	if _, err := a.RefreshCoins(ctx, &swapSpy{BankClient: f.bankc, got: &swaps}, 0); err != nil {
		t.Fatal(err)
	}
	// The check below means something only if the refresh swapped them.
	if bal, err := a.Balance(); err != nil || !bal.Revealed.IsZero() || len(swaps) < 2 {
		t.Fatalf("after the refresh: %d swaps, revealed %s (%v); want each coin swapped", len(swaps), bal.Revealed, err)
	}
	r.noSwapLinks(t, swaps)
}

// TestRevealedCoinsSwappedTogetherWhenNotAlone: a bank whose smallest coin
// is EUR:0.02 and whose swap fee is EUR:0.01 a coin. A refused payment
// reveals a 0.02 and a 0.04: alone they buy 0.01 and 0.03, which no coins
// make, but together 0.04, one coin. They are swapped together (one payment
// revealed both): the wallet never pays with a revealed coin, so
// value it neither swapped nor reported was lost without a word.
func TestRevealedCoinsSwappedTogetherWhenNotAlone(t *testing.T) {
	ctx := context.Background()
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	var specs []bank.DenomSpec
	for v := uint64(2); v <= 512; v *= 2 {
		c := ecash.CipherRSA
		if v < 100 {
			c = ecash.CipherCS
		}
		specs = append(specs, bank.DenomSpec{Value: eur(v), Cipher: c, Fees: ecash.Fees{Swap: eur(1)}})
	}
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, time.Now().Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureWith(t, k, time.Now)
	// A revealed coin no swap can take, not even with the others of its
	// payment, is reported stranded rather than kept quiet: a 0.02 alone
	// buys 0.01.
	{
		g := newFixtureWith(t, k, time.Now)
		a, b := copiedWallet(t, g, "EUR:0.10") // 0.02 + 0.08
		o1, _ := g.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.08"), "one", 0)
		if _, err := b.Pay(ctx, g.bankc, g.shop, "shop", o1.ID, nil); err != nil {
			t.Fatal(err)
		}
		o2, _ := g.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.10"), "two", 0)
		if _, err := a.Pay(ctx, g.bankc, g.shop, "shop", o2.ID, nil); !errors.Is(err, ecash.ErrDoubleSpend) {
			t.Fatalf("paying with a coin the copy spent: %v", err)
		}
		res, err := a.RefreshCoins(ctx, g.bankc, 0)
		if err != nil || res.Stranded.String() != "EUR:0.02" {
			t.Fatalf("a revealed coin no swap can take: %+v, %v; want EUR:0.02 stranded", res, err)
		}
	}
	a, b := copiedWallet(t, f, "EUR:0.14") // 0.02 + 0.04 + 0.08
	o1, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.08"), "one", 0)
	if _, err := b.Pay(ctx, f.bankc, f.shop, "shop", o1.ID, nil); err != nil {
		t.Fatal(err)
	}
	o2, _ := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:0.14"), "two", 0)
	if _, err := a.Pay(ctx, f.bankc, f.shop, "shop", o2.ID, nil); !errors.Is(err, ecash.ErrDoubleSpend) {
		t.Fatalf("paying with a coin the copy spent: %v", err)
	}
	res, err := a.RefreshCoins(ctx, f.bankc, 0)
	if err != nil {
		t.Fatal(err)
	}
	bal, err := a.Balance()
	if err != nil {
		t.Fatal(err)
	}
	// Swapped when the payment failed, the bank at hand, for 0.04 after
	// two fees of 0.01; the refresh finds nothing left to do.
	if !bal.Revealed.IsZero() || bal.Fresh.String() != "EUR:0.04" || !res.Stranded.IsZero() {
		t.Fatalf("after refresh: fresh %s, revealed %s, renewed %s, stranded %s, errors %v; want the revealed 0.06 swapped for 0.04", bal.Fresh, bal.Revealed, res.Renewed, res.Stranded, res.Errors)
	}
	f.checkConservation(t, a)
}

// TestPaymentOfALongRequestReleasedAfterTheBound: a payment stored before
// the lifetime bound, for a request living a year, whose merchant never
// deposited it. The bank refuses any new deposit of such a request past
// the bound (CheckLifetime), so Recover releases its coins once the bound
// and the skews have passed, not at the request's own expiry a year on:
// the freeze the bound was made to end.
func TestPaymentOfALongRequestReleasedAfterTheBound(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	f := newFixtureWith(t, keys(t), clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:1.00", "EUR:0.03")
	if err := wallet.StoreOldPayment(ctx, w, f.bankc, ecash.MustParseAmount("EUR:0.03"), 365*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	clk.add(ecash.MaxPaymentLifetime + time.Hour)
	if _, err := w.Recover(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if !bal.Pending.IsZero() {
		t.Fatalf("31 days on, %s stays pending in a payment the bank can never take (fresh %s)", bal.Pending, bal.Fresh)
	}
}
