package wallet_test

import (
	"context"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestBalanceRevokedPastDeadlineStaysFresh: coins of a revoked
// denomination stay in Fresh (Recoup pays them back; the bank's recoup has
// no deadline), also past their deposit deadline: a revoked coin past it
// was counted Expired, "worth nothing", while Recoup still paid it back.
func TestBalanceRevokedPastDeadlineStaysFresh(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	k := scheduleKeys(t, clk.now(), 40*time.Hour)
	f := newFixtureWith(t, k, clk.now)
	w := f.walletWithCoins(t, wallet.Options{Now: clk.now}, "EUR:1.00", "EUR:0.01")
	kf := k
	f.bank.SetKeyFileEditor(func(change func(*bank.Keys) error) error {
		next := *kf
		next.Denoms = append([]bank.DenomKey(nil), kf.Denoms...)
		if err := change(&next); err != nil {
			return err
		}
		kf = &next
		return nil
	})
	var coin *ecash.Coin
	ks, _ := w.KeySet()
	for _, d := range ks.Denominations {
		if d.Value.Value == 1 && d.CanWithdraw(clk.now()) == nil {
			if _, err := f.bank.RevokeDenomination(ctx, d.ID.String()); err != nil {
				t.Fatal(err)
			}
			coin = &ecash.Coin{Denom: d.ID}
		}
	}
	if coin == nil {
		t.Fatal("no denomination of EUR:0.01")
	}
	clk.add(31 * time.Hour)
	if _, err := w.RefreshKeys(ctx, f.bankc); err != nil {
		t.Fatal(err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("balance: fresh %s, expired %s (%d coins)", bal.Fresh, bal.Expired, bal.ExpiredCoins)
	rep, err := w.Recoup(ctx, f.bankc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("recoup: credited %s, reissued %s, errors %v", rep.Credited, rep.Reissued, rep.Errors)
	if bal.Fresh.Value != 1 {
		t.Errorf("Balance counts %s fresh, want the revoked EUR:0.01 coin in it", bal.Fresh)
	}
	if bal.ExpiredCoins > 0 && !rep.Credited.IsZero() {
		t.Fatalf("Balance called %s expired, worth nothing; Recoup then paid %s back for it", bal.Expired, rep.Credited)
	}
}
