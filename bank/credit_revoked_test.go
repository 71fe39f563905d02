package bank_test

import (
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// TestRefundCreditOutlivesRevocation: refund credit on a coin is the
// bank's record of money it owes, and a revocation of the coin's
// denomination does not take it away. Credit given before the revocation,
// and credit given after it, is spent in a swap for coins of a live
// denomination; the coin's own value, spent, is not (a swap of a fresh
// coin of the revoked denomination is still refused). Money is conserved
// and the log passes an audit from the start.
func TestRefundCreditOutlivesRevocation(t *testing.T) {
	for _, when := range []string{"refunded before the revocation", "refunded after it"} {
		t.Run(when, func(t *testing.T) {
			e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
			ctx := t.Context()
			shop, mkey, payment, coin, coinKey := paidShop(t, e)
			refund := func() {
				t.Helper()
				if _, _, err := e.b.Refund(ctx, refundRequest(shop, mkey, payment, e.dear.Value, e.now)); err != nil {
					t.Fatalf("refund: %v", err)
				}
			}
			if when == "refunded before the revocation" {
				refund()
			}
			fresh, ps := e.coin(7, e.dear) // withdrawn before the revocation, never spent
			dear := e.revokeDear()
			if when == "refunded after it" {
				refund()
			}
			if _, credit, _, err := e.b.CoinsSpent(ctx, []ecash.Hash{coin.ID()}); err != nil || credit[0] != dear.Value.Value {
				t.Fatalf("the refunded coin's credit: %v, %v; want %d", credit, err, dear.Value.Value)
			}

			req, err := ecash.NewSwapRequest([]ecash.Coin{coin}, []ed25519.PrivateKey{coinKey}, []ecash.Amount{dear.Value}, e.outputs(100, 2), e.now)
			if err != nil {
				t.Fatal(err)
			}
			req.SignCredit(0, coinKey, dear.Value)
			sigs, err := e.b.Swap(ctx, req.Body())
			if err != nil || len(sigs) != 2 {
				t.Fatalf("the credit of a coin of a revoked denomination swapped: %d signatures, %v", len(sigs), err)
			}
			if _, credit, _, err := e.b.CoinsSpent(ctx, []ecash.Hash{coin.ID()}); err != nil || credit[0] != 0 {
				t.Fatalf("the credit after its swap: %v, %v; want 0", credit, err)
			}

			// A fresh coin of the revoked denomination, no credit: refused
			// (it is recouped).
			if _, err := e.swap([]ecash.Coin{fresh}, []ed25519.PrivateKey{ps.CoinKey}, []ecash.Amount{dear.Value}, e.outputs(200, 2)); !errors.Is(err, ecash.ErrDenominationRevoked) {
				t.Fatalf("a fresh coin of a revoked denomination swapped: %v", err)
			}

			totals, err := e.s.Totals(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var sum int64
			for _, v := range totals {
				sum += v
			}
			if sum != 0 || totals[shop] != 0 {
				t.Fatalf("totals %v: sum %d, merchant %d; want 0 and 0", totals, sum, totals[shop])
			}
			e.audit()
		})
	}
}

// TestRecoupIsNoPayment: a recoup of a withdrawn coin is kept as a deposit
// into the coin's account under the recoup's hash, but it is no payment:
// its account cannot refund it to give the recouped coin credit (which a
// swap would then spend too), and the log stays one an auditor passes.
func TestRecoupIsNoPayment(t *testing.T) {
	e := newRecoupEnv(t, ecash.CipherCS, 2, 100, nil)
	ctx := t.Context()
	coin, ps := e.coin(0, e.dear)
	dear := e.revokeDear()
	r, err := e.b.Recoup(ctx, ecash.NewRecoupRequest(coin, ps.CoinKey, dear.Value, ps.BlindSeed, nil, e.now).Encode())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.b.Refund(ctx, refundRequest(e.acct, e.acctKey, r.Request, dear.Value, e.now)); !errors.Is(err, bank.ErrNotDeposited) {
		t.Fatalf("a refund of a recoup: %v, want ErrNotDeposited", err)
	}
	if _, credit, _, err := e.b.CoinsSpent(ctx, []ecash.Hash{coin.ID()}); err != nil || credit[0] != 0 {
		t.Fatalf("the recouped coin's credit: %v, %v; want none", credit, err)
	}
	e.audit()
}

// audit replays the bank's whole log through an auditor.
func (e *recoupEnv) audit() {
	e.t.Helper()
	ctx := e.t.Context()
	n, err := e.s.LogSize(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	entries, err := e.s.LogEntries(ctx, 0, int(n), 1<<30)
	if err != nil {
		e.t.Fatal(err)
	}
	a := auditlog.NewAuditor(e.keys.MasterPub)
	for i, b := range entries {
		if _, err := a.Apply(b); err != nil {
			e.t.Fatalf("audit of entry %d: %v", i, err)
		}
	}
}

// TestRecoupHeldPastCommitDelay: a recoup carries no date, as a swap does
// not; the store commits one only within MaxCommitDelay of when the
// replica took it. Stalled past that between the bank's checks and the
// commit, the recoup of a withdrawn coin (a credit to its account) and
// the re-issue of a coin from a swap are refused (ErrTooLate), and the
// coin stays unspent.
func TestRecoupHeldPastCommitDelay(t *testing.T) {
	for _, tc := range []struct {
		name, kind string
		swapped    bool
	}{{"credit", "deposit", false}, {"reissue", "swap", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newRecoupEnv(t, ecash.CipherRSA, 4, 4, nil)
			ctx := t.Context()
			coin, ps := e.coin(0, e.dear)
			var outs []ecash.Planchet
			if tc.swapped {
				p, pps, st := e.planchet(1, e.dear.Denomination, e.dear.Private)
				sigs, err := e.swap([]ecash.Coin{coin}, []ed25519.PrivateKey{ps.CoinKey}, []ecash.Amount{e.dear.Value}, []ecash.Planchet{p})
				if err != nil {
					t.Fatal(err)
				}
				sig, err := st.Unblind(sigs[0])
				if err != nil {
					t.Fatal(err)
				}
				coin, ps = ecash.Coin{Denom: e.dear.ID, Pub: pps.CoinPub(), Sig: sig}, pps
				outs = e.outputs(10, 4)
			}
			dear := e.revokeDear()
			balance := e.balance()
			body := ecash.NewRecoupRequest(coin, ps.CoinKey, dear.Value, ps.BlindSeed, outs, e.now).Encode()
			err := e.stalled(tc.kind, e.now.Add(bank.MaxCommitDelay+time.Second), func(b *bank.Bank) error {
				_, err := b.Recoup(ctx, body)
				return err
			})
			if !errors.Is(err, bank.ErrTooLate) {
				t.Fatalf("a recoup committed past the commit delay: %v; want ErrTooLate", err)
			}
			if spent, err := e.s.Spent(ctx, []ecash.Hash{coin.ID()}); err != nil || spent[0] {
				t.Errorf("the coin spent %v, %v; want it unspent", spent, err)
			}
			if e.balance() != balance {
				t.Errorf("balance %d → %d; want nothing credited", balance, e.balance())
			}
		})
	}
}
