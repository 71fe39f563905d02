package wallet

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// A swap (or recoup re-issue) recovered from the store may have been sent
// before, its answer lost: that original may still be committing at a
// replica, or in the bank's commit pipeline, when a retry reaches a bank
// whose clock or key set refuses it for good (an output's withdraw window
// ended there, a replica not serving a denomination yet). The bank looks
// the request's record up once, finds none, and the refusal stands; the
// original then commits. Swaps have no account, so the bank keeps no
// refusal record for them as it does for withdrawals (it could not budget
// them): the wallet does not end a recovered swap on a refusal alone. It
// asks the bank what it signed (IssuedSignatures of the outputs) and
// whether the inputs are spent (CoinsSpent): both, and the swap committed,
// and is finished from the signatures; otherwise it stays pending, inputs
// reserved, until the refusal still stands SwapRefusalHorizon after the
// last send that may be in flight. A swap never sent before, refused, ends
// at once, as does one refused because its outputs were signed in another
// request (ErrAlreadyIssued: the store refuses the original for them too).

// SwapRefusalHorizon is how long after the last send of a swap or recoup
// re-issue whose outcome it does not know the wallet keeps it pending
// when the bank refuses a retry of it for good and shows it not
// committed. An original in flight commits (or fails) within its commit
// pipeline's time, seconds, or as long as a stalled replica or database
// holds it; the bank's store commits it only within bank.MaxCommitDelay
// (an hour) of when the replica took it, by the store's clock. A day is
// far past that, the clocks' skew included, and past what banks before
// that bound held in practice. The cost is a day's wait, in this rare
// case, for the inputs to be spendable again. Measured by the wallet's
// clock: one moved a day ahead ends the wait early.
const SwapRefusalHorizon = 24 * time.Hour

// swapSentKey holds a pending swap's send record (swapSent), beside its
// s/ record. A record of its own, not a field of pendingSwap: builds
// before it read s/ records and refuse trailing bytes; they never read
// t/, and leave it behind when they settle the swap (takeSwapRecoveries
// drops those).
func swapSentKey(h ecash.Hash) []byte { return append([]byte("t/"), h[:]...) }

// swapSent is what the wallet knows of a pending swap's sends.
type swapSent struct {
	// LastSent: the latest send whose outcome is not known to be a
	// refusal (an original that may still commit), by the wallet's clock.
	// Written before every send of a recovered swap; a send refused for
	// good puts back the one before.
	LastSent time.Time
	// Refused: the bank's last refusal of a send (its gRPC code and
	// message), and when, that left the swap pending; "" if none.
	Refused   string
	RefusedAt time.Time
}

func (s *swapSent) encode() []byte {
	e := ecash.NewEncoder("wallet/swap-sent")
	e.I64(s.LastSent.UnixMilli())
	e.VarBytes([]byte(s.Refused))
	e.I64(s.RefusedAt.UnixMilli())
	return e.Bytes()
}

func decodeSwapSent(b []byte) (*swapSent, error) {
	d := ecash.NewDecoder("wallet/swap-sent", b)
	s := &swapSent{LastSent: time.UnixMilli(d.I64())}
	s.Refused = string(d.VarBytes(maxReasonLen))
	s.RefusedAt = time.UnixMilli(d.I64())
	return s, d.Finish()
}

// readSwapSent reads a swap's send record; nil if it has none (persisted
// by an older build). Caller holds w.mu.
func (w *Wallet) readSwapSent(h ecash.Hash) (*swapSent, error) {
	raw, err := get(w.db, swapSentKey(h))
	if err != nil || raw == nil {
		return nil, err
	}
	s, err := decodeSwapSent(raw)
	if err != nil {
		return nil, fmt.Errorf("wallet: corrupt swap send record: %w", err)
	}
	return s, nil
}

// markSending records, durably, that a recovered swap is about to be
// sent (this send may be lost and commit later), and returns the record
// as it was before. A swap without one (an older build persisted it, its
// sends' times unknown) is taken as sent now: its horizon starts here.
// A clock behind the time recorded leaves it (LastSent is the latest
// send's): a clock that ran ahead delays the end, never hastens it.
func (w *Wallet) markSending(h ecash.Hash) (*swapSent, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev, err := w.readSwapSent(h)
	if err != nil {
		return nil, err
	}
	now := w.now()
	if prev == nil {
		prev = &swapSent{LastSent: now}
	}
	next := *prev
	// The latest of the sends: one made while the clock was behind (set
	// right since) does not move the horizon back.
	if now.After(next.LastSent) {
		next.LastSent = now
	}
	return prev, w.db.Set(swapSentKey(h), next.encode(), pebble.Sync)
}

// SwapOutcome is what became of a recovered swap the bank refused.
type SwapOutcome uint8

