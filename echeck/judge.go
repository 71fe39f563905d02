package echeck

import (
	"crypto/ed25519"
	"fmt"
)

// Outcome is what Judge finds.
type Outcome uint8

const (
	// InvalidClaim: the records do not support a dispute. The customer's
	// signature on the EPO or the bank's on the receipt does not verify, the
	// receipt decides another EPO, the receipt is a decline (the customer
	// was not charged), or the EPO is a check (there are no goods).
	InvalidClaim Outcome = iota + 1
	// NoFault: the customer was charged and the released K opens the
	// ciphertext the customer signed for. The goods were delivered as
	// agreed; what they contain is beyond the records.
	NoFault
	// MerchantFault: the customer was charged for the ciphertext it signed
	// for, but the K in the bank's approving receipt does not match the
	// commitment the customer signed, or does not open that ciphertext. The
	// merchant supplied both the commitment and the ciphertext, so the
	// customer is owed a refund. (blindbank's bank checks K against the
	// commitment before approving, so the first case also shows a faulty
	// bank.)
	MerchantFault
	// CustomerFault: the ciphertext presented is not the one the customer
	// signed for (its SHA-256 differs from the EPO's GoodsHash); the
	// customer's claim about these bytes has no standing.
	CustomerFault
)

func (o Outcome) String() string {
	switch o {
	case InvalidClaim:
		return "invalid claim"
	case NoFault:
		return "no fault"
	case MerchantFault:
		return "merchant fault"
	case CustomerFault:
		return "customer fault"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Verdict is Judge's finding and the rule that decided it.
type Verdict struct {
	Outcome Outcome
	Reason  string
}

func (v Verdict) String() string { return v.Outcome.String() + ": " + v.Reason }

// Judge decides a "wrong key / wrong goods" dispute from signed records
// alone (NetBill's certified delivery): the bank's receipt, the customer's
// signed EPO, and the ciphertext the customer claims to have received. It
// needs no testimony and no secret. The rules, in order:
//
//  1. r and epo present, the customer's signature on epo verifies, r verifies
//     under bankSigningPub, and r decides exactly epo (hash and repeated
//     fields); else InvalidClaim.
//  2. r approves a goods EPO; else InvalidClaim (a declined customer was not
//     charged; a check has no goods).
//  3. SHA-256(ciphertext) equals the GoodsHash the customer signed; else
//     CustomerFault.
//  4. KeyCommit(r.Key) equals the KeyCommit the customer signed; else
//     MerchantFault.
//  5. r.Key opens the ciphertext (ChaCha20-Poly1305, AAD = EPOID); else
//     MerchantFault.
//  6. Otherwise NoFault.
func Judge(r *Receipt, epo *SignedEPO, ciphertext []byte, bankSigningPub ed25519.PublicKey) Verdict {
	invalid := func(format string, args ...any) Verdict {
		return Verdict{InvalidClaim, fmt.Sprintf(format, args...)}
	}
	if r == nil || epo == nil {
		return invalid("receipt and signed EPO are both required")
	}
	if err := epo.VerifyCustomer(); err != nil {
		return invalid("customer signature on the EPO: %v", err)
	}
	if err := r.Verify(bankSigningPub); err != nil {
		return invalid("bank signature on the receipt: %v", err)
	}
	if err := r.CheckEPO(epo); err != nil {
		return invalid("%v", err)
	}
	if r.Decision != Approved {
		return invalid("the receipt declines the EPO (%s): the customer was not charged", r.Reason)
	}
	if epo.Kind != KindGoods {
		return invalid("the EPO is a %s: there are no goods", epo.Kind)
	}
	if GoodsHash(ciphertext) != epo.GoodsHash {
		return Verdict{CustomerFault, "the ciphertext presented is not the one the customer signed for"}
	}
	if err := CheckKey(r.Key, epo.KeyCommit); err != nil {
		return Verdict{MerchantFault, "the released key does not match the commitment the customer signed"}
	}
	if _, err := DecryptGoods(r.Key, epo.EPOID, ciphertext); err != nil {
		return Verdict{MerchantFault, "the committed key does not open the ciphertext the customer signed for"}
	}
	return Verdict{NoFault, "the released key opens the ciphertext the customer signed for"}
}
