package echeck

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"

	"github.com/blindbank/blindbank/ecash"
)

// Endorsement is NetBill step 6, merchant to bank: the customer's signed EPO
// byte for byte, the merchant's account and memo, and K sealed to the bank
// (none for a check), all signed by the merchant. Sending it is the
// merchant's point of no return: from then on the bank can release K.
type Endorsement struct {
	EPO             []byte // SignedEPO.Encode(), exactly as the customer sent it
	MerchantAccount uint64 // must equal the EPO's
	Memo            string // the merchant's memo (≤ MaxMemoLen)
	SealedKey       []byte // K, HPKE to the bank, info InfoGoodsKey, AAD = EPO hash; empty for checks
	MerchantSig     []byte // over Body
}

// NewEndorsement endorses epo for the merchant's account: it verifies the
// customer's signature, checks that the EPO names this merchant key and
// account, checks key (required for goods, nil for checks) against the EPO's
// commitment, seals it to the bank's HPKE public key, and signs. The merchant
// should also have checked EPO.CheckOffer and Validate(now).
func NewEndorsement(epo *SignedEPO, account uint64, memo string, key *[32]byte, bankHPKE []byte, merchant ed25519.PrivateKey) (*Endorsement, error) {
	if err := epo.VerifyCustomer(); err != nil {
		return nil, err
	}
	if !sameKey(merchant.Public().(ed25519.PublicKey), epo.MerchantPub) || account != epo.MerchantAccount {
		return nil, fmt.Errorf("%w: EPO names another merchant key or account", ErrMismatch)
	}
	if err := ecash.CheckText(memo, MaxMemoLen, "memo"); err != nil {
		return nil, err
	}
	enc := epo.Encode()
	e := &Endorsement{EPO: enc, MerchantAccount: account, Memo: memo}
	switch {
	case epo.Kind == KindGoods && key == nil:
		return nil, fmt.Errorf("%w: goods EPO endorsed without its key", ErrNoKey)
	case epo.Kind == KindCheck && key != nil:
		return nil, malformed("check endorsed with a goods key")
	case key != nil:
		if err := CheckKey(*key, epo.KeyCommit); err != nil {
			return nil, err
		}
		h := ecash.HashOf(enc)
		sealed, err := ecash.Seal(bankHPKE, InfoGoodsKey, h[:], key[:])
		if err != nil {
			return nil, err
		}
		e.SealedKey = sealed
	}
	e.MerchantSig = ecash.SignBody(merchant, e.Body())
	return e, nil
}

// Body is the canonical encoding the merchant signs (tag "endorsement").
func (e *Endorsement) Body() []byte {
	enc := ecash.NewEncoder("endorsement")
	enc.VarBytes(e.EPO)
	enc.U64(e.MerchantAccount)
	enc.String(e.Memo)
	enc.VarBytes(e.SealedKey)
	return enc.Bytes()
}

// Encode is the signed endorsement (tag "signed-endorsement").
func (e *Endorsement) Encode() []byte {
	return signedForm("signed-endorsement", e.Body(), e.MerchantSig)
}

// EPOHash is SHA-256 of the endorsed EPO bytes (SignedEPO.Hash).
func (e *Endorsement) EPOHash() ecash.Hash { return ecash.HashOf(e.EPO) }

// DecodeEndorsement parses a signed endorsement, including the structure of
// the EPO inside; Verify checks the signatures.
func DecodeEndorsement(b []byte) (*Endorsement, error) { return decodeEndorsement(b, false) }

// DecodeRecordedEndorsement parses a record of an endorsement already
// signed and sent (the bank's stored copy, a till's transcript), as
// DecodeEndorsement does except that the merchant's memo is held to the
// rule of the builds that signed it (at most MaxMemoLen bytes of UTF-8,
// control characters allowed): an order recorded before memos followed
// ecash.CheckText must still be answered for and audited. Never for bytes
// being accepted as a new endorsement. The memo's encoding is the same
// under both rules, so Encode gives back exactly the recorded bytes.
func DecodeRecordedEndorsement(b []byte) (*Endorsement, error) { return decodeEndorsement(b, true) }

