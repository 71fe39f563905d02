package wallet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// RecoupReport is what Recoup did.
type RecoupReport struct {
	Credited ecash.Amount // value credited to the wallet's account (withdrawn coins)
	Reissued ecash.Amount // value re-issued as new coins (coins that came from swaps)
	Coins    []ecash.Coin // the new coins
	Spent    int          // revoked coins the bank already held spent
	Errors   []error      // coins not recouped, each a *RecoupError; they stay in the wallet
}

// RecoupError is a coin Recoup did not recoup, and why (Err: for instance
// ErrNoReplacementKey, or the bank's refusal). The coin stays fresh.
type RecoupError struct {
	Coin ecash.Hash
	Err  error
}

func (e *RecoupError) Error() string { return fmt.Sprintf("coin %s: %v", e.Coin.String()[:16], e.Err) }

// Unwrap returns why the coin was not recouped.
func (e *RecoupError) Unwrap() error { return e.Err }

// ErrNoReplacementKey is a recoup by re-issue (a revoked coin that came
// from a swap) that cannot be made yet: the bank has no live key issuing
// coins its value can be made of, typically because the revoked key was
// the only one of its value and the operator has not made a replacement
// ('bankd keys extend', KEYS.md §7). The coin stays fresh; Recoup again
// once the bank's key set has a replacement.
var ErrNoReplacementKey = errors.New("wallet: the bank has no key to re-issue this coin's value yet; recoup it again once the bank has made a replacement key")

// recoupTime is the time every recoup request names: fixed, so the request
// for a coin without outputs is always the same bytes (a retry after a lost
// answer or a crash is a replay the bank answers with the same receipt), and
// no request carries the wallet's clock.
var recoupTime = time.UnixMilli(0)

// Recoup recovers the value of every fresh coin of a denomination the bank
// revoked (the key set lists it). It reveals each coin's blind seed, so the
// bank finds where the coin came from: a withdrawn coin's value is credited
// to the account that withdrew it; a coin that came from a swap is re-issued
// as new coins (a second request with fresh outputs, persisted before it is
// sent, finished by Recover like a swap). Coins the bank already holds spent
// are marked spent. Recoup is idempotent.
func (w *Wallet) Recoup(ctx context.Context, bank pb.BankClient) (*RecoupReport, error) {
	ks, err := w.RefreshKeys(ctx, bank)
	if err != nil {
		return nil, err
	}
	if err := w.recoverSwaps(ctx, bank, ks); err != nil {
		return nil, err
	}
	rep := &RecoupReport{Credited: ecash.Amount{Currency: ks.Currency}, Reissued: ecash.Amount{Currency: ks.Currency}}
	var revoked []*coinRecord
	w.mu.Lock()
	err = w.eachCoin(func(c *coinRecord) error {
		if d, err := ks.Denomination(c.Coin.Denom); err == nil && d.Revoked && c.State == CoinFresh {
			revoked = append(revoked, c)
		}
		return nil
	})
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	for _, c := range revoked {
		// Each coin on a connection of its own, its re-issue too: its
		// first request names its blind seed, which ties a swapped coin
		// to the swap that made it, and must not tie it to the account or
		// to the other coins.
		if err := w.anonymously(ctx, bank, func(bank pb.BankClient) error { return w.recoupCoin(ctx, bank, ks, c, rep) }); err != nil {
			if errors.Is(err, ErrPending) || ctx.Err() != nil {
				return rep, err
			}
			rep.Errors = append(rep.Errors, &RecoupError{Coin: c.Coin.ID(), Err: err})
		}
	}
	return rep, nil
}

// recoupCoin recoups one coin: first as a withdrawn coin (credited), and,
// if the bank says it came from a swap, by re-issue.
func (w *Wallet) recoupCoin(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, c *coinRecord, rep *RecoupReport) error {
	ps, err := ecash.DerivePlanchet(w.seed, c.Index)
	if err != nil {
		return err
	}
	req := ecash.NewRecoupRequest(c.Coin, ps.CoinKey, c.Value, ps.BlindSeed, nil, recoupTime)
	w.tr.Record(w.now(), "recoup-request", req.Encode(), "")
	resp, err := bank.Recoup(ctx, &pb.RecoupRequest{Request: req.Encode()})
	switch {
	case err == nil:
		rcpt, err := ecash.DecodeDepositReceipt(resp.Receipt)
		if err == nil {
			err = w.verifyBank(ctx, bank, ks, func(ks *ecash.KeySet) error { return rcpt.Verify(ks, nil) })
		}
		if err == nil && (rcpt.PaymentHash != req.Hash() || rcpt.Total != c.Value || !slices.Equal(rcpt.Coins, []ecash.Hash{c.Coin.ID()})) {
			err = fmt.Errorf("%w: the receipt is for another recoup", ecash.ErrBadSignature)
		}
		if err != nil {
			return fmt.Errorf("wallet: the bank's recoup receipt: %w", err)
		}
		w.tr.Record(w.now(), "recoup-receipt", resp.Receipt, "")
		if err := w.markSpentCoin(c.Coin.ID()); err != nil {
			return err
		}
		rep.Credited, err = rep.Credited.Add(c.Value)
		return err
	case DoubleSpendFromError(err) != nil:
		ds := DoubleSpendFromError(err)
		if verr := w.verifyBank(ctx, bank, ks, ds.Proof.Verify); verr != nil || ds.Proof.Earlier.Coin.ID() != c.Coin.ID() {
			return fmt.Errorf("%w: recoup refused with a double-spend claim that does not hold (%v)", ErrPending, err)
		}
		rep.Spent++
		return w.markSpentCoin(c.Coin.ID())
	case recoupNeedsOutputs(err):
		coins, err := w.reissue(ctx, bank, ks, c, ps.BlindSeed, ps)
		rep.Coins = append(rep.Coins, coins...) // with ErrBadAnswer, the ones that verify
		if err != nil {
			return err
		}
		rep.Reissued, err = rep.Reissued.Add(c.Value)
		return err
	case definitive(err):
		return err
	}
	return fmt.Errorf("%w: recoup: %v", ErrPending, err)
}

// reissue recoups a coin that came from a swap for fresh coins of its
// value, on the connection its first recoup request went on.
func (w *Wallet) reissue(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, c *coinRecord, blindSeed [32]byte, ps ecash.PlanchetSecret) ([]ecash.Coin, error) {
	outputs, err := split(c.Value, ks, w.now())
	if err != nil {
		// The revoked key was this value's only one (or the others are
		// revoked too): nothing to re-issue as until the bank makes a
		// replacement. Nothing was sent; a later Recoup does it.
		return nil, fmt.Errorf("%w (none of its live keys issues coins %s can be made of)", ErrNoReplacementKey, c.Value)
	}
	return w.sendOutputsOn(ctx, bank, ks, outputs, func(fresh *planchets) (*pendingSwap, error) {
		// recoupTime too, not the wallet's clock (see pay.go): its outputs
		// make the request unique.
		req := ecash.NewRecoupRequest(c.Coin, ps.CoinKey, c.Value, blindSeed, fresh.Planchets, recoupTime)
		return &pendingSwap{Body: req.Encode(), Indices: fresh.Indices, Prepared: fresh.Prepared, Inputs: []ecash.Hash{c.Coin.ID()}, Recoup: true, blinded: fresh.blinded}, nil
	})
}

// markSpentCoin marks a fresh coin spent.
func (w *Wallet) markSpentCoin(id ecash.Hash) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, err := w.coin(id)
	if err != nil {
		return err
	}
	c.State = CoinSpent
	return w.db.Set(coinKey(id), c.encode(), pebble.Sync)
}
