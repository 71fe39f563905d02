package ecash

import (
	"crypto/ed25519"
	"fmt"
	"time"
)

// SwapAccount is the account a coin's deposit permission names when the
// coin is spent in a swap rather than paid to a merchant. No account has id
// 0, so a swap permission never verifies as a payment and a payment
// permission never verifies as a swap; the permission's payment hash is then
// the swap's outputs hash. Keeping one permission type keeps one spent-coin
// record and one double-spend proof for both ways of spending a coin.
const SwapAccount uint64 = 0

// SwapRequest exchanges coins for blind signatures on new planchets of the
// same total value: change. Each input coin signs a deposit permission over
// the hash of the outputs (SwapAccount, OutputsHash, the coin's value,
// CreatedAt), so whoever sees the request cannot redirect the coins to
// other outputs. The bank keys idempotency on the hash of Body: a retry of
// the same bytes returns the same signatures.
type SwapRequest struct {
	CreatedAt time.Time
	Inputs    []SwapInput
	Outputs   []Planchet
}

// SwapInput is one coin given up in a swap, with its signature over the
// swap permission (SwapRequest.Permission).
type SwapInput struct {
	Coin    Coin
	CoinSig []byte
}

// OutputsHash = SHA-256("swap-outputs" tag || u32 n || n × (denom || varbytes blinded)).
func (r *SwapRequest) OutputsHash() Hash {
	e := NewEncoder("swap-outputs")
	encodePlanchets(e, r.Outputs)
	return HashOf(e.Bytes())
}

// Permission is the deposit permission input i signs, for a coin of value.
// It hashes every output: whoever builds the permissions of many inputs
// hashes the outputs once (OutputsHash) and calls PermissionOver, or a
// request of n inputs and outputs costs n² (a bank's denial of service).
func (r *SwapRequest) Permission(i int, value Amount) DepositPermission {
	return r.PermissionOver(r.OutputsHash(), i, value)
}

// PermissionOver is Permission given the request's OutputsHash.
func (r *SwapRequest) PermissionOver(outputs Hash, i int, value Amount) DepositPermission {
	return DepositPermission{
		Coin: r.Inputs[i].Coin, PaymentHash: outputs, MerchantAccount: SwapAccount,
		Value: value, Timestamp: r.CreatedAt, CoinSig: r.Inputs[i].CoinSig,
	}
}

// CreditAccount is the account a swap input's permission names when the
// input spends the refund credit of a coin already spent (RefundRequest),
// not the coin itself: the permission then carries the credit as its value.
// A separate account keeps the two unambiguous — a coin whose credit equals
// its value would otherwise sign the same permission either way.
const CreditAccount uint64 = 2

// CreditPermission is the permission input i signs to spend credit, its
// coin's refund credit.
func (r *SwapRequest) CreditPermission(i int, credit Amount) DepositPermission {
	return r.Permission(i, credit).ForCredit(credit)
}

// ForCredit turns a swap permission (SwapRequest.Permission) into the one
// its coin signs to spend credit, its refund credit, instead.
func (dp DepositPermission) ForCredit(credit Amount) DepositPermission {
	dp.MerchantAccount, dp.Value = CreditAccount, credit
	return dp
}

// SignCredit makes input i spend its coin's refund credit instead of the
// coin: it signs CreditPermission with the coin's key.
func (r *SwapRequest) SignCredit(i int, key ed25519.PrivateKey, credit Amount) {
	dp := r.CreditPermission(i, credit)
	r.Inputs[i].CoinSig = ed25519.Sign(key, dp.Body())
}

// NewSwapRequest builds a swap of coins (with their keys and values) for
// outputs and signs every input.
func NewSwapRequest(coins []Coin, keys []ed25519.PrivateKey, values []Amount, outputs []Planchet, now time.Time) (*SwapRequest, error) {
	if len(coins) != len(keys) || len(coins) != len(values) {
		return nil, fmt.Errorf("ecash: %d coins, %d keys, %d values", len(coins), len(keys), len(values))
	}
	r := &SwapRequest{CreatedAt: time.UnixMilli(now.UnixMilli()), Outputs: outputs}
	for _, c := range coins {
		r.Inputs = append(r.Inputs, SwapInput{Coin: c})
	}
	oh := r.OutputsHash()
	for i := range r.Inputs {
		dp := r.PermissionOver(oh, i, values[i])
		r.Inputs[i].CoinSig = ed25519.Sign(keys[i], dp.Body())
	}
	return r, nil
}

// Body is the canonical encoding (tag "swap-request").
func (r *SwapRequest) Body() []byte {
	e := NewEncoder("swap-request")
	e.I64(r.CreatedAt.UnixMilli())
	e.U32(uint32(len(r.Inputs)))
	for _, in := range r.Inputs {
		in.Coin.encodeTo(e)
		e.Fixed(in.CoinSig)
	}
	encodePlanchets(e, r.Outputs)
	return e.Bytes()
}

// DecodeSwapRequest parses a body; it checks no signature.
func DecodeSwapRequest(b []byte) (*SwapRequest, error) {
	d := NewDecoder("swap-request", b)
	r := &SwapRequest{CreatedAt: time.UnixMilli(d.I64())}
	nIn := d.Count(MaxCoinsPerRequest)
	for i := 0; i < nIn && d.Err() == nil; i++ {
		in := SwapInput{Coin: decodeCoinFrom(d)}
		in.CoinSig = d.Fixed(ed25519.SignatureSize)
		r.Inputs = append(r.Inputs, in)
	}
	r.Outputs = decodePlanchets(d)
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if nIn == 0 || len(r.Outputs) == 0 {
		return nil, fmt.Errorf("%w: swap of %d coins for %d", ErrMalformed, nIn, len(r.Outputs))
	}
	return r, nil
}
