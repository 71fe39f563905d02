package echeck

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// Decision is the bank's answer to an endorsed EPO.
type Decision uint8

const (
	Approved Decision = 1 // the customer was debited and the merchant credited
	Declined Decision = 2 // no money moved; Reason says why
)

func (d Decision) String() string {
	switch d {
	case Approved:
		return "approved"
	case Declined:
		return "declined"
	}
	return fmt.Sprintf("decision(%d)", uint8(d))
}

// Common decline reasons. Clients show Reason verbatim; these constants only
// keep the bank's wording stable.
const (
	ReasonInsufficientFunds = "insufficient funds"
	ReasonLimitExceeded     = "spending limit exceeded"
	ReasonAccountLocked     = "account locked"
	ReasonExpired           = "EPO expired"
	ReasonBadKey            = "goods key does not match its commitment"
	ReasonNotAuthorized     = "not authorized"
	ReasonCurrency          = "currency not accepted"
)

// Receipt is the bank's signed decision on one EPO (NetBill step 7), sent to
// the merchant, forwarded to the customer (step 8), and returned again by a
// status query. An approving receipt for goods carries K; no other receipt
// carries a key.
type Receipt struct {
	EPOID           EPOID
	Decision        Decision
	Reason          string     // empty if approved; non-empty if declined (≤ MaxReasonLen)
	EPOHash         ecash.Hash // SignedEPO.Hash of the EPO decided on
	Kind            Kind
	Customer        ed25519.PublicKey
	ProductID       string
	Price           ecash.Amount
	MerchantAccount uint64
	Key             [32]byte // K if approved goods, else zero
	DecidedAt       time.Time
	SignerPub       ed25519.PublicKey // the bank's online signing key
	Sig             []byte
}

// NewReceipt builds and signs the bank's receipt for epo. key must be the
// opened, commitment-checked K for an approved goods EPO and zero
// otherwise; reason must be empty for an approval and non-empty for a
// decline.
func NewReceipt(epo *SignedEPO, d Decision, reason string, key [32]byte, decidedAt time.Time, bank ed25519.PrivateKey) (*Receipt, error) {
	r := &Receipt{
		EPOID:           epo.EPOID,
		Decision:        d,
		Reason:          reason,
		EPOHash:         epo.Hash(),
		Kind:            epo.Kind,
		Customer:        epo.Customer,
		ProductID:       epo.ProductID,
		Price:           epo.Price,
		MerchantAccount: epo.MerchantAccount,
		Key:             key,
		DecidedAt:       decidedAt,
	}
	r.SignerPub = bank.Public().(ed25519.PublicKey)
	if err := r.check(); err != nil {
		return nil, err
	}
	if d == Approved && epo.Kind == KindGoods {
		if err := CheckKey(key, epo.KeyCommit); err != nil {
			return nil, err
		}
	}
	r.Sign(bank)
	return r, nil
}

// Body is the canonical encoding the bank signs (tag "epo-receipt").
func (r *Receipt) Body() []byte {
	e := ecash.NewEncoder("epo-receipt")
	putEPOID(e, r.EPOID)
	e.U8(uint8(r.Decision))
	e.String(r.Reason)
	e.Fixed(r.EPOHash[:])
	e.U8(uint8(r.Kind))
	e.Fixed(r.Customer)
	e.String(r.ProductID)
	e.Amount(r.Price)
	e.U64(r.MerchantAccount)
	e.Fixed(r.Key[:])
	e.I64(r.DecidedAt.UnixMilli())
	e.Fixed(r.SignerPub)
	return e.Bytes()
}

// Sign sets SignerPub to bank's public key and signs the body.
func (r *Receipt) Sign(bank ed25519.PrivateKey) {
	r.SignerPub = bank.Public().(ed25519.PublicKey)
	r.Sig = ecash.SignBody(bank, r.Body())
}

// Encode is the signed receipt (tag "signed-epo-receipt"). The bank stores
// these bytes and returns them unchanged to every later query.
func (r *Receipt) Encode() []byte { return signedForm("signed-epo-receipt", r.Body(), r.Sig) }

// Hash is SHA-256(Encode()): the AAD of the customer block.
func (r *Receipt) Hash() ecash.Hash { return ecash.HashOf(r.Encode()) }

