package echeck

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// Kind says what an EPO pays for.
type Kind uint8

const (
	// KindGoods pays for encrypted goods (NetBill's eight steps). ProductID
	// is 1–128 bytes; GoodsHash, KeyCommit and PRDHash are non-zero; the
	// endorsement carries K sealed to the bank, and an approving receipt
	// carries K.
	KindGoods Kind = 1
	// KindCheck is a plain signed check: pay Price to a merchant account, no
	// goods. ProductID is an optional reference (0–128 bytes, e.g. an
	// invoice number); GoodsHash, KeyCommit and PRDHash are all zero; the
	// endorsement carries no key and no receipt ever does.
	KindCheck Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindGoods:
		return "goods"
	case KindCheck:
		return "check"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// checkKindFields enforces the per-kind rules shared by EPOs and receipts.
func checkKindFields(k Kind, productID string) error {
	switch k {
	case KindGoods:
		if productID == "" {
			return malformed("goods EPO without product id")
		}
	case KindCheck:
	default:
		return malformed("unknown EPO kind %d", uint8(k))
	}
	return ecash.CheckText(productID, MaxProductIDLen, "product id")
}

// EPO is the clear part of an electronic payment order (NetBill step 5):
// what the merchant sees and the customer signs (through SignedEPO).
type EPO struct {
	Kind            Kind
	Customer        ed25519.PublicKey // the customer's account key or a pseudonym
	ProductID       string
	Price           ecash.Amount // > 0
	MerchantAccount uint64       // the account to credit
	MerchantPub     ed25519.PublicKey
	GoodsHash       ecash.Hash // SHA-256 of the goods ciphertext (zero for checks)
	KeyCommit       ecash.Hash // KeyCommit(K) (zero for checks)
	PRDHash         ecash.Hash // SHA-256 of the product request data (zero for checks)
	EPOID           EPOID
	ExpiresAt       time.Time // the bank refuses the EPO from this instant on
}

// NewGoodsEPO builds the clear part of a goods EPO from the merchant's quote
// and delivery. The caller checks both first (Quote.Verify,
// Quote.CheckRequest, Delivery.Check).
func NewGoodsEPO(customer ed25519.PublicKey, q *Quote, d *Delivery, expiresAt time.Time) EPO {
	return EPO{
		Kind:            KindGoods,
		Customer:        customer,
		ProductID:       q.ProductID,
		Price:           q.Price,
		MerchantAccount: q.MerchantAccount,
		MerchantPub:     q.MerchantPub,
		GoodsHash:       d.GoodsHash,
		KeyCommit:       d.KeyCommit,
		PRDHash:         q.PRDHash,
		EPOID:           d.EPOID,
		ExpiresAt:       expiresAt,
	}
}

// Body is the canonical clear part (tag "epo").
func (e *EPO) Body() []byte {
	enc := ecash.NewEncoder("epo")
	enc.U8(uint8(e.Kind))
	enc.Fixed(e.Customer)
	enc.String(e.ProductID)
	enc.Amount(e.Price)
	enc.U64(e.MerchantAccount)
	enc.Fixed(e.MerchantPub)
	enc.Fixed(e.GoodsHash[:])
	enc.Fixed(e.KeyCommit[:])
	enc.Fixed(e.PRDHash[:])
	putEPOID(enc, e.EPOID)
	enc.I64(e.ExpiresAt.UnixMilli())
	return enc.Bytes()
}

// BodyHash is SHA-256(Body()): the AAD of the sealed private part and the
// first half of what the customer signs.
func (e *EPO) BodyHash() ecash.Hash { return ecash.HashOf(e.Body()) }

// DecodeEPO parses a clear EPO body and checks its structure (Validate
// checks keys and time).
func DecodeEPO(b []byte) (*EPO, error) {
	r := newReader("epo", b)
	e := &EPO{Kind: Kind(r.u8()), Customer: r.pub()}
	e.ProductID = r.str(MaxProductIDLen, "product id")
	e.Price = r.amount()
	e.MerchantAccount = r.u64()
	e.MerchantPub = r.pub()
	e.GoodsHash = r.hash()
	e.KeyCommit = r.hash()
	e.PRDHash = r.hash()
	e.EPOID = r.epoid()
	e.ExpiresAt = r.time()
	if r.ok() {
		r.fail(e.check())
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return e, nil
}

// check enforces everything about an EPO that does not need a clock.
func (e *EPO) check() error {
	if len(e.Customer) != ed25519.PublicKeySize || len(e.MerchantPub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: EPO key of wrong length", ecash.ErrBadKey)
	}
	if err := checkKindFields(e.Kind, e.ProductID); err != nil {
		return err
	}
	var zero ecash.Hash
	switch e.Kind {
	case KindGoods:
		if e.GoodsHash == zero || e.KeyCommit == zero || e.PRDHash == zero {
			return malformed("goods EPO without goods hash, key commitment or PRD hash")
		}
	case KindCheck:
		if e.GoodsHash != zero || e.KeyCommit != zero || e.PRDHash != zero {
			return malformed("check EPO with goods fields")
		}
	}
	if err := e.Price.Validate(); err != nil {
		return err
	}
	if e.Price.IsZero() {
		return fmt.Errorf("%w: zero price", ecash.ErrBadAmount)
	}
	ts, exp := e.EPOID.Timestamp.UnixMilli(), e.ExpiresAt.UnixMilli()
	if ts < 0 {
		return malformed("EPOID timestamp before 1970")
	}
	if exp <= ts || exp-ts > MaxEPOLifetime.Milliseconds() {
		return malformed("EPO expiry must lie in (EPOID time, EPOID time + %s]", MaxEPOLifetime)
	}
	return nil
}

// Validate checks what the bank checks before anything else (it does not
// verify the signature): the structure and kind rules, a positive price,
// canonical large-order keys, an EPOID not dated beyond now+MaxClockSkew,
// and that the EPO has not expired (now < ExpiresAt, in milliseconds).
func (e *EPO) Validate(now time.Time) error {
	if err := e.check(); err != nil {
		return err
	}
	if err := checkPub(e.Customer, "customer key"); err != nil {
		return err
	}
	if err := checkPub(e.MerchantPub, "merchant key"); err != nil {
		return err
	}
	n := now.UnixMilli()
	if e.EPOID.Timestamp.UnixMilli() > n+ecash.MaxClockSkew.Milliseconds() {
		return fmt.Errorf("%w: EPOID %s is dated in the future", ErrStale, e.EPOID)
	}
	if n >= e.ExpiresAt.UnixMilli() {
		return fmt.Errorf("%w: EPO %s expired at %s", ErrExpired, e.EPOID, e.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// CheckOffer reports whether a goods EPO is exactly what the merchant
// offered: its quote (customer, product, price, account, key, PRD hash) and
// its delivery (EPOID, goods hash matching the ciphertext, key commitment).
// The merchant calls it before endorsing; it does not verify signatures.
func (e *EPO) CheckOffer(q *Quote, d *Delivery) error {
	switch {
	case e.Kind != KindGoods:
		return fmt.Errorf("%w: %s EPO for a goods offer", ErrMismatch, e.Kind)
	case !sameKey(e.Customer, q.Customer) || e.ProductID != q.ProductID || e.Price != q.Price ||
		e.MerchantAccount != q.MerchantAccount || !sameKey(e.MerchantPub, q.MerchantPub) || e.PRDHash != q.PRDHash:
		return fmt.Errorf("%w: EPO differs from the quote", ErrMismatch)
	case !e.EPOID.Equal(d.EPOID) || e.GoodsHash != d.GoodsHash || e.KeyCommit != d.KeyCommit:
		return fmt.Errorf("%w: EPO differs from the delivery", ErrMismatch)
	}
	return d.Check()
}

// EPOPrivate is the part of the EPO only the bank can read (NetBill's
// "true identity, authorisation, account, nonce, memo"): sealed to the
// bank's HPKE key, so the merchant never sees the payment instructions.
type EPOPrivate struct {
	Account       uint64   // the account to debit
	Memo          string   // the customer's memo, for statements (≤ MaxMemoLen)
	Authorization []byte   // optional single-use authorisation (≤ MaxAuthorizationLen)
	ReplyKey      [32]byte // X25519 public key the customer block is sealed to
	Nonce         [16]byte // random: makes the sealed part unguessable
}

// Encode is the canonical private part (tag "epo-private").
func (p *EPOPrivate) Encode() []byte {
	e := ecash.NewEncoder("epo-private")
	e.U64(p.Account)
	e.String(p.Memo)
	e.VarBytes(p.Authorization)
	e.Fixed(p.ReplyKey[:])
	e.Fixed(p.Nonce[:])
	return e.Bytes()
}

// DecodeEPOPrivate parses a private part.
func DecodeEPOPrivate(b []byte) (*EPOPrivate, error) { return decodeEPOPrivate(b, false) }

func decodeEPOPrivate(b []byte, recorded bool) (*EPOPrivate, error) {
	r := newReader("epo-private", b)
	r.recorded = recorded
	p := &EPOPrivate{Account: r.u64()}
	p.Memo = r.str(MaxMemoLen, "memo")
	p.Authorization = r.bytes(MaxAuthorizationLen, "authorization")
	p.ReplyKey = r.key32()
	copy(p.Nonce[:], r.d.Fixed(16))
	if r.ok() {
		r.fail(p.check(recorded))
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return p, nil
}

// x25519Probe is a fixed X25519 private key used only to test whether a
// peer's public key is of low order (the shared secret is then all zero and
// crypto/ecdh refuses it).
var x25519Probe = func() *ecdh.PrivateKey {
	k, err := ecdh.X25519().NewPrivateKey(bytes.Repeat([]byte{0x5a}, 32))
	if err != nil {
		panic(err)
	}
	return k
}()

// checkX25519 refuses reply keys the bank could not seal to.
func checkX25519(pub [32]byte) error {
	pk, err := ecdh.X25519().NewPublicKey(pub[:])
	if err == nil {
		_, err = x25519Probe.ECDH(pk)
	}
	if err != nil {
		return fmt.Errorf("%w: reply key is not a usable X25519 key", ecash.ErrBadKey)
	}
	return nil
}

func (p *EPOPrivate) check(recorded bool) error {
	if err := checkText(p.Memo, MaxMemoLen, "memo", recorded); err != nil {
		return err
	}
	if len(p.Authorization) > MaxAuthorizationLen {
		return malformed("authorization of %d bytes exceeds %d", len(p.Authorization), MaxAuthorizationLen)
	}
	return checkX25519(p.ReplyKey)
}

// SignedEPO is the customer's signed electronic payment order: the clear
// part, the private part sealed to the bank, and the customer's Ed25519
// signature over SignatureInput, SET's dual signature: it covers the clear
// body and the sealed part by hash, so the merchant verifies it without
// opening the private part, and neither half can be swapped. Body and
// BodyHash (promoted from EPO) are the clear part's; Encode and Hash are the
// whole signed EPO's.
type SignedEPO struct {
	EPO
	SealedPrivate []byte // HPKE to the bank, info InfoEPOPrivate, AAD = BodyHash()
	CustomerSig   []byte
}

// NewSignedEPO seals priv to the bank's HPKE public key (32 bytes, from the
// key set) and signs, with customer's key, the order epo. The customer key
// must be epo.Customer. Draw priv.Nonce from a CSPRNG. Sending the result
// is the customer's point of no return.
func NewSignedEPO(epo EPO, priv EPOPrivate, bankHPKE []byte, customer ed25519.PrivateKey) (*SignedEPO, error) {
	if err := epo.check(); err != nil {
		return nil, err
	}
	if err := checkPub(epo.Customer, "customer key"); err != nil {
		return nil, err
	}
	if err := checkPub(epo.MerchantPub, "merchant key"); err != nil {
		return nil, err
	}
	if !sameKey(customer.Public().(ed25519.PublicKey), epo.Customer) {
		return nil, fmt.Errorf("%w: signing key is not the EPO's customer key", ecash.ErrBadKey)
	}
	if err := priv.check(false); err != nil {
		return nil, err
	}
	h := epo.BodyHash()
	sealed, err := ecash.Seal(bankHPKE, InfoEPOPrivate, h[:], priv.Encode())
	if err != nil {
		return nil, err
	}
	s := &SignedEPO{EPO: epo, SealedPrivate: sealed}
	s.CustomerSig = ecash.SignBody(customer, s.SignatureInput())
	return s, nil
}

// SignatureInput is what the customer signs (ecash.EPOSignatureInput):
// tag("epo-signature") || EPOID (text form) || price || merchant account ||
// PartsHash. The bank's audit log records each of these, so an auditor
// verifies the signature from the log alone.
func (s *SignedEPO) SignatureInput() []byte {
	return ecash.EPOSignatureInput(s.EPOID.String(), s.Price, s.MerchantAccount, s.PartsHash())
}

// PartsHash is the digest of both halves of the order the customer signs:
// ecash.EPOPartsHash(SHA-256(clear body), SHA-256(sealed private part)).
func (s *SignedEPO) PartsHash() ecash.Hash {
	return ecash.EPOPartsHash(s.EPO.BodyHash(), ecash.HashOf(s.SealedPrivate))
}

// Encode is the signed EPO (tag "signed-epo"): clear body, sealed private
// part, customer signature.
func (s *SignedEPO) Encode() []byte {
	e := ecash.NewEncoder("signed-epo")
	e.VarBytes(s.EPO.Body())
	e.VarBytes(s.SealedPrivate)
	e.Fixed(s.CustomerSig)
	return e.Bytes()
}

// Hash is SHA-256(Encode()): the EPO hash, the AAD of the sealed goods key,
// and what the bank's receipt names. A different EPO under a used EPOID has
// a different hash.
func (s *SignedEPO) Hash() ecash.Hash { return ecash.HashOf(s.Encode()) }

// DecodeSignedEPO parses a signed EPO and checks its structure;
// VerifyCustomer checks the signature and Validate the keys and time.
func DecodeSignedEPO(b []byte) (*SignedEPO, error) {
	d := ecash.NewDecoder("signed-epo", b)
	body := d.VarBytes(MaxEPOBodyLen)
	sealed := d.VarBytes(MaxSealedPrivateLen)
	sig := d.Fixed(ed25519.SignatureSize)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	epo, err := DecodeEPO(body)
	if err != nil {
		return nil, err
	}
	if len(sealed) < 32+16 {
		return nil, malformed("sealed private part of %d bytes", len(sealed))
	}
	return &SignedEPO{EPO: *epo, SealedPrivate: sealed, CustomerSig: sig}, nil
}

// VerifyCustomer checks the customer's signature (the key must be a
// canonical large-order Ed25519 key). The merchant calls it before
// endorsing, the bank before anything else.
func (s *SignedEPO) VerifyCustomer() error {
	if err := s.EPO.check(); err != nil {
		return err
	}
	if err := checkPub(s.Customer, "customer key"); err != nil {
		return err
	}
	return ecash.VerifyBody(s.Customer, s.SignatureInput(), s.CustomerSig, "EPO customer signature")
}

// Validate checks the clear part at now (EPO.Validate) and the sizes of the
// sealed part and signature.
func (s *SignedEPO) Validate(now time.Time) error {
	if len(s.SealedPrivate) < 32+16 || len(s.SealedPrivate) > MaxSealedPrivateLen {
		return malformed("sealed private part of %d bytes", len(s.SealedPrivate))
	}
	if len(s.CustomerSig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: EPO customer signature of %d bytes", ecash.ErrBadSignature, len(s.CustomerSig))
	}
	return s.EPO.Validate(now)
}

// OpenPrivate opens the private part with the bank's HPKE private key. The
// AAD is the clear body's hash, so a private part moved under another clear
// part does not open.
func (s *SignedEPO) OpenPrivate(bank *ecdh.PrivateKey) (*EPOPrivate, error) {
	return s.openPrivate(bank, false)
}

// OpenRecordedPrivate is OpenPrivate for an order the bank accepted and
// stored itself (DecodeRecordedEndorsement): the customer's memo is held to
// the rule of the builds that accepted it. Never for bytes a peer sent.
func (s *SignedEPO) OpenRecordedPrivate(bank *ecdh.PrivateKey) (*EPOPrivate, error) {
	return s.openPrivate(bank, true)
}

func (s *SignedEPO) openPrivate(bank *ecdh.PrivateKey, recorded bool) (*EPOPrivate, error) {
	h := s.EPO.BodyHash()
	pt, err := ecash.Open(bank, InfoEPOPrivate, h[:], s.SealedPrivate)
	if err != nil {
		return nil, fmt.Errorf("%w (%w)", ErrPrivateSealed, err)
	}
	return decodeEPOPrivate(pt, recorded)
}
