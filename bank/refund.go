package bank

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// refundAttempts bounds how often Refund re-reads the coins' state when a
// concurrent refund of the same payment took the value it had allocated.
const refundAttempts = 3

// RefundWindow is how long after its date a merchant sends a refund
// request, by its own clock, and the bank takes it, by its clock, with
// ecash.MaxClockSkew more: a new request dated further back is refused
// (ErrTooOld), and the store commits one only until its date plus the
// window and the skew (RefundOp.NotAfter, ErrTooLate). So a merchant can
// tell, from the bank's receipts alone, a pending refund that will never
// commit (merchant.ErrRefundDropped).
const RefundWindow = time.Hour

// Refund applies a merchant's signed refund request (ecash.RefundRequest):
// the merchant, authenticated by its account key, gives back part or all of
// a payment it was credited and not yet paid out. The bank restores the
// amount to the payment's coins in payment order, each up to what it paid
// less earlier refunds, debits the merchant and returns its signed receipt;
// the coins' owner spends the restored value in a swap. A retry of the same
// request returns the same receipt. A new request dated more than
// ecash.MaxClockSkew ahead of the bank's clock is refused (ErrBadTimestamp),
// one dated more than RefundWindow and the skew before it too (ErrTooOld).
func (b *Bank) Refund(ctx context.Context, raw []byte) (out *ecash.RefundReceipt, stored []byte, err error) {
	req, err := ecash.DecodeRefundRequest(raw)
	if err != nil {
		return nil, nil, err
	}
	if req.Amount.Currency != b.keys.Currency {
		return nil, nil, fmt.Errorf("%w: refund in %s at a %s bank", ecash.ErrCurrencyMismatch, req.Amount.Currency, b.keys.Currency)
	}
	reqHash := req.Hash()
	recorded := func() (bool, error) {
		rec, found, err := b.store.RefundRecord(ctx, reqHash)
		if err != nil || !found {
			return false, err
		}
		if out, stored, err = decodeStoredRefund(rec); err != nil {
			return false, err
		}
		return true, nil
	}
	if found, err := recorded(); err != nil || found {
		return out, stored, err
	}
	defer fromRecord(&err, recorded)
	if _, err := b.authenticate(ctx, req.MerchantAccount, req.Body(), req.MerchantSig, "refund request"); err != nil {
		return nil, nil, err
	}
	// A new request dated ahead of the bank's clock is refused, as a
	// withdraw or payment request is (notAhead). After the record, so that
	// a retry is answered however the clocks moved since; under fromRecord
	// (deferred above), so that a retry whose original committed meanwhile
	// at a replica whose clock is further on is answered too. One still
	// committing there is not seen: the merchant keeps a refund it may have
	// sent before pending when refused so (merchant.ErrClockAhead).
	now := b.now()
	if err := notAhead("refund request", req.CreatedAt, now); err != nil {
		return nil, nil, err
	}
	if err := notTooOld("refund request", req.CreatedAt, now, RefundWindow+ecash.MaxClockSkew); err != nil {
		return nil, nil, err
	}
	_, coins, found, err := b.store.DepositRecord(ctx, req.PaymentHash)
	if err != nil {
		return nil, nil, err
	}
	if !found {
		return nil, nil, ErrNotDeposited
	}
	for attempt := 1; ; attempt++ {
		stored, err := b.refund(ctx, req, reqHash, coins)
		if errors.Is(err, ErrRefundExceeds) && attempt < refundAttempts {
			continue // a concurrent refund took some of the coins' value
		}
		if err != nil {
			return nil, nil, err
		}
		b.log.Debug("refund", "merchant", req.MerchantAccount, "amount", req.Amount.String(), "payment", req.PaymentHash.String()[:16])
		return decodeStoredRefund(stored)
	}
}

