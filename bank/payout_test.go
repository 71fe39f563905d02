package bank_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// TestPayoutStandsWithoutItsStatement: a payout whose statement can no
// longer be made once it has committed (here its own posting pushes the
// period's start past the postings a statement reads, which the check
// before the payout could not see) is not reported as a refusal: the
// result has the new balance and the reason, and a retry with the same
// reference and a later start pays nothing more and makes the statement.
func TestPayoutStandsWithoutItsStatement(t *testing.T) {
	// The account's first credit, before the period, opens it; two more
	// in it: with a scan of three, the period's start is in reach until
	// the payout adds a posting.
	e := newRecoupEnv(t, ecash.CipherRSA, 2, 100, nil)
	shop := merchantAccount(t, e)
	from := e.now.Add(time.Minute)
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	if _, err := e.b.Credit(t.Context(), shop, eur(100), "", ""); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		e.now = e.now.Add(time.Hour)
		if _, err := e.b.Credit(t.Context(), shop, eur(100), "", ""); err != nil {
			t.Fatal(err)
		}
	}
	e.now = e.now.Add(time.Hour)
	bank.SetMaxStatementScan(t, 3)
	res, err := e.b.PayoutSettlement(t.Context(), shop, eur(250), "", "wire-1", from, time.Time{})
	if err != nil {
		t.Fatalf("payout answered %v after committing", err)
	}
	if res.Balance != eur(50) || res.Statement != nil || !errors.Is(res.NoStatement, ecash.ErrMalformed) {
		t.Fatalf("balance %s, statement %v, reason %v; want EUR:0.50, none, the scan limit", res.Balance, res.Statement, res.NoStatement)
	}
	res, err = e.b.PayoutSettlement(t.Context(), shop, eur(250), "", "wire-1", from.Add(time.Hour), time.Time{})
	if err != nil || res.Balance != eur(50) || res.Statement == nil {
		t.Fatalf("the retry: %+v, %v; want the statement and nothing more paid", res, err)
	}
	if n := len(res.Statement.Lines); n != 2 { // the last credit and the payout
		t.Errorf("the statement has %d lines, want 2", n)
	}
}

// TestPayoutRetryNotRefused: a payout whose own posting is the 1,024th of
// its statement's period commits, and its answer is lost; the retry with
// the same reference (which pays nothing) must not be refused as a period
// of too many postings, which bank.Definitive reads as "nothing recorded"
// and an operator would pay again under a new reference.
func TestPayoutRetryNotRefused(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherRSA, 2, 100_000, nil)
	shop := merchantAccount(t, e)
	from := e.now.Add(time.Minute)
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	e.now = from
	for i := 0; i < echeck.MaxStatementLines-1; i++ {
		e.now = e.now.Add(time.Second)
		if _, err := e.b.Credit(t.Context(), shop, eur(1), "", ""); err != nil {
			t.Fatal(err)
		}
	}
	e.now = e.now.Add(time.Second)
	res, err := e.b.PayoutSettlement(t.Context(), shop, eur(50), "", "wire-1", from, time.Time{})
	if err != nil || res.Statement == nil {
		t.Fatalf("first attempt: %+v, %v", res, err)
	}
	if n := len(res.Statement.Lines); n != echeck.MaxStatementLines {
		t.Fatalf("first statement has %d lines, want %d", n, echeck.MaxStatementLines)
	}
	bal := res.Balance

	// The answer was lost; the same request again.
	e.now = e.now.Add(time.Second)
	res, err = e.b.PayoutSettlement(t.Context(), shop, eur(50), "", "wire-1", from, time.Time{})
	if err != nil {
		st := bank.ToStatus(t.Context(), err, nil)
		t.Fatalf("retry of a committed payout refused: %v (definitive=%v); the payout of %s stands (balance %s)",
			st, bank.Definitive(st), eur(50), bal)
	}
	if res.Balance != bal {
		t.Errorf("retry balance %s, want %s (nothing more paid)", res.Balance, bal)
	}
}

// merchantAccount opens a merchant account in e's bank: payouts settle
// merchants.
func merchantAccount(t *testing.T, e *recoupEnv) uint64 {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := e.b.OpenAccount(t.Context(), "shop", key.Public().(ed25519.PublicKey), true)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPayoutOnlyOfMerchants: a payout carries no signature of the
// account's holder; a customer's balance leaves only by the holder's own
// (a withdrawal, a check). Refused, nothing paid.
func TestPayoutOnlyOfMerchants(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherRSA, 2, 100, nil)
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	if _, err := e.b.Credit(t.Context(), e.acct, eur(500), "", ""); err != nil {
		t.Fatal(err)
	}
	before := e.balance()
	if _, err := e.b.Payout(t.Context(), e.acct, eur(500), "", "to the operator"); !errors.Is(err, bank.ErrNotMerchant) {
		t.Fatalf("payout of a customer account: %v, want ErrNotMerchant", err)
	}
	if after := e.balance(); after != before {
		t.Fatalf("customer balance %d -> %d", before, after)
	}
	shop := merchantAccount(t, e)
	if _, err := e.b.Credit(t.Context(), shop, eur(500), "", ""); err != nil {
		t.Fatal(err)
	}
	if bal, err := e.b.Payout(t.Context(), shop, eur(500), "", "wire-1"); err != nil || !bal.IsZero() {
		t.Fatalf("payout of a merchant account: %v, %v", bal, err)
	}
}
