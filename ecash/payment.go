package ecash

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"time"
)

// PaymentRequest is the merchant's signed offer (source document Ecash step 4):
// amount and currency, time and expiry, the merchant's bank and account, and
// the hash of the order description, so the bank never reads the order.
type PaymentRequest struct {
	BankID          Hash
	MerchantAccount uint64
	MerchantPub     ed25519.PublicKey
	OrderID         string
	Amount          Amount
	SummaryHash     Hash // SHA-256 of the order summary the wallet shows
	CreatedAt       time.Time
	ExpiresAt       time.Time
}

// MaxClockSkew is the clock difference the protocol tolerates between
// parties: a deposit permission may be dated this much before its payment
// request, and the bank accepts a new deposit until this long after the
// request expires (never later, so a wallet past that point knows an unpaid
// request stays unpaid).
const MaxClockSkew = 5 * time.Minute

// MaxPaymentLifetime bounds a payment request's life, from CreatedAt to
// ExpiresAt. A wallet's coins stay pending from the moment it sends a
// payment until the bank could no longer accept it (ExpiresAt, plus the
// skews); a merchant that took a sealed payment and never deposited it
// could otherwise freeze them for as long as it liked.
const MaxPaymentLifetime = 30 * 24 * time.Hour

// WithinSkew reports whether a peer's timestamp t is within MaxClockSkew of
// now. It compares instants rather than taking their difference: a decoded
// timestamp may be centuries away, where a time.Duration saturates and its
// negation overflows, and a far-off request would pass as fresh.
func WithinSkew(t, now time.Time) bool {
	return !t.Before(now.Add(-MaxClockSkew)) && !t.After(now.Add(MaxClockSkew))
}

// MaxOrderIDLen bounds order ids.
const MaxOrderIDLen = 128

// Body is the canonical encoding the merchant signs (tag "payment-request").
func (p *PaymentRequest) Body() []byte {
	e := NewEncoder("payment-request")
	e.Fixed(p.BankID[:])
	e.U64(p.MerchantAccount)
	e.Fixed(p.MerchantPub)
	e.String(p.OrderID)
	e.Amount(p.Amount)
	e.Fixed(p.SummaryHash[:])
	e.I64(p.CreatedAt.UnixMilli())
	e.I64(p.ExpiresAt.UnixMilli())
	return e.Bytes()
}

// Hash identifies the payment request; deposit permissions and the sealed
// payment are bound to it.
func (p *PaymentRequest) Hash() Hash { return HashOf(p.Body()) }

// DecodePaymentRequest parses a body; it does not check the signature.
func DecodePaymentRequest(b []byte) (*PaymentRequest, error) {
	d := NewDecoder("payment-request", b)
	p := &PaymentRequest{}
	copy(p.BankID[:], d.Fixed(32))
	p.MerchantAccount = d.U64()
	p.MerchantPub = d.Fixed(ed25519.PublicKeySize)
	p.OrderID = d.String()
	p.Amount = d.Amount()
	copy(p.SummaryHash[:], d.Fixed(32))
	p.CreatedAt = time.UnixMilli(d.I64())
	p.ExpiresAt = time.UnixMilli(d.I64())
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if len(p.OrderID) == 0 || len(p.OrderID) > MaxOrderIDLen {
		return nil, fmt.Errorf("%w: order id length %d", ErrMalformed, len(p.OrderID))
	}
	// Printable ASCII only: the wallet shows the order id beside the
	// amount it asks the payer to confirm, like the summary.
	for i := range len(p.OrderID) {
		if c := p.OrderID[i]; c < 0x21 || c > 0x7e {
			return nil, fmt.Errorf("%w: order id byte %#x at %d: want printable ASCII", ErrMalformed, c, i)
		}
	}
	if p.Amount.IsZero() {
		return nil, fmt.Errorf("%w: zero payment", ErrBadAmount)
	}
	if !p.CreatedAt.Before(p.ExpiresAt) {
		return nil, fmt.Errorf("%w: payment request expires before it is created", ErrMalformed)
	}
	return p, nil
}