// refund allocates the request's amount over the coins from their current
// state and commits it; the store refuses the allocation if the state moved.
func (b *Bank) refund(ctx context.Context, req *ecash.RefundRequest, reqHash ecash.Hash, coins []ecash.Hash) ([]byte, error) {
	states, err := b.store.CoinStates(ctx, coins)
	if err != nil {
		return nil, err
	}
	// Each coin gets back at most what it paid the merchant: its value
	// less its deposit fee. A refund is credit that only a swap spends,
	// and a swap takes credit only within its coin's deposit window
	// (CanHoldCredit): a coin past it gets none, or the money would leave
	// the merchant and be spendable by nobody.
	now := b.now()
	caps := make([]int64, len(coins))
	keys := make([]*DenomKey, len(coins))
	dead := false
	for i, st := range states {
		dp, err := ecash.DecodeDepositPermission(st.Permission)
		if err != nil {
			return nil, fmt.Errorf("bank: stored permission of coin %x unreadable: %w", coins[i][:8], err)
		}
		// Only coins their holders paid this merchant with are refunded: a
		// recoup is kept as a deposit into the coin's account under the
		// recoup's hash, and its coin's permission names no payment.
		if dp.PaymentHash != req.PaymentHash || dp.MerchantAccount != req.MerchantAccount {
			return nil, fmt.Errorf("%w: %x is no payment to merchant %d", ErrNotDeposited, req.PaymentHash[:8], req.MerchantAccount)
		}
		// A denomination pruned from the key set is past its deposit
		// window too: its coin takes nothing (nor a refund fee).
		d, ok := b.denom(dp.Coin.Denom)
		if ok && d.CanHoldCredit(now) == nil {
			keys[i], caps[i] = d, int64(d.Net().Value)
		} else {
			dead = true
		}
	}
	alloc, err := allocateRefund(int64(req.Amount.Value), caps, states)
	if errors.Is(err, ErrRefundExceeds) && dead {
		return nil, fmt.Errorf("%w: the payment's coins past their deposit window take no refund, since their credit could not be spent", err)
	}
	if err != nil {
		return nil, err
	}
	rcpt := &ecash.RefundReceipt{
		RefundHash: reqHash, PaymentHash: req.PaymentHash, MerchantAccount: req.MerchantAccount,
		Total: req.Amount, RefundedAt: now, SignerPub: b.keySet().SigningPub,
	}
	op := RefundOp{RequestHash: reqHash, PaymentHash: req.PaymentHash, Merchant: req.MerchantAccount, Amount: int64(req.Amount.Value), Time: now,
		NotAfter: req.CreatedAt.Add(RefundWindow + ecash.MaxClockSkew)}
	logged := auditlog.Refund{Merchant: req.MerchantAccount, Amount: req.Amount, PaymentHash: req.PaymentHash, RefundHash: reqHash,
		RefundID: req.RefundID, CreatedAt: req.CreatedAt, MerchantSig: req.MerchantSig}
	for i, v := range alloc {
		if v == 0 {
			continue
		}
		value := b.Money(v)
		rcpt.Coins = append(rcpt.Coins, ecash.RefundedCoin{Coin: coins[i], Value: value})
		op.Coins = append(op.Coins, CoinRefund{ID: coins[i], Value: v, Cap: caps[i]})
		logged.Coins = append(logged.Coins, auditlog.RefundedCoin{ID: coins[i], Denom: keys[i].ID, Value: value})
	}
	// The merchant pays the refund fee of every coin the refund touches.
	fee, err := b.feeOf(keys, refundFee, func(i int) bool { return alloc[i] == 0 })
	if err != nil {
		return nil, err
	}
	rcpt.Fee, op.Fee, logged.Fee = fee, int64(fee.Value), fee
	rcpt.Sig = ecash.SignBody(b.keys.Signing, rcpt.Body())
	op.Receipt, op.Log = rcpt.Encode(), logged
	return b.store.Refund(ctx, op)
}

// allocateRefund spreads amount over the coins in payment order, each up to
// its cap less what refunds already restored to it.
func allocateRefund(amount int64, caps []int64, states []CoinState) ([]int64, error) {
	alloc := make([]int64, len(caps))
	left := amount
	for i := range caps {
		room := caps[i] - states[i].Refunded
		if room <= 0 || left == 0 {
			continue
		}
		alloc[i] = min(room, left)
		left -= alloc[i]
	}
	if left > 0 {
		return nil, fmt.Errorf("%w: %d more than the payment has left to refund", ErrRefundExceeds, left)
	}
	return alloc, nil
}

func decodeStoredRefund(stored []byte) (*ecash.RefundReceipt, []byte, error) {
	r, err := ecash.DecodeRefundReceipt(stored)
	if err != nil {
		return nil, nil, fmt.Errorf("bank: stored refund receipt unreadable: %w", err)
	}
	return r, stored, nil
}
