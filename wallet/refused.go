package wallet

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
)

// A withdrawal pending from before (a crash, a lost answer) that the bank
// refuses outright when the wallet sends it again is over: its record is
// dropped (sendWithdraw). The refusal is not the error of the call that
// happened to send it, a new Withdraw or Recover: it is recorded
// (f/<nonce>) in the batch that drops the request, and Recover reports it
// once (RecoverReport.Refused).

func refusedKey(nonce [16]byte) []byte { return append([]byte("f/"), nonce[:]...) }

// RecoverReport is what a Recover that succeeded has to tell.
type RecoverReport struct {
	// Refused lists the withdrawals pending from before that the bank
	// refused outright when the wallet sent them again, by this Recover
	// or by an earlier Withdraw (which went on with its own withdrawal),
	// each reported once. Their requests are dropped: the wallet will not
	// send them again.
	Refused []RefusedWithdrawal
	// ClockAhead is the bank's refusal, saying by how much, of a
	// withdrawal pending from before that this Recover sent and the bank
	// refused for now as dated ahead of its clock (ErrClockAhead): this
	// computer's clock is ahead. The withdrawal stays pending (the bank
	// may have taken it at a replica whose clock is further on) and is
	// finished once the bank's clock reaches its date. "" if none was.
	ClockAhead string
	// Swaps lists the swaps and recoup re-issues pending from before that
	// the bank refused outright when the wallet sent them again (by this
	// Recover or an earlier call), oldest refusal first: those it then
	// found committed at the bank and completed, and those ended as
	// refused, each reported once; and those kept pending now, reported
	// by every Recover until settled (see SwapOutcome, swaprefused.go).
	Swaps []SwapRecovery
}

// RefusedWithdrawal is a withdrawal pending from before that the bank
// refused outright. Refused after the bank looked the request up
// (FailedPrecondition: funds, limits), it holds nothing of it and
// debited nothing. Refused before (a replica that does not serve its
// denomination, say), an earlier send may have gone through: its planchet
// indices are never used again, and a restore would find its coins.
type RefusedWithdrawal struct {
	Nonce  [16]byte     // the withdraw request's nonce (PROTOCOL.md §3.3)
	Amount ecash.Amount // the value of the coins it asked for
	Reason string       // the bank's refusal: its gRPC code and message
	At     time.Time    // when the wallet got it, by its clock
}

func (r *RefusedWithdrawal) encode() []byte {
	e := ecash.NewEncoder("wallet/refused-withdrawal")
	e.Fixed(r.Nonce[:])
	e.Amount(r.Amount)
	e.VarBytes([]byte(r.Reason))
	e.I64(r.At.UnixMilli())
	return e.Bytes()
}

func decodeRefusedWithdrawal(b []byte) (*RefusedWithdrawal, error) {
	d := ecash.NewDecoder("wallet/refused-withdrawal", b)
	r := &RefusedWithdrawal{}
	copy(r.Nonce[:], d.Fixed(16))
	r.Amount = d.Amount()
	r.Reason = string(d.VarBytes(maxReasonLen))
	r.At = time.UnixMilli(d.I64())
	return r, d.Finish()
}

// maxReasonLen bounds the refusal's text kept.
const maxReasonLen = 1024

// refusalReason is a refusal's text as kept: its gRPC code and message,
// cut to maxReasonLen.
func refusalReason(err error) string {
	st := status.Convert(err)
	s := fmt.Sprintf("%s: %s", st.Code(), st.Message())
	if len(s) > maxReasonLen {
		s = s[:maxReasonLen]
	}
	return s
}

// bankMessage is the message of the bank's status that err wraps (without
// the wrapping, nor "rpc error: code = ..."), cut to maxReasonLen.
func bankMessage(err error) string {
	msg := err.Error()
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		msg = se.GRPCStatus().Message()
	}
	if len(msg) > maxReasonLen {
		msg = msg[:maxReasonLen]
	}
	return msg
}

// refusedEarlier is the bank's outright refusal of a withdrawal recovered
// from the store, once its record is dropped and the refusal recorded for
// Recover's report: the error of that request, not of the call that sent
// it.
type refusedEarlier struct{ err error }

func (e *refusedEarlier) Error() string { return e.err.Error() }
func (e *refusedEarlier) Unwrap() error { return e.err }

// takeRefused returns the refusals recorded and not reported yet, oldest
// first, and drops them.
func (w *Wallet) takeRefused() ([]RefusedWithdrawal, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.db.NewBatch()
	defer b.Close()
	out, err := w.readRefused(b)
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return out, b.Commit(pebble.Sync)
}

// RefusedWithdrawals lists the refusals Recover has not reported yet
// (RecoverReport.Refused), without dropping them.
func (w *Wallet) RefusedWithdrawals() ([]RefusedWithdrawal, error) { return w.readRefused(nil) }

// readRefused reads the refusals recorded, oldest first, adding the
// deletion of each it read to drop if not nil.
func (w *Wallet) readRefused(drop *pebble.Batch) ([]RefusedWithdrawal, error) {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte("f/"), UpperBound: prefixEnd([]byte("f/"))})
	if err != nil {
		return nil, err
	}
	var out []RefusedWithdrawal
	for it.First(); it.Valid(); it.Next() {
		r, err := decodeRefusedWithdrawal(it.Value())
		if err != nil {
			it.Close()
			return nil, fmt.Errorf("wallet: corrupt refused withdrawal: %w", err)
		}
		if drop != nil {
			if err := drop.Delete(it.Key(), nil); err != nil {
				it.Close()
				return nil, err
			}
		}
		out = append(out, *r)
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b RefusedWithdrawal) int { return a.At.Compare(b.At) })
	return out, nil
}
