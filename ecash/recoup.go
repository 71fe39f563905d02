package ecash

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// RecoupAccount is the account a coin's deposit permission names when the
// coin is recouped: account 1 is the bank's funding account, which no
// payment request can name (merchants' accounts start at 1000) and which a
// swap (account 0, SwapAccount) does not use either. As for swaps, one
// permission type keeps one spent-coin record and one double-spend proof.
const RecoupAccount uint64 = 1

// RecoupRequest asks the bank for the value of a coin of a revoked
// denomination. The wallet reveals what links the coin to its withdrawal,
// the planchet's blind seed, so the bank can recompute the blinded message
// it signed and find where the coin came from: a withdrawal (the value is
// credited to the account debited for it) or a swap (the value is
// re-issued as blind signatures on Outputs, which must then be given). The
// coin signs a deposit permission to RecoupAccount over the request's hash.
type RecoupRequest struct {
	Coin      Coin
	BlindSeed [32]byte
	CreatedAt time.Time
	Outputs   []Planchet // for a coin from a swap; empty for a withdrawn coin
	CoinSig   []byte
}

// Body is the canonical encoding the request hash covers (tag
// "recoup-request"): the coin (untagged), the blind seed, the creation
// time, and the outputs.
func (r *RecoupRequest) Body() []byte {
	e := NewEncoder("recoup-request")
	r.Coin.encodeTo(e)
	e.Fixed(r.BlindSeed[:])
	e.I64(r.CreatedAt.UnixMilli())
	encodePlanchets(e, r.Outputs)
	return e.Bytes()
}

// Hash identifies the request: the bank's idempotency key.
func (r *RecoupRequest) Hash() Hash { return HashOf(r.Body()) }

// Permission is the deposit permission the coin signs, for a coin of value.
func (r *RecoupRequest) Permission(value Amount) DepositPermission {
	return DepositPermission{
		Coin: r.Coin, PaymentHash: r.Hash(), MerchantAccount: RecoupAccount,
		Value: value, Timestamp: r.CreatedAt, CoinSig: r.CoinSig,
	}
}

// NewRecoupRequest builds and signs a recoup of coin (of value, with its
// key and its planchet's blind seed) for outputs (none for a withdrawn
// coin).
func NewRecoupRequest(coin Coin, key ed25519.PrivateKey, value Amount, blindSeed [32]byte, outputs []Planchet, now time.Time) *RecoupRequest {
	r := &RecoupRequest{Coin: coin, BlindSeed: blindSeed, CreatedAt: time.UnixMilli(now.UnixMilli()), Outputs: outputs}
	dp := r.Permission(value)
	r.CoinSig = ed25519.Sign(key, dp.Body())
	return r
}

// Encode is the signed request (tag "signed-recoup-request"): varbytes
// body, then the coin's signature.
func (r *RecoupRequest) Encode() []byte {
	e := NewEncoder("signed-recoup-request")
	e.VarBytes(r.Body())
	e.Fixed(r.CoinSig)
	return e.Bytes()
}

// DecodeRecoupRequest parses a signed request; it checks no signature.
func DecodeRecoupRequest(b []byte) (*RecoupRequest, error) {
	outer := NewDecoder("signed-recoup-request", b)
	body := outer.VarBytes(MaxFieldLen)
	sig := outer.Fixed(ed25519.SignatureSize)
	if err := outer.Finish(); err != nil {
		return nil, err
	}
	d := NewDecoder("recoup-request", body)
	r := &RecoupRequest{Coin: decodeCoinFrom(d), CoinSig: sig}
	copy(r.BlindSeed[:], d.Fixed(32))
	r.CreatedAt = time.UnixMilli(d.I64())
	r.Outputs = decodePlanchets(d)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if len(r.Coin.Pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: recoup of a malformed coin", ErrMalformed)
	}
	return r, nil
}