// CheckLifetime refuses a request that lives longer than
// MaxPaymentLifetime (ErrMalformed). It is checked where a new request
// comes in (the wallet's VerifyOffer, the bank's new deposits, the
// merchant's CreateOrder), not by the decoder: a request stored before the
// bound still decodes, so the payment made for it can still be settled.
func (p *PaymentRequest) CheckLifetime() error {
	if p.ExpiresAt.After(p.CreatedAt.Add(MaxPaymentLifetime)) {
		return fmt.Errorf("%w: payment request lives %s, more than %s", ErrMalformed, p.ExpiresAt.Sub(p.CreatedAt), MaxPaymentLifetime)
	}
	return nil
}

// DepositPermission is a coin's signed consent to be deposited into one
// merchant account for one payment request. A thief who sees it cannot
// redirect the coin: a different request or account breaks the signature.
type DepositPermission struct {
	Coin            Coin
	PaymentHash     Hash
	MerchantAccount uint64
	Value           Amount // the coin's denomination value
	Timestamp       time.Time
	CoinSig         []byte
}

// Body is the canonical encoding the coin key signs (tag "deposit-permission").
func (dp *DepositPermission) Body() []byte {
	e := NewEncoder("deposit-permission")
	e.Fixed(dp.Coin.Pub)
	e.Fixed(dp.Coin.Denom[:])
	e.Fixed(dp.PaymentHash[:])
	e.U64(dp.MerchantAccount)
	e.Amount(dp.Value)
	e.I64(dp.Timestamp.UnixMilli())
	return e.Bytes()
}

// Verify checks the coin key's signature, under the rule batches can check
// too (batch.go): the coin key must be a canonical encoding of a point not
// of small order, and the signature must verify under ZIP-215's cofactored
// equation. It checks nothing about the coin's own signature (Coin.Verify).
func (dp *DepositPermission) Verify() error {
	return verifyPermissionSig(dp.Coin.Pub, dp.Body(), dp.CoinSig)
}

// Payment is the clear content of a sealed payment: the coins and their
// deposit permissions for one payment request.
type Payment struct {
	Permissions []DepositPermission
}

// NewPayment signs a deposit permission for each coin.
func NewPayment(req *PaymentRequest, coins []Coin, keys []ed25519.PrivateKey, values []Amount, now time.Time) (*Payment, error) {
	if len(coins) != len(keys) || len(coins) != len(values) {
		return nil, fmt.Errorf("ecash: %d coins, %d keys, %d values", len(coins), len(keys), len(values))
	}
	p := &Payment{}
	h := req.Hash()
	for i, c := range coins {
		dp := DepositPermission{Coin: c, PaymentHash: h, MerchantAccount: req.MerchantAccount, Value: values[i], Timestamp: now}
		dp.CoinSig = ed25519.Sign(keys[i], dp.Body())
		p.Permissions = append(p.Permissions, dp)
	}
	return p, nil
}

// Encode is the canonical clear payment (tag "payment"). The payment hash,
// merchant account and values are not repeated: the bank rebuilds each
// permission from the payment request and its key set.
func (p *Payment) Encode() []byte {
	e := NewEncoder("payment")
	e.U32(uint32(len(p.Permissions)))
	for _, dp := range p.Permissions {
		dp.Coin.encodeTo(e)
		e.I64(dp.Timestamp.UnixMilli())
		e.Fixed(dp.CoinSig)
	}
	return e.Bytes()
}

// DecodePayment parses a clear payment and fills each permission's payment
// hash and merchant account from req; values are filled by the caller from
// the key set.
func DecodePayment(b []byte, req *PaymentRequest) (*Payment, error) {
	d := NewDecoder("payment", b)
	n := d.Count(MaxCoinsPerRequest)
	p := &Payment{}
	h := req.Hash()
	for i := 0; i < n && d.Err() == nil; i++ {
		dp := DepositPermission{Coin: decodeCoinFrom(d), PaymentHash: h, MerchantAccount: req.MerchantAccount}
		dp.Timestamp = time.UnixMilli(d.I64())
		dp.CoinSig = d.Fixed(ed25519.SignatureSize)
		p.Permissions = append(p.Permissions, dp)
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, fmt.Errorf("%w: payment of no coins", ErrMalformed)
	}
	return p, nil
}

