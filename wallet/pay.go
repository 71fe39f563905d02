package wallet

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// Offer is a verified payment request, shown to the user before paying,
// with the fees paying it will cost on top of its amount: the deposit fees
// of the coins that pay and, if change must be made first, the swap fee of
// the coin swapped (Change).
type Offer struct {
	Request *ecash.PaymentRequest
	Summary string
	Fee     ecash.Amount
	Change  bool
}

// Confirm decides whether to pay an offer; return nil to pay.
type Confirm func(*Offer) error

// Pay pays order orderID at a merchant: it fetches and verifies the signed
// payment request (merchant signature, summary hash, bank, currency, expiry),
// asks confirm, picks coins that sum exactly to the amount, signs a deposit
// permission per coin, seals them to the bank and hands them to the merchant.
// The coins are marked pending before sending and spent on a verified
// receipt. merchantAddr names the merchant in the wallet's records, so an
// interrupted payment to the same address and order is resent unchanged.
//
// A receipt signed by a key the wallet's key set does not list, when the
// bank's key set could not be had to look for it (*KeySetUnfetchedError),
// is neither accepted nor called bad: the error wraps ErrPending and the
// coins stay pending, for a retry (or Recover) to check it again.
//
// If change must be made first and the bank's answer to that swap is lost,
// nothing is sent to the merchant: the error is a *ChangePendingError
// (wrapping ErrPending), the coin swapped pending until a retry (or
// Recover) settles the swap.
//
// If a coin was already spent (say, by a copy of this wallet) the error is an
// *ecash.DoubleSpendError whose proof has been verified; that coin is marked
// spent and the others are released.
//
// An order already paid is not paid again, and nothing is sent for it;
// which of three answers comes depends on what the wallet knows:
//   - paid by this wallet to merchantAddr: Pay returns the receipt it kept
//     and a nil error, without asking the merchant or confirm, as a retry
//     of a payment whose answer was lost gets it. PaidReceipt tells this
//     case apart beforehand (cmd/wallet checks it first, to say the order
//     was already paid rather than paid now);
//   - paid by this wallet under another spelling of the merchant's address
//     (localhost or 127.0.0.1): known only from the payment request, which
//     names the merchant by its key, so PaidReceipt cannot tell it; Pay
//     returns an *AlreadyPaidError with the receipt kept. Callers treat it
//     as the case above (cmd/wallet: "already_paid": true). Pending under
//     another spelling, that payment is sent again, unconfirmed;
//   - paid with other coins (another wallet's): a *PaidOtherwiseError, the
//     first time once the bank refused this wallet's coins; the wallet
//     keeps the bank's receipt, and every later payment of the request is
//     answered from it, before confirm, with nothing sent.
//
// Payments of one payment request in one wallet run one at a time: one
// started while another is under way waits (until ctx ends) for that one
// to be sent and settled, and is then answered as above, or sends the
// payment it left pending; it never sends coins of its own meanwhile.
func (w *Wallet) Pay(ctx context.Context, bank pb.BankClient, merchant pb.MerchantClient, merchantAddr, orderID string, confirm Confirm) (*ecash.DepositReceipt, error) {
	fetch := func(ctx context.Context) (*ecash.PaymentOffer, error) {
		resp, err := merchant.GetPaymentRequest(ctx, &pb.GetPaymentRequestRequest{OrderId: orderID})
		if err != nil {
			return nil, err
		}
		return &ecash.PaymentOffer{Merchant: merchantAddr, Request: resp.PaymentRequest, MerchantSig: resp.MerchantSig, Summary: resp.Summary}, nil
	}
	return w.pay(ctx, bank, merchant, merchantAddr, orderID, fetch, confirm)
}

// PayOffer pays the order of a payment offer, as a payment URI carries it
// (ecash.ParsePaymentURI), exactly as Pay does but without fetching the
// payment request: one round trip fewer. merchant must be connected to
// o.Merchant, under which the wallet records the payment. The offer is
// verified as a fetched request is; confirm is what guards against a
// forged URI naming another merchant, so it should show the merchant.
func (w *Wallet) PayOffer(ctx context.Context, bank pb.BankClient, merchant pb.MerchantClient, o *ecash.PaymentOffer, confirm Confirm) (*ecash.DepositReceipt, error) {
	pr, err := o.Verify()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	given := func(context.Context) (*ecash.PaymentOffer, error) { return o, nil }
	return w.pay(ctx, bank, merchant, o.Merchant, pr.OrderID, given, confirm)
}

// PaidReceipt returns the bank's receipt for order orderID paid to the
// merchant at merchantAddr, kept when the payment completed, or nil if this
// wallet has not paid it (a payment in progress is not paid).
func (w *Wallet) PaidReceipt(merchantAddr, orderID string) (*ecash.DepositReceipt, error) {
	return w.keptReceipt(receiptKey(merchantAddr, orderID))
}

// keptReceipt returns the bank's receipt the store keeps under key, or nil.
func (w *Wallet) keptReceipt(key []byte) (*ecash.DepositReceipt, error) {
	raw, err := get(w.db, key)
	if err != nil || raw == nil {
		return nil, err
	}
	return ecash.DecodeDepositReceipt(raw)
}

