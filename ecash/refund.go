package ecash

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// RefundRequest is a merchant's signed order to give back (part of) a
// payment it was credited. The bank debits the merchant and restores the
// value to the payment's coins, in payment order, each up to what it paid;
// the wallet that holds the coins then spends that restored value in a swap
// (SwapRequest: the input's permission then signs the restored value, not
// the denomination's).
//
// RefundID tells apart several partial refunds of one payment: two refunds
// of the same amount with different ids are two refunds, while the same
// signed bytes sent twice are one (the bank keys idempotency on Hash).
type RefundRequest struct {
	PaymentHash     Hash
	MerchantAccount uint64
	RefundID        uint64
	Amount          Amount
	CreatedAt       time.Time
	MerchantSig     []byte // by the merchant account's key, over Body
}

// Body is the canonical encoding the merchant signs (tag "refund-request").
func (r *RefundRequest) Body() []byte {
	e := NewEncoder("refund-request")
	e.Fixed(r.PaymentHash[:])
	e.U64(r.MerchantAccount)
	e.U64(r.RefundID)
	e.Amount(r.Amount)
	e.I64(r.CreatedAt.UnixMilli())
	return e.Bytes()
}

// Hash identifies the refund: SHA-256 of Body.
func (r *RefundRequest) Hash() Hash { return HashOf(r.Body()) }

// Sign sets MerchantSig.
func (r *RefundRequest) Sign(merchant ed25519.PrivateKey) {
	r.MerchantSig = ed25519.Sign(merchant, r.Body())
}

// Encode is the signed request (tag "signed-refund-request").
func (r *RefundRequest) Encode() []byte {
	e := NewEncoder("signed-refund-request")
	e.VarBytes(r.Body())
	e.Fixed(r.MerchantSig)
	return e.Bytes()
}

// DecodeRefundRequest parses a signed refund request; VerifyBody with the
// merchant account's key checks it.
func DecodeRefundRequest(b []byte) (*RefundRequest, error) {
	outer := NewDecoder("signed-refund-request", b)
	body := outer.VarBytes(MaxFieldLen)
	sig := outer.Fixed(ed25519.SignatureSize)
	if err := outer.Finish(); err != nil {
		return nil, err
	}
	d := NewDecoder("refund-request", body)
	r := &RefundRequest{MerchantSig: sig}
	copy(r.PaymentHash[:], d.Fixed(32))
	r.MerchantAccount = d.U64()
	r.RefundID = d.U64()
	r.Amount = d.Amount()
	r.CreatedAt = time.UnixMilli(d.I64())
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if r.Amount.IsZero() {
		return nil, fmt.Errorf("%w: zero refund", ErrBadAmount)
	}
	return r, nil
}

// Verify checks the merchant's signature with the merchant account's key.
func (r *RefundRequest) Verify(merchantPub ed25519.PublicKey) error {
	return VerifyBody(merchantPub, r.Body(), r.MerchantSig, "refund request")
}

// RefundedCoin is value a refund restored to one coin.
type RefundedCoin struct {
	Coin  Hash // coin id
	Value Amount
}

// RefundReceipt is the bank's signed statement that a refund was applied:
// each listed coin regained its Value, Total in all, and the merchant was
// debited Total plus Fee (the refund fees of those coins).
type RefundReceipt struct {
	RefundHash      Hash // RefundRequest.Hash
	PaymentHash     Hash
	MerchantAccount uint64
	Total           Amount
	Fee             Amount         // in Total's currency; zero: none
	Coins           []RefundedCoin // in payment order
	RefundedAt      time.Time
	SignerPub       ed25519.PublicKey
	Sig             []byte
}

// Body is the canonical encoding the bank signs (tag "refund-receipt").
func (r *RefundReceipt) Body() []byte {
	e := NewEncoder("refund-receipt")
	e.Fixed(r.RefundHash[:])
	e.Fixed(r.PaymentHash[:])
	e.U64(r.MerchantAccount)
	e.Amount(r.Total)
	e.U64(r.Fee.Value)
	e.U32(uint32(len(r.Coins)))
	for _, c := range r.Coins {
		e.Fixed(c.Coin[:])
		e.Amount(c.Value)
	}
	e.I64(r.RefundedAt.UnixMilli())
	e.Fixed(r.SignerPub)
	return e.Bytes()
}

// Encode is the signed receipt (tag "signed-refund-receipt").
func (r *RefundReceipt) Encode() []byte {
	e := NewEncoder("signed-refund-receipt")
	e.VarBytes(r.Body())
	e.Fixed(r.Sig)
	return e.Bytes()
}

// DecodeRefundReceipt parses a signed refund receipt; Verify checks it.
func DecodeRefundReceipt(b []byte) (*RefundReceipt, error) {
	outer := NewDecoder("signed-refund-receipt", b)
	body := outer.VarBytes(MaxFieldLen)
	sig := outer.Fixed(ed25519.SignatureSize)
	if err := outer.Finish(); err != nil {
		return nil, err
	}
	d := NewDecoder("refund-receipt", body)
	r := &RefundReceipt{Sig: sig}
	copy(r.RefundHash[:], d.Fixed(32))
	copy(r.PaymentHash[:], d.Fixed(32))
	r.MerchantAccount = d.U64()
	r.Total = d.Amount()
	r.Fee = Amount{Currency: r.Total.Currency, Value: d.U64()}
	n := d.Count(MaxCoinsPerRequest)
	for i := 0; i < n && d.Err() == nil; i++ {
		var c RefundedCoin
		copy(c.Coin[:], d.Fixed(32))
		c.Value = d.Amount()
		r.Coins = append(r.Coins, c)
	}
	r.RefundedAt = time.UnixMilli(d.I64())
	r.SignerPub = d.Fixed(ed25519.PublicKeySize)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if r.Fee.Value > MaxValue {
		return nil, fmt.Errorf("%w: refund fee of %d minor units", ErrBadAmount, r.Fee.Value)
	}
	sum := Amount{Currency: r.Total.Currency}
	for _, c := range r.Coins {
		var err error
		if c.Value.IsZero() || c.Value.Currency != r.Total.Currency {
			return nil, fmt.Errorf("%w: refund of %s to a coin in a %s refund", ErrBadAmount, c.Value, r.Total)
		}
		if sum, err = sum.Add(c.Value); err != nil {
			return nil, err
		}
	}
	if n == 0 || sum != r.Total {
		return nil, fmt.Errorf("%w: refund receipt's coins total %s, not %s", ErrMalformed, sum, r.Total)
	}
	return r, nil
}

// Verify checks the receipt against the bank's key set and, if req is not
// nil, that it answers req.
func (r *RefundReceipt) Verify(ks *KeySet, req *RefundRequest) error {
	if err := ks.CheckSigner(r.SignerPub, r.RefundedAt); err != nil {
		return fmt.Errorf("%w: refund receipt: %w", ErrBadSignature, err)
	}
	if err := VerifyBody(r.SignerPub, r.Body(), r.Sig, "refund receipt"); err != nil {
		return err
	}
	if req != nil && (r.RefundHash != req.Hash() || r.PaymentHash != req.PaymentHash ||
		r.MerchantAccount != req.MerchantAccount || r.Total != req.Amount) {
		return fmt.Errorf("%w: refund receipt is for another refund", ErrBadSignature)
	}
	return nil
}
