package echeck

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// StatusQuery asks the bank for the receipt of one EPOID (NetBill
// recovery). It is signed by the EPO's customer key or merchant key; the bank
// answers only those two, with the stored receipt, K included. A customer
// whose merchant never forwarded K gets it this way.
type StatusQuery struct {
	EPOID     EPOID
	Requester ed25519.PublicKey
	Time      time.Time // the requester's clock; must be within MaxClockSkew of the bank's
	Sig       []byte
}

// NewStatusQuery builds and signs a status query for id at now.
func NewStatusQuery(id EPOID, now time.Time, key ed25519.PrivateKey) *StatusQuery {
	q := &StatusQuery{EPOID: id, Time: now}
	q.Sign(key)
	return q
}

// Body is the canonical encoding the requester signs (tag "status-query").
func (q *StatusQuery) Body() []byte {
	e := ecash.NewEncoder("status-query")
	putEPOID(e, q.EPOID)
	e.Fixed(q.Requester)
	e.I64(q.Time.UnixMilli())
	return e.Bytes()
}

// Sign sets Requester to key's public key and signs the body.
func (q *StatusQuery) Sign(key ed25519.PrivateKey) {
	q.Requester = key.Public().(ed25519.PublicKey)
	q.Sig = ecash.SignBody(key, q.Body())
}

// Encode is the signed query (tag "signed-status-query").
func (q *StatusQuery) Encode() []byte { return signedForm("signed-status-query", q.Body(), q.Sig) }

// DecodeStatusQuery parses a signed status query; Verify checks it.
func DecodeStatusQuery(b []byte) (*StatusQuery, error) {
	body, sig, err := openSigned("signed-status-query", b, ecash.MaxFieldLen)
	if err != nil {
		return nil, err
	}
	r := newReader("status-query", body)
	q := &StatusQuery{Sig: sig, EPOID: r.epoid(), Requester: r.pub(), Time: r.time()}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return q, nil
}