// paidRequest returns the bank's receipt this wallet kept for payment
// request h, under whatever merchant address it was paid (or found by a
// restore), or nil. The receipts are indexed by request (h/): a lookup
// for every payment must not walk every receipt kept.
func (w *Wallet) paidRequest(h ecash.Hash) (*ecash.DepositReceipt, error) {
	if err := w.indexPaid(); err != nil {
		return nil, err
	}
	key, err := get(w.db, paidIndexKey(h))
	if err != nil {
		return nil, err
	}
	if key == nil {
		key = restoredReceiptKey(h)
	}
	return w.keptReceipt(key)
}

// indexPaid indexes, once, the receipts kept before the index existed.
// Concurrent runs write the same entries.
func (w *Wallet) indexPaid() error {
	if w.paidIndexed.Load() {
		return nil
	}
	if done, err := get(w.db, keyIndexed); err != nil || done != nil {
		w.paidIndexed.Store(err == nil)
		return err
	}
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte("r/"), UpperBound: prefixEnd([]byte("r/"))})
	if err != nil {
		return err
	}
	defer it.Close()
	b := w.db.NewBatch()
	defer b.Close()
	for it.First(); it.Valid(); it.Next() {
		rcpt, err := ecash.DecodeDepositReceipt(it.Value())
		if err != nil {
			return fmt.Errorf("wallet: corrupt receipt: %w", err)
		}
		if err := b.Set(paidIndexKey(rcpt.PaymentHash), it.Key(), nil); err != nil {
			return err
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if err := b.Set(keyIndexed, []byte{1}, nil); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	w.paidIndexed.Store(true)
	return nil
}

// AlreadyPaidError is a payment not made because this wallet had paid its
// order already, under another spelling of the merchant's address: the
// payment request, signed by the merchant, is the one paid. Nothing was
// paid now; Receipt is the bank's receipt the wallet kept.
type AlreadyPaidError struct {
	OrderID string
	Receipt *ecash.DepositReceipt
}

func (e *AlreadyPaidError) Error() string {
	return fmt.Sprintf("wallet: order %s was paid already by this wallet, %s at %s: nothing was paid now",
		e.OrderID, e.Receipt.Total, e.Receipt.DepositedAt.UTC().Format(time.RFC3339))
}

// ChangePendingError is a payment (or a return) not made because a swap
// of the wallet's coins is pending at the bank: the swap making its change
// was sent and its answer lost, so the coin swapped stays pending in it.
// Nothing was sent to the merchant (or deposited). A payment settles the
// swaps left pending (by an earlier run's change, Swap, or Recoup's
// re-issue of a revoked coin) before it makes its own; one the bank still
// does not answer ends it the same way, with Recoup set if it is a
// recoup's. It wraps the swap's error, which wraps ErrPending: running the
// payment again, or Recover, settles the swap, and the payment is then
// made, once.
type ChangePendingError struct {
	Err error // the swap's error
	// Recoup: the swap pending is a recoup's re-issue of a revoked coin
	// that came from a swap (Recoup), no change: the revoked coin stays
	// pending in it.
	Recoup bool
}

func (e *ChangePendingError) Error() string {
	if e.Recoup {
		return fmt.Sprintf("wallet: a recoup of a revoked coin is pending at the bank (%v): nothing was paid yet; retry, which settles the recoup first", e.Err)
	}
	return fmt.Sprintf("wallet: making change is pending at the bank (%v): nothing was paid yet; retry, which settles the swap first", e.Err)
}

// Unwrap returns the swap's error, which wraps ErrPending.
func (e *ChangePendingError) Unwrap() error { return e.Err }

// changePending makes err, an error of settling the swaps left pending
// before a payment, a *ChangePendingError if it leaves one pending.
func changePending(err error) error {
	if errors.Is(err, ErrPending) {
		var sr *swapRecoveryError
		return &ChangePendingError{Err: err, Recoup: errors.As(err, &sr) && sr.recoup}
	}
	return err
}

// pay is Pay and PayOffer, once the offer's source is known: fetch is
// called only if no payment of the order is pending or done.
func (w *Wallet) pay(ctx context.Context, bank pb.BankClient, merchant pb.MerchantClient, merchantAddr, orderID string, fetch func(context.Context) (*ecash.PaymentOffer, error), confirm Confirm) (*ecash.DepositReceipt, error) {
	ks, err := w.keys(ctx, bank)
	if err != nil {
		return nil, err
	}
	rcpt, pp, unlock, err := w.preparePayment(ctx, bank, ks, fetch, merchantAddr, orderID, confirm)
	if err != nil || rcpt != nil {
		return rcpt, err
	}
	defer unlock()
	pr, err := ecash.DecodePaymentRequest(pp.Request)
	if err != nil {
		return nil, err
	}
	w.tr.Record(w.now(), "sealed-payment", pp.Sealed, orderID)
	resp, err := merchant.Pay(ctx, &pb.PayRequest{OrderId: orderID, SealedPayment: pp.Sealed})
	if err != nil {
		return w.paymentFailed(ctx, bank, ks, pr, pp, err)
	}
	rcpt, err = w.acceptReceipt(ctx, bank, ks, pr, pp, resp.Receipt)
	switch {
	case errors.Is(err, ErrPending): // not checked yet
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("wallet: merchant returned a bad receipt: %w", err)
	}
	return rcpt, nil
}

// acceptReceipt verifies a receipt for a pending payment (bank signature,
// payment request, exactly our coins) and settles the payment as paid. A
// receipt it could not check (*KeySetUnfetchedError) leaves the payment
// pending: the error wraps ErrPending.
func (w *Wallet) acceptReceipt(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, pr *ecash.PaymentRequest, pp *pendingPayment, raw []byte) (*ecash.DepositReceipt, error) {
	rcpt, err := ecash.DecodeDepositReceipt(raw)
	if err != nil {
		return nil, err
	}
	if err := w.verifyBank(ctx, bank, ks, func(ks *ecash.KeySet) error { return rcpt.Verify(ks, pr) }); err != nil {
		var unchecked *KeySetUnfetchedError
		if errors.As(err, &unchecked) {
			// Signed by a key the wallet could not look up (a rotation it
			// has not fetched, say): neither verified nor refuted, so not a
			// bad receipt. The coins stay pending; a retry checks it again.
			return nil, fmt.Errorf("%w: the receipt for order %s could not be checked yet: %w", ErrPending, pp.OrderID, err)
		}
		return nil, err
	}
	if !sameSet(rcpt.Coins, pp.Coins) {
		return nil, fmt.Errorf("%w: receipt is for other coins", ecash.ErrBadSignature)
	}
	w.tr.Record(w.now(), "deposit-receipt", raw, "")
	return rcpt, w.settle(pr.Hash(), pp.Coins, nil, func(b *pebble.Batch) error {
		key := receiptKey(pp.Merchant, pp.OrderID)
		if err := b.Set(key, raw, nil); err != nil {
			return err
		}
		if err := b.Set(paidIndexKey(pr.Hash()), key, nil); err != nil {
			return err
		}
		check := &logCheck{Kind: logDeposit, Coins: pp.Coins, Merchant: pr.MerchantAccount, Credited: rcpt.Total,
			Answered: rcpt.DepositedAt.UnixMilli(), Asked: pr.CreatedAt.UnixMilli()}
		return b.Set(logCheckKey(pr.Hash()), check.encode(), nil)
	})
}

func sameSet(a, b []ecash.Hash) bool {
	if len(a) != len(b) {
		return false
	}
	set := make(map[ecash.Hash]bool, len(a))
	for _, h := range a {
		set[h] = true
	}
	for _, h := range b {
		if !set[h] {
			return false
		}
	}
	return true
}

// VerifyOffer checks a payment offer as the wallet receives it, fetched
// from the merchant or from a payment URI: the merchant's signature and the
// summary (PaymentOffer.Verify), and that the request names this bank, in
// its currency, and has not expired.
func VerifyOffer(ks *ecash.KeySet, o *ecash.PaymentOffer, now time.Time) (*Offer, error) {
	pr, err := o.Verify()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if pr.BankID != ks.BankID() {
		return nil, fmt.Errorf("%w: request names another bank", ErrBadRequest)
	}
	if pr.Amount.Currency != ks.Currency {
		return nil, fmt.Errorf("%w: %s, the bank holds %s", ecash.ErrCurrencyMismatch, pr.Amount.Currency, ks.Currency)
	}
	if !now.Before(pr.ExpiresAt) {
		return nil, ErrExpired
	}
	if err := pr.CheckLifetime(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	// Created ahead of this clock, a request could stay payable, and the
	// coins sent for it pending, for years past MaxPaymentLifetime.
	if pr.CreatedAt.After(now.Add(ecash.MaxClockSkew)) {
		return nil, fmt.Errorf("%w: created at %s, ahead of this wallet's clock", ErrBadRequest, pr.CreatedAt.UTC().Format(time.RFC3339))
	}
	return &Offer{Request: pr, Summary: o.Summary}, nil
}

// preparePayment returns the payment of order orderID to send: the one
// pending for it at merchantAddr, one pending for its request under another
// spelling of the address, or a new one (confirmed, change made, coins
// reserved). It holds the request's payment lock (lockPayment) from before
// it looks for an answer kept until unlock, called once the payment is sent
// and settled: a second payment of the request running at once in this
// wallet would pass those checks while the first is still under way, and
// then send coins of its own. An order paid already is answered instead:
// rcpt, if it was paid at merchantAddr; else an *AlreadyPaidError or a
// *PaidOtherwiseError.
func (w *Wallet) preparePayment(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, fetch func(context.Context) (*ecash.PaymentOffer, error), merchantAddr, orderID string, confirm Confirm) (rcpt *ecash.DepositReceipt, pp *pendingPayment, unlock func(), err error) {
	// The lock held is released on the way out unless handed to the
	// caller with the payment to send: on every other return, and on a
	// panic (confirm is the caller's), which a caller that recovers it
	// would otherwise find left held, every later payment of the request
	// waiting on it.
	var held func()
	defer func() {
		if held != nil && pp == nil {
			held()
		}
	}()
	for {
		// Paid already: answer with the receipt rather than pay twice
		// (without asking the merchant for its request).
		if rcpt, err := w.PaidReceipt(merchantAddr, orderID); err != nil || rcpt != nil {
			return rcpt, nil, nil, err
		}
		pending, err := w.findPending(merchantAddr, orderID)
		if err != nil {
			return nil, nil, nil, err
		}
		var o *ecash.PaymentOffer
		var pr *ecash.PaymentRequest
		if pending != nil {
			pr, err = ecash.DecodePaymentRequest(pending.Request)
		} else {
			o, pr, err = fetchRequest(ctx, fetch, orderID)
		}
		if err != nil {
			return nil, nil, nil, err
		}
		if held, err = w.lockPayment(ctx, pr.Hash()); err != nil {
			return nil, nil, nil, err
		}
		rcpt, pp, err = w.answeredOrPending(merchantAddr, orderID, pr)
		switch {
		case err != nil || rcpt != nil:
			return rcpt, nil, nil, err
		case pp != nil:
			return nil, pp, held, nil
		case o != nil:
			if pp, err = w.newPayment(ctx, bank, ks, o, merchantAddr, orderID, confirm); err != nil {
				return nil, nil, nil, err
			}
			return nil, pp, held, nil
		}
		// The payment found pending was settled, unpaid, by the call
		// that held its request meanwhile: a new one is to be made.
		held()
		held = nil
	}
}

// fetchRequest fetches the payment request of order orderID and checks
// the merchant's signature of it.
func fetchRequest(ctx context.Context, fetch func(context.Context) (*ecash.PaymentOffer, error), orderID string) (*ecash.PaymentOffer, *ecash.PaymentRequest, error) {
	o, err := fetch(ctx)
	if err != nil {
		return nil, nil, err
	}
	pr, err := o.Verify()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if pr.OrderID != orderID {
		return nil, nil, fmt.Errorf("%w: request is for order %q", ErrBadRequest, pr.OrderID)
	}
	return o, pr, nil
}

// answeredOrPending returns what the wallet holds of payment request pr
// of order orderID: the receipt of it paid at merchantAddr; an
// *AlreadyPaidError or *PaidOtherwiseError; the payment of it pending; or
// nothing. Caller holds pr's payment lock.
func (w *Wallet) answeredOrPending(merchantAddr, orderID string, pr *ecash.PaymentRequest) (*ecash.DepositReceipt, *pendingPayment, error) {
	if rcpt, err := w.PaidReceipt(merchantAddr, orderID); err != nil || rcpt != nil {
		return rcpt, nil, err
	}
	// The request, signed by the merchant's key, is the same whatever
	// address it was fetched at: paid already, its receipt is kept. Looked
	// up before VerifyOffer: a request paid has been checked, and once
	// expired it would be refused as if it could not be paid.
	if rcpt, err := w.paidRequest(pr.Hash()); err != nil {
		return nil, nil, err
	} else if rcpt != nil {
		return nil, nil, &AlreadyPaidError{OrderID: orderID, Receipt: rcpt}
	}
	// Paid with other coins, as the bank said when an earlier payment of
	// it was refused: the bank will never take this request again, and
	// another attempt would only reveal (and swap, for a fee) more coins.
	if rcpt, err := w.keptReceipt(paidOtherKey(pr.Hash())); err != nil {
		return nil, nil, err
	} else if rcpt != nil {
		return nil, nil, &PaidOtherwiseError{OrderID: orderID, Receipt: rcpt}
	}
	// Pending, under this spelling or another: sent again as it is,
	// before any confirmation or change is made for a payment that will
	// not be new (reserveCoins would reuse it only after both).
	w.mu.Lock()
	raw, err := get(w.db, paymentKey(pr.Hash()))
	w.mu.Unlock()
	if err != nil || raw == nil {
		return nil, nil, err
	}
	pp, err := decodePendingPayment(raw)
	return nil, pp, err
}

// newPayment makes a new payment of the offer o: it verifies it, asks
// confirm, makes change if needed and reserves the coins.
func (w *Wallet) newPayment(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, o *ecash.PaymentOffer, merchantAddr, orderID string, confirm Confirm) (*pendingPayment, error) {
	offer, err := VerifyOffer(ks, o, w.now())
	if err != nil {
		return nil, err
	}
	w.tr.RecordEntry(w.now(), ecash.TranscriptEntry{Step: "payment-request", Data: o.Request, Sig: o.MerchantSig, Note: o.Summary})
	if err := w.recoverSwaps(ctx, bank, ks); err != nil {
		return nil, changePending(err)
	}
	w.mu.Lock()
	plan, err := w.planPayment(ks, offer.Request.Amount)
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	offer.Fee, offer.Change = plan.fee, plan.change != nil
	if confirm != nil {
		if err := confirm(offer); err != nil {
			return nil, err
		}
	}
	coins, err := w.payWith(ctx, bank, ks, plan)
	if err != nil {
		return nil, err
	}
	return w.reserveCoins(ks, offer.Request, o.Request, merchantAddr, orderID, coins)
}

// lockPayment takes the payment lock of request h, waiting while another
// call of this wallet holds it (until ctx ends); unlock releases it.
func (w *Wallet) lockPayment(ctx context.Context, h ecash.Hash) (unlock func(), err error) {
	for {
		w.mu.Lock()
		held, busy := w.paying[h]
		if !busy {
			if w.paying == nil {
				w.paying = map[ecash.Hash]chan struct{}{}
			}
			done := make(chan struct{})
			w.paying[h] = done
			w.mu.Unlock()
			return func() {
				w.mu.Lock()
				delete(w.paying, h)
				w.mu.Unlock()
				close(done)
			}, nil
		}
		w.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// reserveCoins signs and seals a payment of the coins planned for a
// payment request, and persists it with the coins marked pending, in one
// synced batch. A payment already pending for the request is returned as it
// is. If a planned coin is no longer fresh (a concurrent payment took it),
// it picks again.
func (w *Wallet) reserveCoins(ks *ecash.KeySet, pr *ecash.PaymentRequest, prBody []byte, merchantAddr, orderID string, planned []*coinRecord) (*pendingPayment, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := pr.Hash()
	if raw, err := get(w.db, paymentKey(h)); err != nil {
		return nil, err
	} else if raw != nil {
		// Already being paid (another call, or another spelling of the
		// merchant's address): reuse it, never overwrite it.
		return decodePendingPayment(raw)
	}
	picked, err := w.stillFresh(planned)
	if err != nil {
		return nil, err
	}
	if picked == nil {
		if picked, err = w.selectCoins(pr.Amount, ks); err != nil {
			return nil, err
		}
	}
	coins := make([]ecash.Coin, len(picked))
	keys := make([]ed25519.PrivateKey, len(picked))
	values := make([]ecash.Amount, len(picked))
	ids := make([]ecash.Hash, len(picked))
	for i, c := range picked {
		ps, err := ecash.DerivePlanchet(w.seed, c.Index)
		if err != nil {
			return nil, err
		}
		coins[i], keys[i], values[i], ids[i] = c.Coin, ps.CoinKey, c.Value, c.Coin.ID()
	}
	// The request's time, not the wallet's clock: a clock offset to the
	// millisecond would let the bank match this payment to the account's
	// signed withdrawals.
	payment, err := ecash.NewPayment(pr, coins, keys, values, pr.CreatedAt)
	if err != nil {
		return nil, err
	}
	sealed, err := ecash.SealPayment(ks.HPKEPub, pr, payment)
	if err != nil {
		return nil, err
	}
	pp := &pendingPayment{Merchant: merchantAddr, OrderID: orderID, Request: prBody, Sealed: sealed, Coins: ids}
	b := w.db.NewBatch()
	defer b.Close()
	for _, c := range picked {
		c.State, c.Payment = CoinPending, h
		if err := b.Set(coinKey(c.Coin.ID()), c.encode(), nil); err != nil {
			return nil, err
		}
	}
	if err := b.Set(paymentKey(h), pp.encode(), nil); err != nil {
		return nil, err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return nil, err
	}
	return pp, nil
}

// stillFresh returns the current records of coins, or nil if one of them is
// no longer fresh, or was revealed meanwhile. Caller holds w.mu.
func (w *Wallet) stillFresh(coins []*coinRecord) ([]*coinRecord, error) {
	out := make([]*coinRecord, 0, len(coins))
	for _, c := range coins {
		rec, err := w.coin(c.Coin.ID())
		if err != nil {
			return nil, err
		}
		if rec.State != CoinFresh || rec.Revealed {
			return nil, nil
		}
		out = append(out, rec)
	}
	return out, nil
}

// payPlan is how the wallet will pay an amount: the fresh coins that pay it
// after their deposit fees, or some of them and the coins a swap for change
// will make; and what that costs in fees.
type payPlan struct {
	coins  []*coinRecord
	change *changePlan
	fee    ecash.Amount
}

// planPayment plans paying amount: what makeChange and selectCoins would
// do, without doing it. Caller holds w.mu.
func (w *Wallet) planPayment(ks *ecash.KeySet, amount ecash.Amount) (*payPlan, error) {
	picked, change, err := w.planChange(ks, amount, true)
	if err != nil {
		return nil, err
	}
	p := &payPlan{coins: picked, change: change, fee: ecash.Amount{Currency: amount.Currency}}
	if change != nil {
		p.fee.Value += change.swapFee
		for _, d := range change.need {
			p.fee.Value += d.Fees.Deposit.Value
		}
	}
	net := netValue(ks)
	for _, c := range p.coins {
		p.fee.Value += c.Value.Value - net(c)
	}
	return p, nil
}

// payWith carries out a payment plan: it makes the change the plan needs
// and returns the coins to pay with, the swap's new coins among them. A
// swap left pending is a *ChangePendingError: nothing is paid yet.
func (w *Wallet) payWith(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, p *payPlan) ([]*coinRecord, error) {
	if p.change == nil {
		return p.coins, nil
	}
	made, err := w.swap(ctx, bank, ks, []*coinRecord{p.change.big}, p.change.outputs)
	if err != nil {
		if errors.Is(err, ErrPending) {
			return nil, changePending(err)
		}
		return nil, fmt.Errorf("wallet: making change: %w", err)
	}
	coins := slices.Clone(p.coins)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range made[:len(p.change.need)] {
		rec, err := w.coin(c.ID())
		if err != nil {
			return nil, err
		}
		coins = append(coins, rec)
	}
	return coins, nil
}

// selectCoins picks fresh coins summing exactly to amount after their
// deposit fees: largest first, which is exact whenever any subset is, for
// denominations that each divide the next (the default powers of two).
// Caller holds w.mu.
func (w *Wallet) selectCoins(amount ecash.Amount, ks *ecash.KeySet) ([]*coinRecord, error) {
	picked, rest, _, err := w.pick(amount, ks, netValue(ks))
	if err != nil {
		return nil, err
	}
	if rest != 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoExactChange, amount)
	}
	return picked, nil
}

// paymentFailed decides what a failed Pay means for the coins. The merchant
// relays errors and could lie, so only the bank's word settles a payment:
//   - a double-spend proof the bank signed, for one of our coins and another
//     payment, shows this deposit was refused as a whole;
//   - otherwise the bank is asked whether the payment request is paid: if so
//     the payment went through (a lost answer) and its receipt is kept; if
//     it was paid with other coins, the coins are free again and the error
//     is a *PaidOtherwiseError, whatever else holds of them (a revoked
//     denomination among them included): the order is paid; if not, and
//     the request is past the point where the bank still accepts it, the
//     coins are free again;
//   - otherwise, if the bank's key set, fetched afresh (its master's
//     signature makes it the bank's word), revokes the denomination of one
//     of the coins and the bank has not taken the payment, it never will:
//     the bank refuses a revoked coin in every deposit that commits after
//     the revocation was logged, which was before the bank served the key
//     set, which was before it was asked. The payment ends as a refused one
//     does (coins fresh but revealed) with a *RevokedError;
//   - in every other case the coins stay pending (ErrPending) until a retry
//     or Recover settles them.
func (w *Wallet) paymentFailed(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, pr *ecash.PaymentRequest, pp *pendingPayment, err error) (*ecash.DepositReceipt, error) {
	h := pr.Hash()
	if ds := DoubleSpendFromError(err); ds != nil {
		spent := ds.Proof.Earlier.Coin.ID()
		if verr := w.verifyBank(ctx, bank, ks, ds.Proof.Verify); verr != nil || !slices.Contains(pp.Coins, spent) || ds.Proof.Earlier.PaymentHash == h {
			return nil, fmt.Errorf("%w: payment refused with a double-spend claim that does not hold (%v)", ErrPending, err)
		}
		if serr := w.settle(h, pp.Coins, &spent, nil); serr != nil {
			return nil, serr
		}
		w.tr.Record(w.now(), "double-spend-proof", ds.Proof.Encode(), "")
		return nil, w.renewAfter(ctx, bank, ks, ds)
	}
	ks = w.keysAfterRefusal(ctx, bank, ks, pp, err)
	rcpt, end, serr := w.askBank(ctx, bank, ks, pr, pp)
	switch {
	case serr != nil:
		return nil, fmt.Errorf("%w: payment of order %s: %v (and the bank could not be asked: %v)", ErrPending, pp.OrderID, err, serr)
	case end == paidHere:
		return rcpt, nil
	case end == paidOther:
		// The order is paid: whatever else holds of these coins (a
		// revoked one among them), that is the outcome to report.
		perr := &PaidOtherwiseError{OrderID: pp.OrderID, Receipt: rcpt, Err: err}
		perr.Revoked, _ = w.revokedAmong(ks, pp.Coins)
		return nil, w.renewAfter(ctx, bank, ks, perr)
	case end == unpaid:
		if revoked, rerr := w.revokedAmong(ks, pp.Coins); rerr == nil && len(revoked) > 0 {
			err = &RevokedError{OrderID: pp.OrderID, Denominations: revoked, Err: err}
		}
		return nil, w.renewAfter(ctx, bank, ks, err)
	}
	return nil, fmt.Errorf("%w: payment of order %s: %v", ErrPending, pp.OrderID, err)
}

// renewAfter swaps the coins a failed payment revealed while the bank is at
// hand, and returns the payment's error, err. If they could not all be
// swapped they stay revealed, for Recover or RefreshCoins: that is noted,
// but does not make err pending (the payment is settled).
func (w *Wallet) renewAfter(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, err error) error {
	if rerr := w.renewRevealed(ctx, bank, ks); rerr != nil {
		return fmt.Errorf("%w (and the coins the bank saw in it are not swapped yet: %v)", err, rerr)
	}
	return err
}

// paymentEnd is how the bank's records settle a pending payment.
type paymentEnd int

const (
	stillPending paymentEnd = iota // the bank may yet take it
	paidHere                       // the bank took its coins
	paidOther                      // the bank took other coins for its request
	unpaid                         // never paid: too late, or a coin revoked
)

// askBank settles a pending payment from the bank's records: paid (returns
// the receipt), paid with other coins (coins released; returns the bank's
// receipt for those), or unpaid and too late to be paid (coins released).
// Otherwise it leaves the payment pending.
func (w *Wallet) askBank(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, pr *ecash.PaymentRequest, pp *pendingPayment) (*ecash.DepositReceipt, paymentEnd, error) {
	h := pr.Hash()
	resp, err := anonymousCall(ctx, w, bank, func(bank pb.BankClient) (*pb.DepositResponse, error) {
		return bank.DepositStatus(ctx, &pb.DepositStatusRequest{PaymentHash: h[:]})
	})
	if err == nil {
		rcpt, err := ecash.DecodeDepositReceipt(resp.Receipt)
		if err == nil {
			err = w.verifyBank(ctx, bank, ks, func(ks *ecash.KeySet) error { return rcpt.Verify(ks, pr) })
		}
		if err != nil {
			return nil, stillPending, fmt.Errorf("bank's receipt: %w", err)
		}
		if !sameSet(rcpt.Coins, pp.Coins) {
			// Paid, but with other coins: the bank will never take ours for
			// this request, so they are free; its receipt, kept, answers
			// any later payment of the request (preparePayment).
			keep := func(b *pebble.Batch) error { return b.Set(paidOtherKey(h), resp.Receipt, nil) }
			if err := w.settle(h, pp.Coins, &ecash.Hash{}, keep); err != nil {
				return nil, stillPending, err
			}
			return rcpt, paidOther, nil
		}
		if rcpt, err = w.acceptReceipt(ctx, bank, ks, pr, pp, resp.Receipt); err != nil {
			return nil, stillPending, err
		}
		return rcpt, paidHere, nil
	}
	if status.Code(err) != codes.NotFound {
		return nil, stillPending, err
	}
	// Twice the skew: once for the bank's own grace, once for our clock.
	end := pr.ExpiresAt
	if pr.CheckLifetime() != nil { // stored before the bound: the bank takes no new deposit of it
		end = pr.CreatedAt.Add(ecash.MaxPaymentLifetime)
	}
	if w.now().After(end.Add(2 * ecash.MaxClockSkew)) {
		return nil, unpaid, w.settle(h, pp.Coins, &ecash.Hash{}, nil)
	}
	// ks came from the bank (or its audit log) before it was asked: a
	// denomination it revokes was revoked before the bank answered, so a
	// deposit of these coins committing later is refused (paymentFailed).
	revoked, err := w.revokedAmong(ks, pp.Coins)
	if err != nil {
		return nil, stillPending, err
	}
	if len(revoked) > 0 {
		return nil, unpaid, w.settle(h, pp.Coins, &ecash.Hash{}, nil)
	}
	return nil, stillPending, nil
}

// PaidOtherwiseError is a payment the bank will never take because its
// order is paid already, with other coins: another wallet's, or a copy of
// this one's (restored from the same seed, without this one's receipts).
// Nothing was paid by this payment; its coins are the wallet's again,
// revealed (and swapped, as after any refused payment). Receipt is the
// bank's receipt for the order, verified.
//
// The wallet keeps that receipt: a later payment of the same payment
// request is answered with a PaidOtherwiseError whose Err is nil, without
// confirming, making change or sending any coin (none was revealed).
type PaidOtherwiseError struct {
	OrderID string
	Receipt *ecash.DepositReceipt
	Revoked []ecash.Denomination // revoked denominations among its coins: they pay back only by recoup
	Err     error                // the refusal the merchant relayed; nil if answered from the receipt kept
}

func (e *PaidOtherwiseError) Error() string {
	paid := fmt.Sprintf("wallet: order %s is paid already, %s with other coins at %s", e.OrderID, e.Receipt.Total, e.Receipt.DepositedAt.UTC().Format(time.RFC3339))
	if e.Err == nil {
		return paid + " (the bank's receipt, kept when an earlier payment of it was refused): nothing was paid now and no coins were sent"
	}
	return fmt.Sprintf("%s (the bank's receipt verified): this payment paid nothing and its coins are the wallet's again (the merchant said: %v)", paid, e.Err)
}

// Unwrap returns the refusal the merchant relayed.
func (e *PaidOtherwiseError) Unwrap() error { return e.Err }

// RevokedError is a payment that can never go through: the bank's key set
// (master-signed, fetched from the bank) revokes the denomination of some
// of its coins, and the bank has not taken it. The payment is ended; its
// coins are the wallet's again but revealed (those of live denominations
// are swapped, as after any refused payment); the revoked ones pay back
// only through Recoup. It matches ecash.ErrDenominationRevoked.
type RevokedError struct {
	OrderID       string
	Denominations []ecash.Denomination // the revoked denominations among the payment's coins
	Err           error                // the refusal the merchant relayed
}

func (e *RevokedError) Error() string {
	return fmt.Sprintf("wallet: payment of order %s refused: the bank revoked the denomination of its coins of %s (its key may have leaked); nothing was paid, the coins are the wallet's again, and the revoked ones pay back only by recoup (the merchant said: %v)",
		e.OrderID, strings.Join(e.Values(), ", "), e.Err)
}

// Values are the values of the revoked denominations, as text ("EUR:0.02").
func (e *RevokedError) Values() []string {
	values := make([]string, len(e.Denominations))
	for i, d := range e.Denominations {
		values[i] = d.Value.String()
	}
	return values
}

// Is makes a RevokedError match ecash.ErrDenominationRevoked.
func (e *RevokedError) Is(target error) bool { return target == ecash.ErrDenominationRevoked }

// Unwrap returns the refusal the merchant relayed.
func (e *RevokedError) Unwrap() error { return e.Err }

// revokedAmong returns the denominations ks revokes among those of the
// coins ids, each once.
func (w *Wallet) revokedAmong(ks *ecash.KeySet, ids []ecash.Hash) ([]ecash.Denomination, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ecash.Denomination
	for _, id := range ids {
		c, err := w.coin(id)
		if err != nil {
			return nil, err
		}
		d, err := ks.Denomination(c.Coin.Denom)
		if err != nil || !d.Revoked || slices.ContainsFunc(out, func(o ecash.Denomination) bool { return o.ID == d.ID }) {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// keysAfterRefusal returns the key set to judge a failed payment by: ks,
// or, if the failure may be a revocation ks does not show yet (a key set
// younger than KeySetMaxAge is not fetched again), the bank's key set
// fetched afresh. The merchant's error only decides whether to look; what
// counts is the key set, which the master signed. A merchant claiming
// revocations costs one fetch per failed payment, no more than the user
// retries. It keeps ks if the bank cannot be reached.
func (w *Wallet) keysAfterRefusal(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, pp *pendingPayment, err error) *ecash.KeySet {
	if st, ok := status.FromError(err); !ok || st.Code() != codes.FailedPrecondition && !strings.Contains(st.Message(), "revoked") {
		return ks
	}
	if revoked, rerr := w.revokedAmong(ks, pp.Coins); rerr != nil || len(revoked) > 0 {
		return ks
	}
	fresh, _, ferr := w.fetchKeys(ctx, bank)
	if ferr != nil {
		return ks
	}
	return fresh
}

// reconcilePayments settles every pending payment the bank can decide.
func (w *Wallet) reconcilePayments(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet) error {
	var pending []*pendingPayment
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte("p/"), UpperBound: prefixEnd([]byte("p/"))})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		pp, err := decodePendingPayment(it.Value())
		if err != nil {
			it.Close()
			return fmt.Errorf("wallet: corrupt pending payment: %w", err)
		}
		pending = append(pending, pp)
	}
	if err := it.Close(); err != nil {
		return err
	}
	for _, pp := range pending {
		pr, err := ecash.DecodePaymentRequest(pp.Request)
		if err != nil {
			return err
		}
		if _, _, err := w.askBank(ctx, bank, ks, pr, pp); err != nil {
			return fmt.Errorf("wallet: settling the payment of order %s: %w", pp.OrderID, err)
		}
	}
	return nil
}

// settle ends a pending payment. spentOnly nil: the payment went through and
// every coin is spent. Otherwise the payment failed: the coin spentOnly (if
// any of ours) is marked spent, the others return to fresh but revealed.
// The bank opens a sealed payment before it checks anything of its coins or
// time, and keeps nothing of a deposit it refuses, so whatever the failure
// it may have seen every coin bound to this merchant and order. also, if
// set, adds its writes to the same atomic batch.
//
// A failure settles only a payment still pending, and only its coins still
// pending for it: a retry or Recover may have settled it meanwhile (each
// asks the bank without the lock), and its coins may since be another
// payment's. A payment that went through spends its coins whatever the
// wallet thought before: the bank's receipt says so.
func (w *Wallet) settle(h ecash.Hash, ids []ecash.Hash, spentOnly *ecash.Hash, also func(*pebble.Batch) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	failed := spentOnly != nil
	if failed {
		if pending, err := get(w.db, paymentKey(h)); err != nil || pending == nil {
			return err
		}
	}
	b := w.db.NewBatch()
	defer b.Close()
	for _, id := range ids {
		raw, err := get(w.db, coinKey(id))
		if err != nil || raw == nil {
			return fmt.Errorf("wallet: coin record missing: %v", err)
		}
		c, err := decodeCoinRecord(raw)
		if err != nil {
			return err
		}
		if failed && (c.State != CoinPending || c.Payment != h) {
			continue
		}
		c.State, c.Payment = CoinSpent, ecash.Hash{}
		if failed && *spentOnly != id {
			// Revealed by this payment, and swapped with its other coins
			// only (refresh groups them by it).
			c.State, c.Revealed, c.Payment = CoinFresh, true, h
		}
		if err := b.Set(coinKey(id), c.encode(), nil); err != nil {
			return err
		}
	}
	if err := b.Delete(paymentKey(h), nil); err != nil {
		return err
	}
	if also != nil {
		if err := also(b); err != nil {
			return err
		}
	}
	return b.Commit(pebble.Sync)
}

func (w *Wallet) findPending(merchantAddr, orderID string) (*pendingPayment, error) {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte("p/"), UpperBound: prefixEnd([]byte("p/"))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		pp, err := decodePendingPayment(it.Value())
		if err != nil {
			return nil, fmt.Errorf("wallet: corrupt pending payment: %w", err)
		}
		if pp.Merchant == merchantAddr && pp.OrderID == orderID {
			return pp, nil
		}
	}
	return nil, it.Error()
}

// DoubleSpendFromError extracts a double-spend proof from an error: an
// *ecash.DoubleSpendError, or a gRPC status from the bank (relayed unchanged
// by a merchant) carrying a DoubleSpendDetail. The proof is not yet
// verified: call Proof.Verify with the key set. Nil if there is none.
func DoubleSpendFromError(err error) *ecash.DoubleSpendError {
	var ds *ecash.DoubleSpendError
	if errors.As(err, &ds) {
		return ds
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return nil
	}
	for _, d := range st.Details() {
		if detail, ok := d.(*pb.DoubleSpendDetail); ok {
			if proof, perr := ecash.DecodeDoubleSpendProof(detail.Proof); perr == nil {
				return &ecash.DoubleSpendError{Proof: proof}
			}
		}
	}
	return nil
}
