package echeck

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// StatementRequest asks the bank for an account's statement over [From,
// To), signed by the account's key. Time is the requester's clock; the bank
// refuses requests more than ecash.MaxClockSkew away from its own, so a
// captured request cannot be replayed later.
type StatementRequest struct {
	Account  uint64
	From, To time.Time
	Time     time.Time
	Sig      []byte
}

// NewStatementRequest builds and signs a request with the account key.
func NewStatementRequest(account uint64, from, to, now time.Time, key ed25519.PrivateKey) *StatementRequest {
	r := &StatementRequest{Account: account, From: from, To: to, Time: now}
	r.Sig = ecash.SignBody(key, r.Body())
	return r
}

// Body is the canonical encoding the account key signs (tag
// "statement-request").
func (r *StatementRequest) Body() []byte {
	e := ecash.NewEncoder("statement-request")
	e.U64(r.Account)
	e.I64(r.From.UnixMilli())
	e.I64(r.To.UnixMilli())
	e.I64(r.Time.UnixMilli())
	return e.Bytes()
}

// Encode is the signed request (tag "signed-statement-request").
func (r *StatementRequest) Encode() []byte {
	return signedForm("signed-statement-request", r.Body(), r.Sig)
}

// DecodeStatementRequest parses a signed request; Verify checks it.
func DecodeStatementRequest(b []byte) (*StatementRequest, error) {
	body, sig, err := openSigned("signed-statement-request", b, 128)
	if err != nil {
		return nil, err
	}
	d := ecash.NewDecoder("statement-request", body)
	r := &StatementRequest{Account: d.U64(), Sig: sig}
	r.From = time.UnixMilli(d.I64()).UTC()
	r.To = time.UnixMilli(d.I64()).UTC()
	r.Time = time.UnixMilli(d.I64()).UTC()
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if !r.From.Before(r.To) {
		return nil, fmt.Errorf("%w: statement period ends before it starts", ecash.ErrMalformed)
	}
	return r, nil
}

// Verify checks the signature with the account's key and the request's
// freshness against now.
func (r *StatementRequest) Verify(accountKey ed25519.PublicKey, now time.Time) error {
	if err := ecash.VerifyBody(accountKey, r.Body(), r.Sig, "statement request"); err != nil {
		return err
	}
	if !ecash.WithinSkew(r.Time, now) {
		return fmt.Errorf("%w: statement request made at %s", ErrStale, r.Time.UTC().Format(time.RFC3339))
	}
	return nil
}