// Verify checks the requester's key and signature, and that the query was
// made within ecash.MaxClockSkew of now (ErrStale), which limits replays.
// The caller then checks that Requester is the EPO's customer or merchant
// key. To re-check a recorded query offline, pass q.Time as now.
func (q *StatusQuery) Verify(now time.Time) error {
	if err := checkPub(q.Requester, "requester key"); err != nil {
		return err
	}
	if err := ecash.VerifyBody(q.Requester, q.Body(), q.Sig, "status query"); err != nil {
		return err
	}
	if !ecash.WithinSkew(q.Time, now) {
		return fmt.Errorf("%w: status query made at %s", ErrStale, q.Time.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// StatementLine is one posting on an account.
type StatementLine struct {
	PostedAt     time.Time
	EPOID        EPOID  // zero (EPOID{}) for postings that are not e-checks
	ProductID    string // product id or check reference (≤ MaxProductIDLen)
	Amount       int64  // signed minor units: negative debits, positive credits; never 0
	Counterparty uint64 // the other account
	Memo         string // ≤ MaxMemoLen
	Balance      int64  // running balance after this posting
}

// Statement is the bank's signed statement of one account over [From, To):
// the opening balance, then every posting in time order with its running
// balance, so each line's Balance = previous Balance + Amount.
type Statement struct {
	Account   uint64
	Currency  string
	From, To  time.Time
	Opening   int64 // balance at From, minor units
	Lines     []StatementLine
	SignerPub ed25519.PublicKey
	Sig       []byte
}

// Closing is the balance after the last line (Opening if there are none).
func (s *Statement) Closing() int64 {
	if len(s.Lines) == 0 {
		return s.Opening
	}
	return s.Lines[len(s.Lines)-1].Balance
}

// Body is the canonical encoding the bank signs (tag "statement").
func (s *Statement) Body() []byte {
	e := ecash.NewEncoder("statement")
	e.U64(s.Account)
	e.String(s.Currency)
	e.I64(s.From.UnixMilli())
	e.I64(s.To.UnixMilli())
	e.I64(s.Opening)
	e.U32(uint32(len(s.Lines)))
	for _, l := range s.Lines {
		e.I64(l.PostedAt.UnixMilli())
		if l.EPOID.IsZero() {
			e.U8(0)
		} else {
			e.U8(1)
			putEPOID(e, l.EPOID)
		}
		e.String(l.ProductID)
		e.I64(l.Amount)
		e.U64(l.Counterparty)
		e.String(l.Memo)
		e.I64(l.Balance)
	}
	e.Fixed(s.SignerPub)
	return e.Bytes()
}

// Sign sets SignerPub to bank's public key and signs the body.
func (s *Statement) Sign(bank ed25519.PrivateKey) {
	s.SignerPub = bank.Public().(ed25519.PublicKey)
	s.Sig = ecash.SignBody(bank, s.Body())
}

// Encode is the signed statement (tag "signed-statement").
func (s *Statement) Encode() []byte { return signedForm("signed-statement", s.Body(), s.Sig) }

// DecodeStatement parses a signed statement and checks its structure and
// arithmetic; Verify checks the signature.
func DecodeStatement(b []byte) (*Statement, error) {
	body, sig, err := openSigned("signed-statement", b, ecash.MaxFieldLen)
	if err != nil {
		return nil, err
	}
	r := newReader("statement", body)
	s := &Statement{Sig: sig, Account: r.u64(), Currency: r.d.String(), From: r.time(), To: r.time(), Opening: r.i64()}
	n := r.d.Count(MaxStatementLines)
	for i := 0; i < n && r.ok(); i++ {
		l := StatementLine{PostedAt: r.time()}
		switch flag := r.u8(); {
		case !r.ok():
		case flag == 1:
			l.EPOID = r.epoid()
		case flag != 0:
			r.fail(malformed("EPOID flag %d", flag))
		}
		l.ProductID = r.str(MaxProductIDLen, "product id")
		l.Amount = r.i64()
		l.Counterparty = r.u64()
		l.Memo = r.str(MaxMemoLen, "memo")
		l.Balance = r.i64()
		s.Lines = append(s.Lines, l)
	}
	s.SignerPub = r.pub()
	if r.ok() {
		r.fail(s.check())
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return s, nil
}

func inRange(v int64) bool { return v >= -ecash.MaxValue && v <= ecash.MaxValue }

func (s *Statement) check() error {
	if !ecash.ValidCurrency(s.Currency) {
		return fmt.Errorf("%w: currency %q", ecash.ErrBadAmount, s.Currency)
	}
	from, to := s.From.UnixMilli(), s.To.UnixMilli()
	if from > to {
		return malformed("statement period ends before it starts")
	}
	if len(s.Lines) > MaxStatementLines {
		return malformed("%d statement lines exceed %d", len(s.Lines), MaxStatementLines)
	}
	if len(s.SignerPub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: signer key of wrong length", ecash.ErrBadKey)
	}
	if !inRange(s.Opening) {
		return fmt.Errorf("%w: opening balance out of range", ecash.ErrOverflow)
	}
	bal, prev := s.Opening, from
	for i, l := range s.Lines {
		t := l.PostedAt.UnixMilli()
		if t < prev || t >= to {
			return malformed("line %d posted outside the period or out of order", i)
		}
		prev = t
		if err := ecash.CheckText(l.ProductID, MaxProductIDLen, "product id"); err != nil {
			return err
		}
		if err := ecash.CheckText(l.Memo, MaxMemoLen, "memo"); err != nil {
			return err
		}
		if !l.EPOID.IsZero() && l.EPOID.Timestamp.UnixMilli() < 0 {
			return malformed("line %d: EPOID timestamp before 1970", i)
		}
		if l.Amount == 0 || !inRange(l.Amount) || !inRange(l.Balance) {
			return fmt.Errorf("%w: line %d amount %d or balance %d", ecash.ErrBadAmount, i, l.Amount, l.Balance)
		}
		if bal+l.Amount != l.Balance { // |bal|, |amount| ≤ 2^53: no overflow
			return malformed("line %d: balance %d ≠ %d %+d", i, l.Balance, bal, l.Amount)
		}
		bal = l.Balance
	}
	return nil
}

// Verify checks the statement's structure and arithmetic and that it is
// signed by bankSigningPub.
func (s *Statement) Verify(bankSigningPub ed25519.PublicKey) error {
	if err := s.check(); err != nil {
		return err
	}
	if !sameKey(s.SignerPub, bankSigningPub) {
		return fmt.Errorf("%w: statement signed by an unknown bank key (%w)", ecash.ErrBadSignature, ecash.ErrUnknownSigner)
	}
	return ecash.VerifyBody(s.SignerPub, s.Body(), s.Sig, "statement")
}
