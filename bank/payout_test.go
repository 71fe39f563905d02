package bank_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// TestPayoutStandsWithoutItsStatement: a payout whose statement can no
// longer be made once it has committed (here its own posting pushes the
// period's start past the postings a statement reads, which the check
// before the payout could not see) is not reported as a refusal: the
// result has the new balance and the reason, and a retry with the same
// reference and a later start pays nothing more and makes the statement.
func TestPayoutStandsWithoutItsStatement(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	keys, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: []bank.DenomSpec{
		{Value: ecash.Amount{Currency: "EUR", Value: 1}, Cipher: ecash.CipherRSA},
	}}, now.Add(-time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pebblestore.Open("bank", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := bank.New(s, keys, clock, nil)
	ctx := t.Context()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	acct, err := b.OpenAccount(ctx, "shop", pub, true)
	if err != nil {
		t.Fatal(err)
	}
	eur := func(v uint64) ecash.Amount { return ecash.Amount{Currency: "EUR", Value: v} }
	// One posting before the period opens it, then two in it: with a scan
	// of three, the period's start is in reach until the payout adds one.
	for i := 0; i < 3; i++ {
		if _, err := b.Credit(ctx, acct, eur(100), "", ""); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Hour)
	}
	from := time.Unix(1_800_000_000, 0).Add(time.Minute)
	bank.SetMaxStatementScan(t, 3)
	res, err := b.PayoutSettlement(ctx, acct, eur(250), "", "wire-1", from, time.Time{})
	if err != nil {
		t.Fatalf("payout answered %v after committing", err)
	}
	if res.Balance != eur(50) || res.Statement != nil || !errors.Is(res.NoStatement, ecash.ErrMalformed) {
		t.Fatalf("balance %s, statement %v, reason %v; want EUR:0.50, none, the scan limit", res.Balance, res.Statement, res.NoStatement)
	}
	res, err = b.PayoutSettlement(ctx, acct, eur(250), "", "wire-1", from.Add(time.Hour), time.Time{})
	if err != nil || res.Balance != eur(50) || res.Statement == nil {
		t.Fatalf("the retry: %+v, %v; want the statement and nothing more paid", res, err)
	}
	if n := len(res.Statement.Lines); n != 2 { // the last credit and the payout
		t.Errorf("the statement has %d lines, want 2", n)
	}
}