func decodeEndorsement(b []byte, recorded bool) (*Endorsement, error) {
	body, sig, err := openSigned("signed-endorsement", b, ecash.MaxFieldLen)
	if err != nil {
		return nil, err
	}
	r := newReader("endorsement", body)
	r.recorded = recorded
	e := &Endorsement{MerchantSig: sig}
	e.EPO = r.bytes(MaxSignedEPOLen, "signed EPO")
	e.MerchantAccount = r.u64()
	e.Memo = r.str(MaxMemoLen, "memo")
	e.SealedKey = r.bytes(SealedKeyLen, "sealed key")
	if err := r.finish(); err != nil {
		return nil, err
	}
	if _, err := e.signedEPO(recorded); err != nil {
		return nil, err
	}
	return e, nil
}

// signedEPO decodes the endorsed EPO and checks the structural rules that
// tie the endorsement to it (the memo by recordedText for a record).
func (e *Endorsement) signedEPO(recorded bool) (*SignedEPO, error) {
	if err := checkText(e.Memo, MaxMemoLen, "memo", recorded); err != nil {
		return nil, err
	}
	epo, err := DecodeSignedEPO(e.EPO)
	if err != nil {
		return nil, err
	}
	switch epo.Kind {
	case KindGoods:
		if len(e.SealedKey) != SealedKeyLen {
			return nil, malformed("goods endorsement with a sealed key of %d bytes, want %d", len(e.SealedKey), SealedKeyLen)
		}
	case KindCheck:
		if len(e.SealedKey) != 0 {
			return nil, malformed("check endorsement carries a sealed key")
		}
	}
	return epo, nil
}

// Verify checks the endorsement as the bank does before deciding: the
// endorsed EPO's structure and customer signature, that merchantPub (the key
// the bank holds for the merchant's account) is the EPO's merchant key and
// signed this endorsement, and that the endorsement credits the account the
// customer named. The merchant's signature covers the customer's signed EPO
// byte for byte, so a merchant that altered any field (price, goods hash,
// key commitment, EPOID, …) after the customer signed fails the customer's
// signature here. It returns the EPO. Validate(now), OpenPrivate and OpenKey
// remain to be done.
func (e *Endorsement) Verify(merchantPub ed25519.PublicKey) (*SignedEPO, error) {
	return e.verify(merchantPub, false)
}

// VerifyRecorded is Verify for an endorsement read by
// DecodeRecordedEndorsement: the memo is held to the earlier rule, and
// everything else, the signatures over the same canonical bodies first, as
// Verify holds it. Never for an endorsement being accepted.
func (e *Endorsement) VerifyRecorded(merchantPub ed25519.PublicKey) (*SignedEPO, error) {
	return e.verify(merchantPub, true)
}

func (e *Endorsement) verify(merchantPub ed25519.PublicKey, recorded bool) (*SignedEPO, error) {
	epo, err := e.signedEPO(recorded)
	if err != nil {
		return nil, err
	}
	if err := epo.VerifyCustomer(); err != nil {
		return nil, err
	}
	if err := checkPub(merchantPub, "merchant key"); err != nil {
		return nil, err
	}
	if !sameKey(merchantPub, epo.MerchantPub) {
		return nil, fmt.Errorf("%w: EPO is payable to another merchant key", ErrMismatch)
	}
	if err := ecash.VerifyBody(merchantPub, e.Body(), e.MerchantSig, "endorsement"); err != nil {
		return nil, err
	}
	if e.MerchantAccount != epo.MerchantAccount {
		return nil, fmt.Errorf("%w: endorsement credits account %d, the customer named %d", ErrMismatch, e.MerchantAccount, epo.MerchantAccount)
	}
	return epo, nil
}

// OpenKey opens K with the bank's HPKE private key and checks it against the
// EPO's key commitment in constant time (ErrKeyMismatch). A check has no
// key (ErrNoKey).
func (e *Endorsement) OpenKey(bank *ecdh.PrivateKey) ([32]byte, error) {
	epo, err := e.signedEPO(false)
	if err != nil {
		return [32]byte{}, err
	}
	if epo.Kind != KindGoods {
		return [32]byte{}, ErrNoKey
	}
	h := e.EPOHash()
	pt, err := ecash.Open(bank, InfoGoodsKey, h[:], e.SealedKey)
	if err != nil {
		return [32]byte{}, fmt.Errorf("echeck: sealed goods key does not open: %w", err)
	}
	if len(pt) != 32 {
		return [32]byte{}, malformed("sealed goods key of %d bytes", len(pt))
	}
	var key [32]byte
	copy(key[:], pt)
	if err := CheckKey(key, epo.KeyCommit); err != nil {
		return [32]byte{}, err
	}
	return key, nil
}
