// Package logclient fetches a bank's audit log (bank/auditlog) over gRPC
// and verifies what it fetches: checkpoints against a witness that keeps
// the newest one seen (so a bank that forks its log is caught), entries
// against inclusion proofs. Wallets, merchants and auditors share it.
package logclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// NewWitness returns a witness of the log of the bank whose key set ks is:
// checkpoints signed under its origin by its signing key or by a retired
// signing key it still lists, so that a checkpoint saved before the bank
// rotated its signing key still verifies (a checkpoint carries no time, so
// a retired key's window is not checked; a checkpoint it signs must still
// be consistent with every other the witness sees).
func NewWitness(ks *ecash.KeySet) (*auditlog.Witness, error) {
	origin := auditlog.Origin(ks.BankID())
	var vs []note.Verifier
	for _, pub := range ks.SigningKeys() {
		v, err := auditlog.NewVerifier(origin, pub)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return auditlog.NewWitness(origin, vs...)
}

// Refresh restores a client's saved witness (nil: none yet) for the bank
// of key set ks, has it accept the bank's current checkpoint, and returns
// the checkpoint held and the witness to save.
func Refresh(ctx context.Context, c pb.AuditLogClient, ks *ecash.KeySet, saved []byte) (auditlog.Checkpoint, []byte, error) {
	w, err := NewWitness(ks)
	if err != nil {
		return auditlog.Checkpoint{}, nil, err
	}
	if saved != nil {
		if err := w.UnmarshalBinary(saved); err != nil {
			return auditlog.Checkpoint{}, nil, fmt.Errorf("the saved checkpoint: %w", err)
		}
	}
	cp, err := Update(ctx, c, w)
	if err != nil {
		return auditlog.Checkpoint{}, nil, err
	}
	next, err := w.MarshalBinary()
	return cp, next, err
}

// Update fetches the bank's current checkpoint and has w accept it with
// the consistency proof from the newest checkpoint w holds. It returns the
// newest checkpoint held afterwards; two inconsistent checkpoints are an
// *auditlog.ForkError (errors.Is auditlog.ErrForked).
func Update(ctx context.Context, c pb.AuditLogClient, w *auditlog.Witness) (auditlog.Checkpoint, error) {
	resp, err := c.GetCheckpoint(ctx, &pb.GetCheckpointRequest{})
	if err != nil {
		return auditlog.Checkpoint{}, fmt.Errorf("audit log: checkpoint: %w", err)
	}
	held, _, ok := w.Latest()
	var proof tlog.TreeProof
	if ok {
		cp, err := auditlog.ParseCheckpoint(noteText(resp.Checkpoint))
		if err != nil {
			return auditlog.Checkpoint{}, err
		}
		lo, hi := min(held.Size, cp.Size), max(held.Size, cp.Size)
		if lo > 0 && lo < hi {
			if proof, err = Consistency(ctx, c, lo, hi); err != nil {
				return auditlog.Checkpoint{}, err
			}
		}
	}
	return w.Accept(resp.Checkpoint, proof)
}

// noteText is the text of a signed note: everything before the blank line
// that starts its signatures. The signature is checked by Accept.
func noteText(signed []byte) []byte {
	for i := 0; i+1 < len(signed); i++ {
		if signed[i] == '\n' && signed[i+1] == '\n' {
			return signed[:i+1]
		}
	}
	return signed
}

// Find returns the index of the entry logged for ref (a payment, request
// or EPO hash); found is false if the bank logged none.
func Find(ctx context.Context, c pb.AuditLogClient, ref ecash.Hash) (index int64, found bool, err error) {
	resp, err := c.FindEntry(ctx, &pb.FindEntryRequest{Ref: ref[:]})
	if status.Code(err) == codes.NotFound {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("audit log: the entry of %x: %w", ref[:8], err)
	}
	return resp.Index, true, nil
}

// Began returns the time of the first entry of the log cp describes,
// proved included: when the bank began its log (false for an empty one).
func Began(ctx context.Context, c pb.AuditLogClient, cp auditlog.Checkpoint) (time.Time, bool, error) {
	if cp.Size == 0 {
		return time.Time{}, false, nil
	}
	e, err := Entry(ctx, c, cp, 0)
	if err != nil {
		return time.Time{}, false, err
	}
	return e.Time, true, nil
}

// AfterBegan reports whether a bank's answer dated answered (by the bank's
// clock) came from a bank keeping the log that began at began: an honest
// one logs such an answer's entry before it gives it. A bank that ran
// before its log began answers from its records of then too (a replayed
// deposit, a status query), and those have no entry; a replica's clock
// may differ from the one that began the log by up to ecash.MaxClockSkew.
func AfterBegan(answered, began time.Time) bool {
	return answered.After(began.Add(ecash.MaxClockSkew))
}

// Start is when the log a checkpoint covers began, read (Began) at most
// once, for the answers a client judges against that checkpoint.
type Start struct {
	ctx  context.Context
	c    pb.AuditLogClient
	cp   auditlog.Checkpoint
	read bool
	ok   bool
	at   time.Time
}

// NewStart is the start of the log cp covers, not read yet.
func NewStart(ctx context.Context, c pb.AuditLogClient, cp auditlog.Checkpoint) *Start {
	return &Start{ctx: ctx, c: c, cp: cp}
}

// Checkpoint is the checkpoint s judges against.
func (s *Start) Checkpoint() auditlog.Checkpoint { return s.cp }

// Unlogged judges an answer the client held before it fetched the
// checkpoint, dated answered by the bank (zero: the answer carries no
// date, a withdrawal's), whose entry the checkpoint does not hold (index
// 0: not found in the log; else the entry past it). asked is the time on
// the client's own request the answer answers, if the bank refuses a
// request dated further ahead of its clock than ecash.MaxClockSkew (a
// payment request's CreatedAt, an EPOID's time, a withdraw request's
// CreatedAt; bank builds before the withdraw rule took one however
// dated, but a withdrawal one of them made before the log began is
// dated before that, unless the client's clock ran more than twice the
// skew ahead); zero if the client holds none. An honest bank commits an
// entry before it answers, so if the answer came after the log began
// (AfterBegan, judged by answeredBy), the checkpoint must hold it:
// Unlogged returns the finding, "<what> <ref>…, which the bank answered
// at …", naming the bank's date and the bound when the bound decided, to
// be wrapped in the client's mismatch error. It returns "" when the entry
// may yet be logged.
func (s *Start) Unlogged(what string, ref ecash.Hash, answered, asked time.Time, index int64) (string, error) {
	if !s.read {
		var err error
		if s.at, s.ok, err = Began(s.ctx, s.c, s.cp); err != nil {
			return "", err
		}
		s.read = true
	}
	by := answeredBy(answered, asked)
	if !s.ok || !AfterBegan(by, s.at) {
		return "", nil // perhaps answered from a record made before the log
	}
	where := "is not in its audit log"
	if index > 0 {
		where = fmt.Sprintf("is at entry %d, past the checkpoint it signed after that (%d entries)", index, s.cp.Size)
	}
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	when, note := stamp(by), ""
	switch {
	case answered.IsZero():
		when += " at the earliest"
		note = fmt.Sprintf("; its answer carries no date, and the request it answers is dated %s, judged less %s (the clock skew)", stamp(asked), ecash.MaxClockSkew)
	case !by.Equal(answered):
		when += " at the earliest"
		note = fmt.Sprintf("; its answer is dated %s, but the request it answers is dated %s, and a bank refuses one dated more than %s ahead of its clock",
			stamp(answered), stamp(asked), ecash.MaxClockSkew)
	}
	return fmt.Sprintf("%s %x…, which the bank answered at %s (its log began at %s%s), %s", what, ref[:8], when, stamp(s.at), note, where), nil
}

// answeredBy is the time to judge a bank's answer dated answered by, for
// a request dated asked (Unlogged): no honest bank answers a request it
// refuses as dated more than ecash.MaxClockSkew ahead of its clock before
// asked less the skew, so an earlier date is judged as that. The bank
// alone dates its answer: unbounded, one it left out of its log could be
// dated before the log began and wait for ever. Zero asked: no bound.
func answeredBy(answered, asked time.Time) time.Time {
	if asked.IsZero() {
		return answered
	}
	if earliest := asked.Add(-ecash.MaxClockSkew); earliest.After(answered) {
		return earliest
	}
	return answered
}

// Consistency fetches the proof that the tree of newSize entries extends
// the tree of oldSize entries.
func Consistency(ctx context.Context, c pb.AuditLogClient, oldSize, newSize int64) (tlog.TreeProof, error) {
	resp, err := c.GetConsistencyProof(ctx, &pb.GetConsistencyProofRequest{OldSize: oldSize, NewSize: newSize})
	if err != nil {
		return nil, fmt.Errorf("audit log: consistency proof %d to %d: %w", oldSize, newSize, err)
	}
	return hashes(resp.Hashes)
}

// Entry fetches the entry at index and its inclusion proof in the tree cp
// describes, verifies both, and returns the entry.
func Entry(ctx context.Context, c pb.AuditLogClient, cp auditlog.Checkpoint, index int64) (*auditlog.Entry, error) {
	if index < 0 || index >= cp.Size {
		return nil, fmt.Errorf("%w: entry %d is not in a checkpoint of %d", auditlog.ErrBadProof, index, cp.Size)
	}
	es, err := c.GetLogEntries(ctx, &pb.GetLogEntriesRequest{From: index, Count: 1})
	if err != nil {
		return nil, fmt.Errorf("audit log: entry %d: %w", index, err)
	}
	if len(es.Entries) != 1 {
		return nil, fmt.Errorf("%w: the bank sent %d entries for index %d", auditlog.ErrBadProof, len(es.Entries), index)
	}
	resp, err := c.GetInclusionProof(ctx, &pb.GetInclusionProofRequest{Index: index, TreeSize: cp.Size})
	if err != nil {
		return nil, fmt.Errorf("audit log: inclusion proof of %d: %w", index, err)
	}
	proof, err := hashes(resp.Hashes)
	if err != nil {
		return nil, err
	}
	return auditlog.VerifyInclusion(cp, index, es.Entries[0], proof)
}

// hashes converts proof hashes, refusing any that are not 32 bytes and
// proofs longer than any tree of 2^63 entries needs.
func hashes(in [][]byte) ([]tlog.Hash, error) {
	if len(in) > 2*64 {
		return nil, fmt.Errorf("%w: proof of %d hashes", auditlog.ErrBadProof, len(in))
	}
	out := make([]tlog.Hash, len(in))
	for i, h := range in {
		if len(h) != len(out[i]) {
			return nil, fmt.Errorf("%w: proof hash of %d bytes", auditlog.ErrBadProof, len(h))
		}
		copy(out[i][:], h)
	}
	return out, nil
}

// ErrMismatch: a log entry does not record what the bank's answer said.
var ErrMismatch = errors.New("the bank's audit log does not match its answer")

// Expect is what a client expects an entry to record: a deposit (Ref: the
// payment hash), a swap (Ref: the swap request hash) or a recoup that
// re-issued the coin (Ref: the recoup request hash), spending exactly
// Coins; a withdrawal (Ref: the withdraw request hash) issuing one coin
// of each denomination Coins lists; a check (Ref: the EPO hash) decided as
// Approved says, and, where set, for EPOID; a deposit or a check
// crediting, where set, Merchant with Amount, a withdrawal debiting it;
// or a key set (Ref: the SHA-256 of its signed bytes).
type Expect struct {
	Kind     auditlog.Kind // auditlog.KindDeposit, KindSwap, KindRecoup, KindWithdraw, KindCheck or KindKeySet
	Ref      ecash.Hash
	Coins    []ecash.Hash // for a withdrawal: the denomination of each coin issued
	Approved bool         // for a check
	EPOID    string       // for a check, checked when not empty

	// For a deposit, a check or a withdrawal, each checked when not zero:
	// the account credited (debited) and the amount: a check's, what a
	// deposit credits (the entry's Amount less its Fee: a deposit
	// receipt's Total), what a withdrawal debits (its Amount and Fee: what
	// the account signed).
	Merchant uint64
	Amount   ecash.Amount
}

// Match checks that e records x (ErrMismatch if not).
func (x Expect) Match(e *auditlog.Entry) error {
	var (
		ref   ecash.Hash
		spent []auditlog.SpentCoin
		coins = "coins"
	)
	switch op := e.Op.(type) {
	case auditlog.Deposit:
		ref, spent = op.PaymentHash, op.Coins
		if err := x.matchCredit(e.Index, "credits", op.Merchant, op.Credited()); err != nil {
			return err
		}
	case auditlog.Withdraw:
		ref, coins = op.RequestHash, "denominations"
		if err := x.matchCredit(e.Index, "debits", op.Account, op.Debit()); err != nil {
			return err
		}
		// Its coins by denomination, compared as spent coins are: the
		// counts, the bank's, bounded by those expected before expanded.
		for _, c := range op.Issued {
			if uint64(len(spent))+uint64(c.Count) > uint64(len(x.Coins)) {
				return fmt.Errorf("%w: entry %d issues more coins than were asked for", ErrMismatch, e.Index)
			}
			for range c.Count {
				spent = append(spent, auditlog.SpentCoin{ID: c.Denom})
			}
		}
	case auditlog.Swap:
		ref, spent = op.RequestHash, op.Spent
		for _, c := range op.Credits { // refund credit the swap spent
			spent = append(spent, auditlog.SpentCoin{ID: c.ID})
		}
	case auditlog.Recoup:
		ref, spent = op.RequestHash, []auditlog.SpentCoin{{ID: op.Coin}}
		// A client checks a recoup that re-issued its coin (it settled it
		// as a swap, given new coins): an entry crediting the value to an
		// account instead, a single-coin swap's included, misstates it.
		if x.Kind == auditlog.KindRecoup && len(op.Issued) == 0 {
			return fmt.Errorf("%w: entry %d credits the recoup to account %d, the client was re-issued coins", ErrMismatch, e.Index, op.Account)
		}
	case auditlog.Check:
		ref = op.EPOHash
		if err := x.matchCheck(e.Index, op); err != nil {
			return err
		}
	case auditlog.KeySet:
		ref = sha256.Sum256(op.Signed)
	}
	if e.Kind() != x.Kind {
		return fmt.Errorf("%w: entry %d is a %s, not a %s", ErrMismatch, e.Index, e.Kind(), x.Kind)
	}
	if ref != x.Ref {
		return fmt.Errorf("%w: entry %d is for %x, not %x", ErrMismatch, e.Index, ref[:8], x.Ref[:8])
	}
	ids := make([]ecash.Hash, len(spent))
	for i, s := range spent {
		ids[i] = s.ID
	}
	if !slices.Equal(sorted(ids), sorted(x.Coins)) {
		return fmt.Errorf("%w: entry %d names other %s", ErrMismatch, e.Index, coins)
	}
	return nil
}

// matchCheck compares the facts of a check entry with those expected.
func (x Expect) matchCheck(index int64, op auditlog.Check) error {
	switch {
	case (op.Outcome == auditlog.OutcomeApproved) != x.Approved:
		return fmt.Errorf("%w: entry %d records the check %s", ErrMismatch, index, op.Outcome)
	case x.EPOID != "" && op.EPOID != x.EPOID:
		return fmt.Errorf("%w: entry %d records EPOID %q, not %q", ErrMismatch, index, op.EPOID, x.EPOID)
	}
	return x.matchCredit(index, "credits", op.Merchant, op.Amount)
}

// matchCredit compares the account an entry credits (or debits: verb)
// and the amount it records with those expected, each when set.
func (x Expect) matchCredit(index int64, verb string, merchant uint64, amount ecash.Amount) error {
	switch {
	case x.Merchant != 0 && merchant != x.Merchant:
		return fmt.Errorf("%w: entry %d %s account %d, not %d", ErrMismatch, index, verb, merchant, x.Merchant)
	case x.Amount != (ecash.Amount{}) && amount != x.Amount:
		return fmt.Errorf("%w: entry %d records %s, not %s", ErrMismatch, index, amount, x.Amount)
	}
	return nil
}

func sorted(hs []ecash.Hash) []ecash.Hash {
	out := slices.Clone(hs)
	slices.SortFunc(out, func(a, b ecash.Hash) int { return bytes.Compare(a[:], b[:]) })
	return out
}
