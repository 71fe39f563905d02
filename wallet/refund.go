package wallet

import (
	"context"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// A merchant's refund gives value back to the coins of a payment (see
// ecash.RefundRequest). The wallet learns of it by asking the bank, one
// payment at a time, which of that payment's coins have refund credit —
// the bank already knows those coins belong together, so asking links
// nothing new — and spends the credit in a swap for fresh coins.

// RefundsResult is what CollectRefunds found and swapped.
type RefundsResult struct {
	Payments int          // payments with refund credit
	Coins    int          // coins whose credit was swapped
	Value    ecash.Amount // value of the fresh coins
}

// CollectRefunds asks the bank about every payment the wallet has a
// receipt for (a restore stores those of payments refunded since) and
// swaps all refund credit it finds into fresh coins.
func (w *Wallet) CollectRefunds(ctx context.Context, bank pb.BankClient) (*RefundsResult, error) {
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	if err := w.recoverSwaps(ctx, bank, ks); err != nil {
		return nil, err
	}
	receipts, err := w.receipts()
	if err != nil {
		return nil, err
	}
	res := &RefundsResult{Value: ecash.Amount{Currency: ks.Currency}}
	for _, r := range receipts {
		coins, credits, err := w.refundCredits(ctx, bank, r.Coins)
		if err != nil {
			return res, err
		}
		if len(coins) == 0 {
			continue
		}
		if err := w.checkRefunds(ctx, bank, ks, r.PaymentHash, coins, credits); err != nil {
			return res, err
		}
		total := ecash.Amount{Currency: ks.Currency}
		for _, c := range credits {
			if total, err = total.Add(c); err != nil {
				return res, err
			}
		}
		outputs, err := split(total, ks, w.now())
		if err != nil {
			return res, err
		}
		if _, err := w.swapValues(ctx, bank, ks, coins, credits, outputs); err != nil {
			return res, fmt.Errorf("wallet: swapping the refund of payment %x: %w", r.PaymentHash[:8], err)
		}
		res.Payments++
		res.Coins += len(coins)
		if res.Value, err = res.Value.Add(total); err != nil {
			return res, err
		}
	}
	return res, nil
}

// refundCredits returns the coins of ids that the wallet spent and that
// have refund credit at the bank, with their credit.
func (w *Wallet) refundCredits(ctx context.Context, bank pb.BankClient, ids []ecash.Hash) ([]*coinRecord, []ecash.Amount, error) {
	resp, err := anonymousCall(ctx, w, bank, func(bank pb.BankClient) (*pb.CoinsSpentResponse, error) {
		return bank.CoinsSpent(ctx, &pb.CoinsSpentRequest{CoinIds: hashBytes(ids)})
	})
	if err != nil {
		return nil, nil, err
	}
	if len(resp.RefundCredit) != len(ids) {
		return nil, nil, fmt.Errorf("wallet: the bank answered %d refund credits for %d coins", len(resp.RefundCredit), len(ids))
	}
	var (
		coins   []*coinRecord
		credits []ecash.Amount
	)
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, id := range ids {
		credit := resp.RefundCredit[i]
		if credit == 0 {
			continue
		}
		c, err := w.coin(id)
		if err != nil {
			return nil, nil, err
		}
		if c.State != CoinSpent || credit > c.Value.Value {
			return nil, nil, fmt.Errorf("wallet: the bank claims %d of refund credit on coin %x worth %s", credit, id[:8], c.Value)
		}
		coins = append(coins, c)
		credits = append(credits, ecash.Amount{Currency: c.Value.Currency, Value: credit})
	}
	return coins, credits, nil
}

// checkRefunds fetches the bank's signed receipts of the payment's refunds,
// records them in the transcript, and checks that each credit the bank
// claims is backed by them: a coin's credit is at most what the receipts
// restored to it.
func (w *Wallet) checkRefunds(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, payment ecash.Hash, coins []*coinRecord, credits []ecash.Amount) error {
	resp, err := anonymousCall(ctx, w, bank, func(bank pb.BankClient) (*pb.RefundReceiptsResponse, error) {
		return bank.RefundReceipts(ctx, &pb.RefundReceiptsRequest{PaymentHash: payment[:]})
	})
	if err != nil {
		return err
	}
	restored := map[ecash.Hash]uint64{}
	for _, raw := range resp.Receipts {
		rc, err := ecash.DecodeRefundReceipt(raw)
		if err != nil {
			return fmt.Errorf("wallet: the bank's refund receipt: %w", err)
		}
		if err := w.verifyBank(ctx, bank, ks, func(ks *ecash.KeySet) error { return rc.Verify(ks, nil) }); err != nil {
			return fmt.Errorf("wallet: the bank's refund receipt: %w", err)
		}
		if rc.PaymentHash != payment {
			return fmt.Errorf("wallet: the bank answered a refund receipt of another payment")
		}
		w.tr.Record(w.now(), "refund-receipt", raw, "")
		for _, c := range rc.Coins {
			restored[c.Coin] += c.Value.Value
		}
	}
	for i, c := range coins {
		if credits[i].Value > restored[c.Coin.ID()] {
			return fmt.Errorf("wallet: the bank claims %s of refund credit on coin %x, its receipts restore %d", credits[i], c.Coin.ID().String()[:16], restored[c.Coin.ID()])
		}
	}
	return nil
}

// receipts returns the deposit receipts of the wallet's settled payments,
// and of the refunded payments a restore found (once each).
func (w *Wallet) receipts() ([]*ecash.DepositReceipt, error) {
	var out []*ecash.DepositReceipt
	seen := map[ecash.Hash]bool{}
	for _, prefix := range []string{"r/", "q/"} {
		it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
		if err != nil {
			return nil, err
		}
		for it.First(); it.Valid(); it.Next() {
			r, err := ecash.DecodeDepositReceipt(it.Value())
			if err != nil {
				it.Close()
				return nil, fmt.Errorf("wallet: corrupt stored receipt: %w", err)
			}
			if !seen[r.PaymentHash] {
				seen[r.PaymentHash] = true
				out = append(out, r)
			}
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return nil, err
		}
	}
	return out, nil
}
