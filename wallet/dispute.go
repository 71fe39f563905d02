package wallet

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
)

// ErrBadAnswer is the bank committing a withdrawal, swap or recoup and
// answering with signatures that do not verify. The bank answers a repeated
// request with the same signatures, so retrying cannot help: the wallet
// keeps the coins whose signatures verify, records the others as a Dispute
// with the evidence, and goes on. Their value is lost to the wallet unless
// the bank makes it good.
var ErrBadAnswer = errors.New("wallet: the bank's signatures do not verify")

// Dispute is a bank answer that did not verify, kept with its request.
type Dispute struct {
	Kind     string       // "withdraw", "swap", "recoup" or "restore"
	Request  []byte       // what was sent: a withdraw request body, a swap or recoup request, or (restore) the blinded message's hash
	Indices  []uint64     // the planchet indices whose signatures fail
	Prepared [][]byte     // their first-round answers (CS R values; nil for RSA): with Answer, what a third party needs to check them
	Answer   [][]byte     // the bank's signatures on them, as received (all of them if their count was wrong), each cut to maxAnswerLen
	Lost     ecash.Amount // the value of those planchets
	Reason   string
	At       time.Time
}

// maxAnswerLen is longer than any blind signature (RSA-4096: 512 bytes).
const maxAnswerLen = 4096

// fail adds planchet index idx, with its first-round answer and the bank's
// signature (nil if none matches it), to d.
func (d *Dispute) fail(idx uint64, prepared, sig []byte, value ecash.Amount) {
	d.Indices = append(d.Indices, idx)
	d.Prepared = append(d.Prepared, prepared)
	if sig != nil {
		d.Answer = append(d.Answer, sig)
	}
	if d.Lost.Currency == "" {
		d.Lost.Currency = value.Currency
	}
	if sum, err := d.Lost.Add(value); err == nil {
		d.Lost = sum
	}
}

// err is the error a caller returns for d: nil if there is no dispute.
func (d *Dispute) err() error {
	if d == nil {
		return nil
	}
	return fmt.Errorf("%w: %s of a %s lost, kept as a dispute: %s", ErrBadAnswer, d.Lost, d.Kind, d.Reason)
}

func disputeKey(kind string, id []byte) []byte {
	return append([]byte("x/"+kind+"/"), id...)
}

// encode writes d within decodeDispute's bounds, whatever the bank sent: a
// record that did not decode would break Disputes for good.
func (d *Dispute) encode() []byte {
	e := ecash.NewEncoder("wallet/dispute")
	e.String(d.Kind)
	e.VarBytes(d.Request)
	n := min(len(d.Indices), ecash.MaxCoinsPerRequest)
	e.U32(uint32(n))
	for i := range n {
		e.U64(d.Indices[i])
		e.VarBytes(d.Prepared[i])
	}
	m := min(len(d.Answer), ecash.MaxCoinsPerRequest)
	e.U32(uint32(m))
	for _, a := range d.Answer[:m] {
		e.VarBytes(a[:min(len(a), maxAnswerLen)])
	}
	e.Amount(d.Lost)
	e.String(d.Reason[:min(len(d.Reason), 1024)])
	e.I64(d.At.UnixMilli())
	return e.Bytes()
}

func decodeDispute(b []byte) (*Dispute, error) {
	dec := ecash.NewDecoder("wallet/dispute", b)
	d := &Dispute{Kind: dec.String(), Request: dec.VarBytes(ecash.MaxFieldLen)}
	for range dec.Count(ecash.MaxCoinsPerRequest) {
		d.Indices = append(d.Indices, dec.U64())
		prep := dec.VarBytes(1024)
		if len(prep) == 0 {
			prep = nil
		}
		d.Prepared = append(d.Prepared, prep)
	}
	for range dec.Count(ecash.MaxCoinsPerRequest) {
		d.Answer = append(d.Answer, dec.VarBytes(maxAnswerLen))
	}
	d.Lost = dec.Amount()
	d.Reason = dec.String()
	d.At = time.UnixMilli(dec.I64())
	return d, dec.Finish()
}

// Disputes lists the bank answers that did not verify, oldest first.
func (w *Wallet) Disputes() ([]Dispute, error) {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte("x/"), UpperBound: prefixEnd([]byte("x/"))})
	if err != nil {
		return nil, err
	}
	var out []Dispute
	for it.First(); it.Valid(); it.Next() {
		d, err := decodeDispute(it.Value())
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("wallet: corrupt dispute record: %w", err)
		}
		out = append(out, *d)
	}
	if err := it.Close(); err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Dispute) int { return a.At.Compare(b.At) })
	return out, nil
}
