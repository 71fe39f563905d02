package ecash

import (
	"crypto/ed25519"
	"fmt"
)

// What an account key signs to authorise a debit. Each signature input
// holds only the public facts the bank's audit log records of the debit
// and a digest of the rest, so that an auditor verifies the customer's
// signature from the log alone (docs/AUDITLOG.md), and the log holds
// nothing that links a withdrawal to the deposit of its coins.

// WithdrawSignatureInput is what the account key signs for a withdrawal
// (tag "withdraw-signature"): the account debited, the amount debited (the
// sum, over the planchets, of their denomination's value and withdraw fee)
// and SHA-256 of the
// withdraw-request body (the request hash, which covers the blinded
// planchets).
func WithdrawSignatureInput(account uint64, amount Amount, requestHash Hash) []byte {
	e := NewEncoder("withdraw-signature")
	e.U64(account)
	e.Amount(amount)
	e.Fixed(requestHash[:])
	return e.Bytes()
}

// SignWithdraw signs the withdraw-request body for amount with the account
// key: the signature that travels beside the body.
func SignWithdraw(account ed25519.PrivateKey, w *WithdrawRequest, amount Amount) []byte {
	return ed25519.Sign(account, WithdrawSignatureInput(w.Account, amount, HashOf(w.Body())))
}

// WithdrawAmount is the amount a withdraw request debits: the sum of what
// each planchet's denomination debits, as debit returns it — its value plus
// its withdraw fee (ok false: a denomination it does not know, refused with
// ErrUnknownDenomination).
func WithdrawAmount(w *WithdrawRequest, debit func(Hash) (Amount, bool)) (Amount, error) {
	if len(w.Planchets) == 0 {
		return Amount{}, fmt.Errorf("%w: withdraw of no coins", ErrMalformed)
	}
	var total Amount
	for i, p := range w.Planchets {
		v, ok := debit(p.Denom)
		if !ok {
			return Amount{}, fmt.Errorf("%w: planchet %d", ErrUnknownDenomination, i)
		}
		if i == 0 {
			total.Currency = v.Currency
		}
		var err error
		if total, err = total.Add(v); err != nil {
			return Amount{}, err
		}
	}
	return total, nil
}

// EPOSignatureInput is what a customer signs for a NetBill payment order
// (tag "epo-signature"; docs/PROTOCOL.md §9.10): the EPOID in its text
// form, the price, the merchant account credited, and the parts hash (see
// EPOPartsHash) of the clear order and its sealed private part.
func EPOSignatureInput(epoid string, price Amount, merchant uint64, parts Hash) []byte {
	e := NewEncoder("epo-signature")
	e.String(epoid)
	e.Amount(price)
	e.U64(merchant)
	e.Fixed(parts[:])
	return e.Bytes()
}

// EPOPartsHash is SHA-256 of tag("epo-parts") · SHA-256(clear epo body) ·
// SHA-256(sealed private part): one digest of both halves of the order. The
// sealed part is randomised, so the digest reveals nothing of the clear
// order (its product, say) to anyone who does not hold it.
func EPOPartsHash(clearHash, privateHash Hash) Hash {
	e := NewEncoder("epo-parts")
	e.Fixed(clearHash[:])
	e.Fixed(privateHash[:])
	return HashOf(e.Bytes())
}

// WithdrawAmount is the amount w debits at a bank with this key set: the
// sum of its planchets' denominations' values and withdraw fees.
func (k *KeySet) WithdrawAmount(w *WithdrawRequest) (Amount, error) {
	return WithdrawAmount(w, func(id Hash) (Amount, bool) {
		d, err := k.Denomination(id)
		if err != nil {
			return Amount{}, false
		}
		v, err := d.WithdrawDebit()
		return v, err == nil
	})
}
