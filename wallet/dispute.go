package wallet

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
)

// ErrBadAnswer is the bank committing a withdrawal or swap and answering
// with signatures that do not verify. The bank answers a repeated request
// with the same signatures, so retrying cannot help: the wallet keeps the
// request and the answer as a Dispute and goes on (the money they carried
// is lost to the wallet unless the bank makes it good).
var ErrBadAnswer = errors.New("wallet: the bank's signatures do not verify")

// Dispute is a bank answer that did not verify, kept with its request.
type Dispute struct {
	Kind    string   // "withdraw", "swap" or "recoup"
	Request []byte   // the request sent: a withdraw request body, or a swap or recoup request
	Answer  [][]byte // the bank's blind signatures, as received
	Reason  string   // why they do not verify
	At      time.Time
}

func disputeKey(kind string, id []byte) []byte {
	return append([]byte("x/"+kind+"/"), id...)
}

func (d *Dispute) encode() []byte {
	e := ecash.NewEncoder("wallet/dispute")
	e.String(d.Kind)
	e.VarBytes(d.Request)
	e.U32(uint32(len(d.Answer)))
	for _, a := range d.Answer {
		e.VarBytes(a)
	}
	e.String(d.Reason)
	e.I64(d.At.UnixMilli())
	return e.Bytes()
}

func decodeDispute(b []byte) (*Dispute, error) {
	dec := ecash.NewDecoder("wallet/dispute", b)
	d := &Dispute{Kind: dec.String(), Request: dec.VarBytes(ecash.MaxFieldLen)}
	for range dec.Count(ecash.MaxCoinsPerRequest) {
		d.Answer = append(d.Answer, dec.VarBytes(ecash.MaxFieldLen))
	}
	d.Reason = dec.String()
	d.At = time.UnixMilli(dec.I64())
	return d, dec.Finish()
}

// dispute records d, then closes the pending operation with closeOp; each
// step is synced. A crash between them leaves the operation pending: its
// retry gets the same answer and comes here again, which rewrites the same
// record.
func (w *Wallet) dispute(key []byte, d *Dispute, closeOp func() error) error {
	// Within the decoder's bounds, whatever the bank sent: a record that
	// does not decode would break Disputes for good.
	if len(d.Answer) > ecash.MaxCoinsPerRequest {
		d.Reason = fmt.Sprintf("%s (%d signatures, the first %d kept)", d.Reason, len(d.Answer), ecash.MaxCoinsPerRequest)
		d.Answer = d.Answer[:ecash.MaxCoinsPerRequest]
	}
	for i, a := range d.Answer {
		if len(a) > ecash.MaxFieldLen {
			d.Answer[i] = a[:ecash.MaxFieldLen]
		}
	}
	if len(d.Reason) > 1024 {
		d.Reason = d.Reason[:1024] // the encoding's bound on a string
	}
	if err := w.db.Set(key, d.encode(), pebble.Sync); err != nil {
		return err
	}
	return closeOp()
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