const (
	// SwapCompleted: the bank refused a retry, but showed the swap
	// committed (its outputs signed, its inputs spent), or answered a
	// later retry of one kept pending with its signatures: the wallet
	// took the outputs from the bank's signatures, the inputs spent.
	SwapCompleted SwapOutcome = iota + 1
	// SwapKeptPending: the bank refused a retry and does not show the
	// swap committed, but an earlier send may still commit: the swap
	// stays pending, its inputs reserved, until Until.
	SwapKeptPending
	// SwapRefused: the refusal stood past SwapRefusalHorizon: the swap
	// ended as refused, its inputs fresh again, its planchet indices
	// skipped. Or, of one reported kept pending, a later retry was
	// refused for what an earlier send meets too (an input spent in
	// another request, with the bank's proof: that one stays spent; its
	// outputs signed in another request).
	SwapRefused
)

func (o SwapOutcome) String() string {
	switch o {
	case SwapCompleted:
		return "completed"
	case SwapKeptPending:
		return "kept pending"
	case SwapRefused:
		return "refused"
	}
	return fmt.Sprintf("SwapOutcome(%d)", uint8(o))
}

// SwapRecovery is a recovered swap or recoup re-issue the bank refused
// when sent again, and what became of it (RecoverReport.Swaps).
type SwapRecovery struct {
	Request ecash.Hash // the request's hash (the bank's idempotency key)
	Recoup  bool       // a recoup's re-issue, not a swap
	Outcome SwapOutcome
	Reason  string    // the bank's refusal: its gRPC code and message
	At      time.Time // when the wallet got it, by its clock
	// Until: kept pending, when it ends as refused if the refusal still
	// stands then (SwapRefusalHorizon after its last send not refused).
	Until time.Time
}

func swapRecoveryKey(h ecash.Hash) []byte { return append([]byte("u/"), h[:]...) }

func (r *SwapRecovery) encode() []byte {
	e := ecash.NewEncoder("wallet/swap-recovery")
	e.Fixed(r.Request[:])
	if r.Recoup {
		e.U8(1)
	} else {
		e.U8(0)
	}
	e.U8(uint8(r.Outcome))
	e.VarBytes([]byte(r.Reason))
	e.I64(r.At.UnixMilli())
	return e.Bytes()
}

func decodeSwapRecovery(b []byte) (*SwapRecovery, error) {
	d := ecash.NewDecoder("wallet/swap-recovery", b)
	r := &SwapRecovery{}
	copy(r.Request[:], d.Fixed(32))
	r.Recoup = d.U8() == 1
	r.Outcome = SwapOutcome(d.U8())
	r.Reason = string(d.VarBytes(maxReasonLen))
	r.At = time.UnixMilli(d.I64())
	if err := d.Finish(); err != nil {
		return nil, err
	}
	if r.Outcome != SwapCompleted && r.Outcome != SwapRefused {
		return nil, fmt.Errorf("%w: swap recovery of outcome %d", ecash.ErrMalformed, r.Outcome)
	}
	return r, nil
}

// swapKeptError: a recovered swap refused by the bank, kept pending (see
// above); recoverSwaps goes on to the others, and its caller to its own
// work, with the other coins.
type swapKeptError struct{ refusal error }

func (e *swapKeptError) Error() string {
	return fmt.Sprintf("%v: refused again, kept pending while an earlier send may commit: %v", ErrPending, e.refusal)
}
func (e *swapKeptError) Unwrap() error { return ErrPending }

// settleRefused decides a recovered swap the bank refused for good
// (refusal) on this send; prev is its send record from before this send.
func (w *Wallet) settleRefused(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, h ecash.Hash, ps *pendingSwap, outputs []ecash.Planchet, prev *swapSent, refusal error) ([]ecash.Coin, error) {
	now := w.now()
	note := &SwapRecovery{Request: h, Recoup: ps.Recoup, Reason: refusalReason(refusal), At: now}
	// This send is settled (refused: it will not commit); an earlier one
	// may not be. Put its time back, so that retries do not push the
	// horizon on, with the refusal for Recover's report.
	kept := swapSent{LastSent: prev.LastSent, Refused: note.Reason, RefusedAt: now}
	w.mu.Lock()
	err := w.db.Set(swapSentKey(h), kept.encode(), pebble.Sync)
	w.mu.Unlock()
	if err != nil {
		return nil, err
	}
	sigs, committed, err := w.swapCommitted(ctx, bank, ps, outputs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v; asking the bank whether it committed the swap it refused: %v", ErrPending, refusal, err)
	}
	if committed {
		note.Outcome = SwapCompleted
		return w.completeSwap(ks, h, ps, outputs, sigs, 0, note)
	}
	if now.Sub(prev.LastSent) < SwapRefusalHorizon {
		return nil, &swapKeptError{refusal: refusal}
	}
	note.Outcome = SwapRefused
	if err := w.endSwap(h, ps, nil, &ecash.Hash{}, 0, nil, note); err != nil {
		return nil, err
	}
	return nil, refusal
}