// DecodeReceipt parses a signed receipt and checks its structure; Verify
// checks the signature.
func DecodeReceipt(b []byte) (*Receipt, error) {
	body, sig, err := openSigned("signed-epo-receipt", b, ecash.MaxFieldLen)
	if err != nil {
		return nil, err
	}
	rd := newReader("epo-receipt", body)
	r := &Receipt{Sig: sig, EPOID: rd.epoid(), Decision: Decision(rd.u8())}
	r.Reason = rd.str(MaxReasonLen, "reason")
	r.EPOHash = rd.hash()
	r.Kind = Kind(rd.u8())
	r.Customer = rd.pub()
	r.ProductID = rd.str(MaxProductIDLen, "product id")
	r.Price = rd.amount()
	r.MerchantAccount = rd.u64()
	r.Key = rd.key32()
	r.DecidedAt = rd.time()
	r.SignerPub = rd.pub()
	if rd.ok() {
		rd.fail(r.check())
	}
	if err := rd.finish(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Receipt) check() error {
	if r.EPOID.Timestamp.UnixMilli() < 0 {
		return malformed("EPOID timestamp before 1970")
	}
	if err := checkKindFields(r.Kind, r.ProductID); err != nil {
		return err
	}
	if err := ecash.CheckText(r.Reason, MaxReasonLen, "reason"); err != nil {
		return err
	}
	if len(r.Customer) != ed25519.PublicKeySize || len(r.SignerPub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: receipt key of wrong length", ecash.ErrBadKey)
	}
	if err := r.Price.Validate(); err != nil {
		return err
	}
	if r.Price.IsZero() {
		return fmt.Errorf("%w: zero price", ecash.ErrBadAmount)
	}
	hasKey := !isZero32(r.Key)
	switch r.Decision {
	case Approved:
		if r.Reason != "" {
			return malformed("approval with a reason")
		}
		if hasKey != (r.Kind == KindGoods) {
			return malformed("approved %s receipt: key present %v", r.Kind, hasKey)
		}
	case Declined:
		if r.Reason == "" {
			return malformed("decline without a reason")
		}
		if hasKey {
			return malformed("decline carries a key")
		}
	default:
		return malformed("unknown decision %d", uint8(r.Decision))
	}
	return nil
}

// Verify checks that the receipt is well formed and signed by
// bankSigningPub (the bank's online signing key from its key set).
func (r *Receipt) Verify(bankSigningPub ed25519.PublicKey) error {
	if err := r.check(); err != nil {
		return err
	}
	if !sameKey(r.SignerPub, bankSigningPub) {
		return fmt.Errorf("%w: receipt signed by an unknown bank key", ecash.ErrBadSignature)
	}
	return ecash.VerifyBody(r.SignerPub, r.Body(), r.Sig, "EPO receipt")
}

// CheckEPO reports whether the receipt decides exactly epo: its hash and
// the fields the receipt repeats. It does not verify signatures.
func (r *Receipt) CheckEPO(epo *SignedEPO) error {
	if r.EPOHash != epo.Hash() || !r.EPOID.Equal(epo.EPOID) || r.Kind != epo.Kind ||
		!sameKey(r.Customer, epo.Customer) || r.ProductID != epo.ProductID || r.Price != epo.Price ||
		r.MerchantAccount != epo.MerchantAccount {
		return fmt.Errorf("%w: receipt decides another EPO", ErrMismatch)
	}
	return nil
}

// CheckKey reports whether the receipt releases a key matching commit (the
// EPO's KeyCommit), in constant time: ErrNoKey unless it is an approved
// goods receipt, ErrKeyMismatch if the key does not match.
func (r *Receipt) CheckKey(commit ecash.Hash) error {
	if r.Decision != Approved || r.Kind != KindGoods {
		return ErrNoKey
	}
	return CheckKey(r.Key, commit)
}

// OpenGoods is the customer's step 8: it verifies the bank's signature,
// that the receipt approves exactly epo, and K against the commitment, and
// decrypts the ciphertext.
func (r *Receipt) OpenGoods(bankSigningPub ed25519.PublicKey, epo *SignedEPO, ciphertext []byte) ([]byte, error) {
	if err := r.Verify(bankSigningPub); err != nil {
		return nil, err
	}
	if err := r.CheckEPO(epo); err != nil {
		return nil, err
	}
	if err := r.CheckKey(epo.KeyCommit); err != nil {
		return nil, err
	}
	if GoodsHash(ciphertext) != epo.GoodsHash {
		return nil, fmt.Errorf("%w: ciphertext is not the one signed for", ErrMismatch)
	}
	return DecryptGoods(r.Key, epo.EPOID, ciphertext)
}

// CustomerBlock is the part of the bank's answer only the customer may read
// (NetBill step 7, "for C only"): sealed to the reply key of the EPO's
// private part, with the receipt's hash as AAD.
type CustomerBlock struct {
	EPOID      EPOID
	Account    uint64
	NewBalance ecash.Amount
	LowBalance bool
}

// Encode is the canonical customer block (tag "customer-block").
func (c *CustomerBlock) Encode() []byte {
	e := ecash.NewEncoder("customer-block")
	putEPOID(e, c.EPOID)
	e.U64(c.Account)
	e.Amount(c.NewBalance)
	if c.LowBalance {
		e.U8(1)
	} else {
		e.U8(0)
	}
	return e.Bytes()
}

// DecodeCustomerBlock parses a customer block.
func DecodeCustomerBlock(b []byte) (*CustomerBlock, error) {
	r := newReader("customer-block", b)
	c := &CustomerBlock{EPOID: r.epoid(), Account: r.u64(), NewBalance: r.amount()}
	flag := r.u8()
	if r.ok() && flag > 1 {
		r.fail(malformed("low-balance flag %d", flag))
	}
	c.LowBalance = flag == 1
	if err := r.finish(); err != nil {
		return nil, err
	}
	return c, nil
}

// SealCustomerBlock seals block to the customer's reply key (EPOPrivate.
// ReplyKey), info InfoCustomerBlock, AAD = receiptHash (Receipt.Hash).
func SealCustomerBlock(replyPub [32]byte, receiptHash ecash.Hash, block *CustomerBlock) ([]byte, error) {
	return ecash.Seal(replyPub[:], InfoCustomerBlock, receiptHash[:], block.Encode())
}

// OpenCustomerBlock opens what SealCustomerBlock produced.
func OpenCustomerBlock(replyPriv *ecdh.PrivateKey, receiptHash ecash.Hash, sealed []byte) (*CustomerBlock, error) {
	pt, err := ecash.Open(replyPriv, InfoCustomerBlock, receiptHash[:], sealed)
	if err != nil {
		return nil, fmt.Errorf("echeck: customer block does not open: %w", err)
	}
	return DecodeCustomerBlock(pt)
}