// HPKE suite for sealed payments: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// ChaCha20-Poly1305.
func hpkeSuite() (hpke.KDF, hpke.AEAD) { return hpke.HKDFSHA256(), hpke.ChaCha20Poly1305() }

const sealInfoPayment = TagPrefix + "sealed-payment"

// MaxSealedLen bounds a sealed payment.
const MaxSealedLen = 2 << 20

// Seal encrypts plaintext to an X25519 HPKE key with the given info and AAD.
// The result is enc (32 bytes) || ciphertext. HPKE draws its ephemeral key
// from crypto/rand.
func Seal(recipient []byte, info string, aad, plaintext []byte) ([]byte, error) {
	pk, err := ecdh.X25519().NewPublicKey(recipient)
	if err != nil {
		return nil, fmt.Errorf("%w: HPKE key: %v", ErrBadKey, err)
	}
	hpk, err := hpke.NewDHKEMPublicKey(pk)
	if err != nil {
		return nil, err
	}
	kdf, aead := hpkeSuite()
	enc, s, err := hpke.NewSender(hpk, kdf, aead, []byte(info))
	if err != nil {
		return nil, err
	}
	ct, err := s.Seal(aad, plaintext)
	if err != nil {
		return nil, err
	}
	return append(enc, ct...), nil
}

// Open decrypts what Seal produced.
func Open(priv *ecdh.PrivateKey, info string, aad, sealed []byte) ([]byte, error) {
	if len(sealed) < 32+16 || len(sealed) > MaxSealedLen {
		return nil, fmt.Errorf("%w: sealed message of %d bytes", ErrMalformed, len(sealed))
	}
	hsk, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	kdf, aead := hpkeSuite()
	r, err := hpke.NewRecipient(sealed[:32], hsk, kdf, aead, []byte(info))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	pt, err := r.Open(aad, sealed[32:])
	if err != nil {
		return nil, fmt.Errorf("%w: sealed payment does not open for this payment request", ErrMalformed)
	}
	return pt, nil
}

// SealPayment encrypts a payment to the bank's HPKE key with the payment
// request hash as AAD (source document Ecash step 7), so the merchant cannot
// read the coins nor move them to another request.
func SealPayment(bankHPKE []byte, req *PaymentRequest, p *Payment) ([]byte, error) {
	h := req.Hash()
	return Seal(bankHPKE, sealInfoPayment, h[:], p.Encode())
}

// OpenPayment decrypts and parses a sealed payment for req.
func OpenPayment(priv *ecdh.PrivateKey, req *PaymentRequest, sealed []byte) (*Payment, error) {
	h := req.Hash()
	pt, err := Open(priv, sealInfoPayment, h[:], sealed)
	if err != nil {
		return nil, err
	}
	return DecodePayment(pt, req)
}

// Encode is the full signed permission (tag "signed-deposit-permission"), as
// the bank stores it to prove a later double spend.
func (dp *DepositPermission) Encode() []byte {
	e := NewEncoder("signed-deposit-permission")
	dp.Coin.encodeTo(e)
	e.Fixed(dp.PaymentHash[:])
	e.U64(dp.MerchantAccount)
	e.Amount(dp.Value)
	e.I64(dp.Timestamp.UnixMilli())
	e.Fixed(dp.CoinSig)
	return e.Bytes()
}

// DecodeDepositPermission parses what Encode produced; Verify checks it.
func DecodeDepositPermission(b []byte) (*DepositPermission, error) {
	d := NewDecoder("signed-deposit-permission", b)
	dp := &DepositPermission{Coin: decodeCoinFrom(d)}
	copy(dp.PaymentHash[:], d.Fixed(32))
	dp.MerchantAccount = d.U64()
	dp.Value = d.Amount()
	dp.Timestamp = time.UnixMilli(d.I64())
	dp.CoinSig = d.Fixed(ed25519.SignatureSize)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return dp, nil
}