// swapCommitted asks the bank whether it committed a swap: every output
// signed and every input it spends (not refund credit) spent. A swap
// commits atomically, so that is it (or, the same to the wallet, another
// copy of it: the outputs are this seed's coins, the inputs spent). The
// signatures are checked as a swap's answer is (finish). Anything short of
// both is not committed, as far as the bank shows now.
func (w *Wallet) swapCommitted(ctx context.Context, bank pb.BankClient, ps *pendingSwap, outputs []ecash.Planchet) ([][]byte, bool, error) {
	if len(outputs) == 0 {
		return nil, false, nil
	}
	resp, err := bank.IssuedSignatures(ctx, &pb.IssuedSignaturesRequest{BlindedHashes: blindedHashes(outputs)})
	if err != nil {
		return nil, false, err
	}
	if len(resp.BlindSignatures) != len(outputs) {
		return nil, false, fmt.Errorf("%w: %d signatures for %d outputs", ecash.ErrMalformed, len(resp.BlindSignatures), len(outputs))
	}
	for _, s := range resp.BlindSignatures {
		if len(s) == 0 {
			return nil, false, nil
		}
	}
	var spends []ecash.Hash
	for _, id := range ps.Inputs {
		if !slices.Contains(ps.Credits, id) {
			spends = append(spends, id)
		}
	}
	if len(spends) > 0 {
		spent, err := bank.CoinsSpent(ctx, &pb.CoinsSpentRequest{CoinIds: hashBytes(spends)})
		if err != nil {
			return nil, false, err
		}
		if len(spent.Spent) != len(spends) {
			return nil, false, fmt.Errorf("%w: %d answers for %d coins", ecash.ErrMalformed, len(spent.Spent), len(spends))
		}
		if slices.Contains(spent.Spent, false) {
			return nil, false, nil
		}
	}
	return resp.BlindSignatures, true, nil
}

// UnreportedSwaps counts the recovered swaps settled (completed, or
// ended as refused) since Recover last reported them: another operation
// that sent one again (a payment, a swap) settles it too, and only
// Recover reports it (RecoverReport.Swaps).
func (w *Wallet) UnreportedSwaps() (int, error) { return w.countPending("u/") }

// takeSwapRecoveries returns, for Recover's report, the refused swaps
// settled since the last report (each reported once, then dropped) and
// those kept pending now, oldest first. It drops the send records an
// older build left behind when it settled their swaps.
func (w *Wallet) takeSwapRecoveries() ([]SwapRecovery, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.db.NewBatch()
	defer b.Close()
	var out []SwapRecovery
	err := w.eachUnder("u/", func(key, val []byte) error {
		r, err := decodeSwapRecovery(val)
		if err != nil {
			return fmt.Errorf("wallet: corrupt swap recovery record: %w", err)
		}
		out = append(out, *r)
		return b.Delete(key, nil)
	})
	if err != nil {
		return nil, err
	}
	err = w.eachUnder("t/", func(key, val []byte) error {
		var h ecash.Hash
		if len(key) != 2+len(h) {
			return fmt.Errorf("wallet: corrupt swap send record key")
		}
		copy(h[:], key[2:])
		raw, err := get(w.db, swapKey(h))
		if err != nil {
			return err
		}
		if raw == nil {
			return b.Delete(key, nil) // its swap settled by an older build
		}
		s, err := decodeSwapSent(val)
		if err != nil {
			return fmt.Errorf("wallet: corrupt swap send record: %w", err)
		}
		if s.Refused == "" {
			return nil
		}
		ps, err := decodePendingSwap(raw)
		if err != nil {
			return fmt.Errorf("wallet: corrupt pending swap: %w", err)
		}
		out = append(out, SwapRecovery{Request: h, Recoup: ps.Recoup, Outcome: SwapKeptPending, Reason: s.Refused, At: s.RefusedAt, Until: s.LastSent.Add(SwapRefusalHorizon)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b SwapRecovery) int { return a.At.Compare(b.At) })
	if b.Empty() {
		return out, nil
	}
	return out, b.Commit(pebble.Sync)
}

// eachUnder calls f on every key and value under prefix.
func (w *Wallet) eachUnder(prefix string, f func(key, val []byte) error) error {
	it, err := w.db.NewIter(&pebble.IterOptions{LowerBound: []byte(prefix), UpperBound: prefixEnd([]byte(prefix))})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		if err := f(slices.Clone(it.Key()), it.Value()); err != nil {
			it.Close()
			return err
		}
	}
	return errors.Join(it.Error(), it.Close())
}
