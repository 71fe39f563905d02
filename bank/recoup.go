package bank

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// Errors of recoup.
var (
	ErrNotRevoked = errors.New("bank: the coin's denomination is not revoked: deposit or swap it")
	// ErrRecoupNeedsOutputs: the coin came from a swap, so its value is
	// re-issued, not credited: ask again with outputs of its value.
	ErrRecoupNeedsOutputs = errors.New("bank: the coin came from a swap: give outputs of its value to re-issue it")
	ErrRecoupUnknown      = errors.New("bank: no withdrawal or swap of this bank issued this coin")
)

// RecoupResult is the bank's answer to a recoup: for a withdrawn coin, the
// signed receipt of its value credited to the account that withdrew it;
// for a coin from a swap, blind signatures on the outputs.
type RecoupResult struct {
	Request   ecash.Hash // the request's hash (its audit-log reference)
	Account   uint64     // credited (withdrawn coin); 0 for a re-issue
	Receipt   []byte     // "signed-deposit-receipt" of the credit
	BlindSigs [][]byte
}

// Recoup pays back a coin of a revoked denomination. The request reveals
// the coin's blind seed; the bank recomputes the blinded message its key
// signed and finds its origin in the issued index, whose recorded signature
// must verify under the coin's denomination key. A withdrawn coin's value
// is credited to the account that withdrew it (as a deposit into that
// account, so the coin is spent in the same record as any other spend);
// a coin from a swap is re-issued as signatures on the request's outputs
// (as a swap). A recouped coin cannot be spent and a spent coin cannot be
// recouped: a double-spend proof answers either. A retry of the same
// request gets the same answer.
func (b *Bank) Recoup(ctx context.Context, raw []byte) (*RecoupResult, error) {
	req, err := ecash.DecodeRecoupRequest(raw)
	if err != nil {
		return nil, err
	}
	r, err := b.recoup(ctx, req)
	if r != nil {
		r.Request = req.Hash()
	}
	return r, err
}

func (b *Bank) recoup(ctx context.Context, req *ecash.RecoupRequest) (*RecoupResult, error) {
	reqHash := req.Hash()
	if receipt, _, found, err := b.store.DepositRecord(ctx, reqHash); err != nil || found {
		return b.recoupCredited(receipt, err)
	}
	if sigs, found, err := b.store.SwapRecord(ctx, reqHash); err != nil || found {
		if err != nil {
			return nil, err
		}
		return &RecoupResult{BlindSigs: sigs}, nil
	}
	// Read once, as the request is taken: the commit's deadline
	// (MaxCommitDelay) counts from here.
	now := b.now()
	var err error
	d, ok := b.denom(req.Coin.Denom)
	if !ok {
		return nil, fmt.Errorf("%w: %x", ecash.ErrUnknownDenomination, req.Coin.Denom[:8])
	}
	if !d.Revoked {
		return nil, ErrNotRevoked
	}
	dp := req.Permission(d.Value)
	if err := dp.Coin.Verify(d.Key); err != nil {
		return nil, err
	}
	if err := dp.Verify(); err != nil {
		return nil, err
	}
	var prepared []byte
	if r := d.Key.PrepareRequest(req.BlindSeed); r != nil {
		if prepared, err = d.Private.Prepare(r); err != nil {
			return nil, err
		}
	}
	blinded, st, err := d.Key.Blind(req.BlindSeed, prepared, req.Coin.Pub)
	if err != nil {
		return nil, err
	}
	found, err := b.store.Issued(ctx, []ecash.Hash{ecash.HashOf(blinded)})
	if err != nil {
		return nil, err
	}
	origin := found[0]
	// The index is keyed by the blinded message alone. Whoever holds the
	// revoked (leaked) key can forge a coin of it from a planchet whose
	// blinded message they withdrew under a cheaper denomination: the
	// signature recorded must be this denomination's, or the coin was
	// never issued as one of its coins.
	if origin == nil {
		return nil, ErrRecoupUnknown
	}
	if _, err := st.Unblind(origin.Sig); err != nil {
		b.log.Warn("recoup refused: the coin's blinded message was signed by another denomination's key", "denomination", d.ID.String()[:16])
		return nil, ErrRecoupUnknown
	}
	spent := SpentCoin{ID: req.Coin.ID(), Permission: dp.Encode()}
	if origin.Kind == KindSwap {
		return b.reissue(ctx, req, reqHash, d, spent, now)
	}
	if len(req.Outputs) != 0 {
		return nil, fmt.Errorf("%w: a withdrawn coin is credited to its account; give no outputs", ecash.ErrMalformed)
	}
	rcpt := &ecash.DepositReceipt{
		PaymentHash: reqHash, MerchantAccount: origin.Account, Total: d.Value, Coins: []ecash.Hash{spent.ID},
		DepositedAt: now, SignerPub: b.keySet().SigningPub,
	}
	rcpt.Sig = ecash.SignBody(b.keys.Signing, rcpt.Body())
	stored, err := b.store.Deposit(ctx, DepositOp{
		PaymentHash: reqHash, Merchant: origin.Account, Amount: int64(d.Value.Value),
		Coins: []SpentCoin{spent}, Receipt: rcpt.Encode(), Time: now, NotAfter: now.Add(MaxCommitDelay),
		Log: auditlog.Recoup{Account: origin.Account, Amount: d.Value, Coin: spent.ID, Denom: d.ID, RequestHash: reqHash},
	})
	var se *SpentError
	if errors.As(err, &se) {
		return nil, b.doubleSpend(se, now)
	}
	if err != nil {
		return nil, err
	}
	b.log.Debug("recoup", "account", origin.Account, "amount", d.Value.String(), "denomination", d.ID.String()[:16])
	b.countCoins(func(m *metrics) *prometheus.CounterVec { return m.coinsRedeemed }, []*DenomKey{d})
	return b.recoupCredited(stored, nil)
}

