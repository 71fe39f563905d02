package ecash

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
)

// DepositReceipt is the bank's signed statement that a payment was credited.
type DepositReceipt struct {
	PaymentHash     Hash
	MerchantAccount uint64
	Total           Amount
	Coins           []Hash // coin ids, in payment order
	DepositedAt     time.Time
	SignerPub       ed25519.PublicKey // the bank's online signing key
	Sig             []byte
}

// Body is the canonical encoding the bank signs (tag "deposit-receipt").
func (r *DepositReceipt) Body() []byte {
	e := NewEncoder("deposit-receipt")
	e.Fixed(r.PaymentHash[:])
	e.U64(r.MerchantAccount)
	e.Amount(r.Total)
	e.U32(uint32(len(r.Coins)))
	for _, c := range r.Coins {
		e.Fixed(c[:])
	}
	e.I64(r.DepositedAt.UnixMilli())
	e.Fixed(r.SignerPub)
	return e.Bytes()
}

// Encode is the signed receipt (tag "signed-deposit-receipt").
func (r *DepositReceipt) Encode() []byte {
	e := NewEncoder("signed-deposit-receipt")
	e.VarBytes(r.Body())
	e.Fixed(r.Sig)
	return e.Bytes()
}

// DecodeDepositReceipt parses a signed receipt; Verify checks it.
func DecodeDepositReceipt(b []byte) (*DepositReceipt, error) {
	outer := NewDecoder("signed-deposit-receipt", b)
	body := outer.VarBytes(MaxFieldLen)
	sig := outer.Fixed(ed25519.SignatureSize)
	if err := outer.Finish(); err != nil {
		return nil, err
	}
	d := NewDecoder("deposit-receipt", body)
	r := &DepositReceipt{Sig: sig}
	copy(r.PaymentHash[:], d.Fixed(32))
	r.MerchantAccount = d.U64()
	r.Total = d.Amount()
	n := d.Count(MaxCoinsPerRequest)
	for i := 0; i < n && d.Err() == nil; i++ {
		var h Hash
		copy(h[:], d.Fixed(32))
		r.Coins = append(r.Coins, h)
	}
	r.DepositedAt = time.UnixMilli(d.I64())
	r.SignerPub = d.Fixed(ed25519.PublicKeySize)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return r, nil
}

// Verify checks the receipt against the bank's key set and the payment
// request it should answer.
func (r *DepositReceipt) Verify(ks *KeySet, req *PaymentRequest) error {
	// The signing key rotates; a retired key's receipts stay valid for
	// what it signed while current.
	if err := ks.CheckSigner(r.SignerPub, r.DepositedAt); err != nil {
		return fmt.Errorf("%w: receipt: %w", ErrBadSignature, err)
	}
	if err := VerifyBody(r.SignerPub, r.Body(), r.Sig, "deposit receipt"); err != nil {
		return err
	}
	if req != nil {
		if r.PaymentHash != req.Hash() || r.MerchantAccount != req.MerchantAccount || r.Total != req.Amount {
			return fmt.Errorf("%w: receipt is for another payment", ErrBadSignature)
		}
	}
	return nil
}

// DoubleSpendProof shows that a coin was already spent: the earlier deposit
// permission signed by the coin itself, countersigned by the bank. Anyone
// holding the key set can check it; no trust in the bank's word is needed
// for the coin's part.
type DoubleSpendProof struct {
	Earlier    DepositPermission
	DetectedAt time.Time
	SignerPub  ed25519.PublicKey
	BankSig    []byte
}

// Body is the canonical encoding the bank signs (tag "double-spend-proof").
func (p *DoubleSpendProof) Body() []byte {
	e := NewEncoder("double-spend-proof")
	e.VarBytes(p.Earlier.Encode())
	e.I64(p.DetectedAt.UnixMilli())
	e.Fixed(p.SignerPub)
	return e.Bytes()
}

// Encode is the signed proof (tag "signed-double-spend-proof").
func (p *DoubleSpendProof) Encode() []byte {
	e := NewEncoder("signed-double-spend-proof")
	e.VarBytes(p.Body())
	e.Fixed(p.BankSig)
	return e.Bytes()
}

// DecodeDoubleSpendProof parses a signed proof; Verify checks it.
func DecodeDoubleSpendProof(b []byte) (*DoubleSpendProof, error) {
	outer := NewDecoder("signed-double-spend-proof", b)
	body := outer.VarBytes(MaxFieldLen)
	sig := outer.Fixed(ed25519.SignatureSize)
	if err := outer.Finish(); err != nil {
		return nil, err
	}
	d := NewDecoder("double-spend-proof", body)
	p := &DoubleSpendProof{BankSig: sig}
	earlier, err := DecodeDepositPermission(d.VarBytes(MaxFieldLen))
	if err != nil {
		return nil, err
	}
	p.Earlier = *earlier
	p.DetectedAt = time.UnixMilli(d.I64())
	p.SignerPub = d.Fixed(ed25519.PublicKeySize)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return p, nil
}

// Verify checks all three signatures: the denomination's on the coin, the
// coin's on the earlier permission, and the bank's on the proof.
func (p *DoubleSpendProof) Verify(ks *KeySet) error {
	if err := ks.CheckSigner(p.SignerPub, p.DetectedAt); err != nil {
		return fmt.Errorf("%w: proof: %w", ErrBadSignature, err)
	}
	if err := VerifyBody(p.SignerPub, p.Body(), p.BankSig, "double-spend proof"); err != nil {
		return err
	}
	d, err := ks.Denomination(p.Earlier.Coin.Denom)
	if err != nil {
		return err
	}
	if d.Value != p.Earlier.Value {
		return fmt.Errorf("%w: proof states the wrong coin value", ErrBadSignature)
	}
	if err := p.Earlier.Coin.Verify(d.Key); err != nil {
		return err
	}
	return p.Earlier.Verify()
}

// DoubleSpendError carries the proof across layers.
type DoubleSpendError struct{ Proof *DoubleSpendProof }

// ErrDoubleSpend is matched by errors.Is on a *DoubleSpendError.
var ErrDoubleSpend = errors.New("ecash: coin already spent")

func (e *DoubleSpendError) Error() string {
	id := e.Proof.Earlier.Coin.ID()
	return fmt.Sprintf("ecash: coin %x already spent in payment %x", id[:8], e.Proof.Earlier.PaymentHash[:8])
}

func (e *DoubleSpendError) Is(target error) bool { return target == ErrDoubleSpend }
