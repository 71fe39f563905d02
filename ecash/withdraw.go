package ecash

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// WithdrawRequest asks the bank to debit an account and blind-sign planchets.
// The account key signs Body; the bank keys idempotency on Hash.
type WithdrawRequest struct {
	Account   uint64
	Nonce     [16]byte // makes every request unique; reused only by retries
	CreatedAt time.Time
	Planchets []Planchet
}

// Body is the canonical encoding (tag "withdraw-request").
func (w *WithdrawRequest) Body() []byte {
	e := NewEncoder("withdraw-request")
	e.U64(w.Account)
	e.Fixed(w.Nonce[:])
	e.I64(w.CreatedAt.UnixMilli())
	encodePlanchets(e, w.Planchets)
	return e.Bytes()
}

// encodePlanchets writes a list of planchets: u32 count, then per planchet
// its denomination id and varbytes blinded message.
func encodePlanchets(e *Encoder, ps []Planchet) {
	e.U32(uint32(len(ps)))
	for _, p := range ps {
		e.Fixed(p.Denom[:])
		e.VarBytes(p.Blinded)
	}
}

// decodePlanchets reads what encodePlanchets wrote: at most
// MaxCoinsPerRequest planchets (nil for none).
func decodePlanchets(d *Decoder) []Planchet {
	n := d.Count(MaxCoinsPerRequest)
	var ps []Planchet
	for i := 0; i < n && d.Err() == nil; i++ {
		var p Planchet
		copy(p.Denom[:], d.Fixed(32))
		p.Blinded = d.VarBytes(maxBlindedLen)
		ps = append(ps, p)
	}
	return ps
}

// DecodeWithdrawRequest parses a body; it does not check the signature.
func DecodeWithdrawRequest(b []byte) (*WithdrawRequest, error) {
	d := NewDecoder("withdraw-request", b)
	w := &WithdrawRequest{Account: d.U64()}
	copy(w.Nonce[:], d.Fixed(16))
	w.CreatedAt = time.UnixMilli(d.I64())
	w.Planchets = decodePlanchets(d)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if len(w.Planchets) == 0 {
		return nil, fmt.Errorf("%w: withdraw of no coins", ErrMalformed)
	}
	return w, nil
}

// SignBody signs a canonical body with an Ed25519 key.
func SignBody(priv ed25519.PrivateKey, body []byte) []byte { return ed25519.Sign(priv, body) }

// VerifyBody checks an Ed25519 signature over a canonical body. Bodies carry
// their domain-separation tag, so a signature for one purpose never verifies
// for another. The verdict is crypto/ed25519's; a key met often is checked
// from a table of its multiples, faster (verifyEd25519).
func VerifyBody(pub ed25519.PublicKey, body, sig []byte, what string) error {
	if !verifyEd25519(pub, body, sig) {
		return fmt.Errorf("%w: %s", ErrBadSignature, what)
	}
	return nil
}

// CheckEd25519Key refuses account, merchant and coin keys that are not
// canonical encodings of points of large order. Such keys (the identity,
// small-order points) admit signatures that verify for every message, so
// an account opened with one could be drained by anyone.
func CheckEd25519Key(pub []byte) error {
	if _, err := largeOrderPoint(pub); err != nil {
		return fmt.Errorf("%w: Ed25519 key: %v", ErrBadKey, err)
	}
	return nil
}
