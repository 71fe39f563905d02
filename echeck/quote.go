package echeck

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// PriceRequest is NetBill step 1, customer to merchant: who asks (an
// identity or a pseudonym, as an Ed25519 public key), for which product,
// with which product request data (PRD: options, credentials, anything the
// price depends on), an optional bid, and a fresh transaction id TID. It is
// not signed; the merchant's quote answers it by TID and PRD hash.
type PriceRequest struct {
	Customer  ed25519.PublicKey
	ProductID string       // 1 to MaxProductIDLen bytes of UTF-8
	PRD       []byte       // at most MaxPRDLen bytes
	Bid       ecash.Amount // Value 0: no bid; the currency says which the customer pays in
	TID       [16]byte
}

// PRDHash is SHA-256(PRD), which the quote and the EPO carry.
func (r *PriceRequest) PRDHash() ecash.Hash { return sha256.Sum256(r.PRD) }

// Encode is the canonical price request (tag "price-request").
func (r *PriceRequest) Encode() []byte {
	e := ecash.NewEncoder("price-request")
	e.Fixed(r.Customer)
	e.String(r.ProductID)
	e.VarBytes(r.PRD)
	e.Amount(r.Bid)
	e.Fixed(r.TID[:])
	return e.Bytes()
}

// DecodePriceRequest parses a price request.
func DecodePriceRequest(b []byte) (*PriceRequest, error) {
	rd := newReader("price-request", b)
	r := &PriceRequest{Customer: rd.pub()}
	r.ProductID = rd.str(MaxProductIDLen, "product id")
	r.PRD = rd.bytes(MaxPRDLen, "product request data")
	r.Bid = rd.amount()
	copy(r.TID[:], rd.d.Fixed(16))
	if rd.ok() && r.ProductID == "" {
		rd.fail(malformed("empty product id"))
	}
	if err := rd.finish(); err != nil {
		return nil, err
	}
	return r, nil
}

// Quote is NetBill step 2, merchant to customer: the price of a product for
// one price request (by TID and PRD hash) and one customer, until ExpiresAt,
// signed by the merchant so that it binds.
type Quote struct {
	Customer        ed25519.PublicKey
	MerchantAccount uint64
	MerchantPub     ed25519.PublicKey
	ProductID       string
	Price           ecash.Amount // > 0
	PRDHash         ecash.Hash
	TID             [16]byte
	ExpiresAt       time.Time
	Sig             []byte // merchant, over Body
}

// NewQuote answers r with price until expiresAt, signed by merchant.
func NewQuote(r *PriceRequest, account uint64, price ecash.Amount, expiresAt time.Time, merchant ed25519.PrivateKey) *Quote {
	q := &Quote{
		Customer:        r.Customer,
		MerchantAccount: account,
		ProductID:       r.ProductID,
		Price:           price,
		PRDHash:         r.PRDHash(),
		TID:             r.TID,
		ExpiresAt:       expiresAt,
	}
	q.Sign(merchant)
	return q
}

// Body is the canonical encoding the merchant signs (tag "quote").
func (q *Quote) Body() []byte {
	e := ecash.NewEncoder("quote")
	e.Fixed(q.Customer)
	e.U64(q.MerchantAccount)
	e.Fixed(q.MerchantPub)
	e.String(q.ProductID)
	e.Amount(q.Price)
	e.Fixed(q.PRDHash[:])
	e.Fixed(q.TID[:])
	e.I64(q.ExpiresAt.UnixMilli())
	return e.Bytes()
}

// Sign sets MerchantPub to merchant's public key and signs the body.
func (q *Quote) Sign(merchant ed25519.PrivateKey) {
	q.MerchantPub = merchant.Public().(ed25519.PublicKey)
	q.Sig = ecash.SignBody(merchant, q.Body())
}

// Encode is the signed quote (tag "signed-quote").
func (q *Quote) Encode() []byte { return signedForm("signed-quote", q.Body(), q.Sig) }

// DecodeQuote parses a signed quote; Verify checks it.
func DecodeQuote(b []byte) (*Quote, error) {
	body, sig, err := openSigned("signed-quote", b, ecash.MaxFieldLen)
	if err != nil {
		return nil, err
	}
	r := newReader("quote", body)
	q := &Quote{Sig: sig, Customer: r.pub(), MerchantAccount: r.u64(), MerchantPub: r.pub()}
	q.ProductID = r.str(MaxProductIDLen, "product id")
	q.Price = r.amount()
	q.PRDHash = r.hash()
	copy(q.TID[:], r.d.Fixed(16))
	q.ExpiresAt = r.time()
	if r.ok() {
		r.fail(q.check())
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *Quote) check() error {
	if q.ProductID == "" {
		return malformed("empty product id")
	}
	if err := ecash.CheckText(q.ProductID, MaxProductIDLen, "product id"); err != nil {
		return err
	}
	if err := q.Price.Validate(); err != nil {
		return err
	}
	if q.Price.IsZero() {
		return fmt.Errorf("%w: zero price", ecash.ErrBadAmount)
	}
	return nil
}

// Verify checks the quote's structure, the merchant key and its signature.
func (q *Quote) Verify() error {
	if err := q.check(); err != nil {
		return err
	}
	if err := checkPub(q.MerchantPub, "merchant key"); err != nil {
		return err
	}
	return ecash.VerifyBody(q.MerchantPub, q.Body(), q.Sig, "quote")
}

// CheckRequest reports whether q answers r (same customer, product, PRD hash
// and TID) and is still valid at now. It does not verify the signature.
func (q *Quote) CheckRequest(r *PriceRequest, now time.Time) error {
	if !sameKey(q.Customer, r.Customer) || q.ProductID != r.ProductID || q.PRDHash != r.PRDHash() || q.TID != r.TID {
		return fmt.Errorf("%w: quote answers another price request", ErrMismatch)
	}
	if now.UnixMilli() >= q.ExpiresAt.UnixMilli() {
		return fmt.Errorf("%w: quote expired at %s", ErrExpired, q.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}