func (b *Bank) recoupCredited(receipt []byte, err error) (*RecoupResult, error) {
	if err != nil {
		return nil, err
	}
	r, err := ecash.DecodeDepositReceipt(receipt)
	if err != nil {
		return nil, fmt.Errorf("bank: stored receipt unreadable: %w", err)
	}
	return &RecoupResult{Account: r.MerchantAccount, Receipt: receipt}, nil
}

// reissue signs a recoup's outputs for the value of a coin from a swap,
// spending the coin as a swap would; now is the bank's clock when the
// recoup was taken.
func (b *Bank) reissue(ctx context.Context, req *ecash.RecoupRequest, reqHash ecash.Hash, d *DenomKey, spent SpentCoin, now time.Time) (*RecoupResult, error) {
	if len(req.Outputs) == 0 {
		return nil, ErrRecoupNeedsOutputs
	}
	out, outKeys, blinded, locks, err := b.outputs(req.Outputs, now)
	if err != nil {
		return nil, err
	}
	if out != d.Value {
		return nil, fmt.Errorf("%w: the coin is worth %s, the outputs %s", ErrAmountMatch, d.Value, out)
	}
	// A recouped or spent coin replayed with fresh outputs is refused
	// before they are signed, as in a swap.
	if err := b.unspentBeforeSigning(ctx, reqHash, []SpentCoin{spent}, outKeys, now); err != nil {
		return nil, err
	}
	if err := b.unissued(ctx, reqHash, blinded, []SpentCoin{spent}, now); err != nil {
		return nil, err
	}
	sigs, err := b.blindSign(ctx, req.Outputs, outKeys)
	if err != nil {
		return nil, err
	}
	sigs, err = b.store.Swap(ctx, SwapOp{
		RequestHash: reqHash, Coins: []SpentCoin{spent}, Value: int64(d.Value.Value), BlindSigs: sigs, Blinded: blinded, Locks: locks, Time: now,
		NotAfter: now.Add(MaxCommitDelay),
		Log:      auditlog.Recoup{Amount: d.Value, Coin: spent.ID, Denom: d.ID, RequestHash: reqHash, Issued: denomCounts(outKeys)},
	})
	var se *SpentError
	if errors.As(err, &se) {
		return nil, b.doubleSpend(se, now)
	}
	if err != nil {
		return nil, b.refused(err)
	}
	b.log.Debug("recoup by re-issue", "amount", d.Value.String(), "outputs", len(sigs))
	b.countCoins(func(m *metrics) *prometheus.CounterVec { return m.coinsRedeemed }, []*DenomKey{d})
	b.countCoins(func(m *metrics) *prometheus.CounterVec { return m.coinsIssued }, outKeys)
	return &RecoupResult{BlindSigs: sigs}, nil
}
