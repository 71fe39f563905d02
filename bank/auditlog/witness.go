package auditlog

import (
	"errors"
	"fmt"
	"sync"

	"github.com/blindbank/blindbank/ecash"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// ErrForked is matched (errors.Is) by a *ForkError: the bank signed two
// checkpoints that do not describe one append-only log.
var ErrForked = errors.New("auditlog: the bank's log is forked")

// ErrKeySetEquivocation is the Reason of a *ForkError whose two
// checkpoints have the same tree (size and root) and different keyset
// lines: the tree determines its newest key set, so one of them is false,
// and both are signed.
var ErrKeySetEquivocation = errors.New("auditlog: two checkpoints of one tree name different key sets")

// ForkError is the evidence of a fork: two checkpoints, both signed by the
// bank's log key, and the consistency proof that failed to join them; or
// two of the same tree whose keyset lines differ (Reason wraps
// ErrKeySetEquivocation, Proof is nil).
//
// When Older and Newer have the same size and different roots, or the same
// tree and different keyset lines, the evidence stands alone: anyone
// holding the bank's verifier key can check it. When the
// sizes differ, it stands once the bank cannot produce any proof that
// verifies (the proof may have been damaged on the way, so a client asks
// again before it raises the alarm).
type ForkError struct {
	Older, Newer []byte         // the signed checkpoints, the smaller size first
	Proof        tlog.TreeProof // the consistency proof offered, nil if none applies
	Reason       error          // what failed
}

func (e *ForkError) Error() string {
	return fmt.Sprintf("auditlog: the bank's log is forked: %v", e.Reason)
}

// Is reports ErrForked.
func (e *ForkError) Is(target error) bool { return target == ErrForked }

// Unwrap returns the failed check.
func (e *ForkError) Unwrap() error { return e.Reason }

// Witness keeps the newest checkpoint of one log that a client (wallet,
// merchant, auditor) has seen, and refuses any checkpoint not consistent
// with it. It is safe for concurrent use. The zero value is not usable: make
// one with NewWitness, and restore a saved one with UnmarshalBinary.
type Witness struct {
	origin    string
	verifiers note.Verifiers

	mu     sync.Mutex
	signed []byte // the newest signed checkpoint; nil before the first
	cp     Checkpoint
}

// NewWitness returns a witness of the log named origin whose checkpoints
// are signed by any of vs (NewVerifier with the bank's signing key, and with
// each retired signing key its key set still lists: a checkpoint saved
// before a rotation stays verifiable, and the new key's checkpoints are
// checked consistent with it). It holds no checkpoint: the first one Accept
// sees is trusted on first use.
func NewWitness(origin string, vs ...note.Verifier) (*Witness, error) {
	if err := checkOrigin(origin); err != nil {
		return nil, err
	}
	list, err := verifierList(vs)
	if err != nil {
		return nil, err
	}
	return &Witness{origin: origin, verifiers: list}, nil
}

// Latest returns the newest checkpoint accepted and its signed form; ok is
// false before the first.
func (w *Witness) Latest() (cp Checkpoint, signed []byte, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cp, w.signed, w.signed != nil
}

// Accept verifies signed, a checkpoint from the bank, and its consistency
// with the newest checkpoint held: proof is the consistency proof between
// the two sizes (ProveConsistency(smaller, larger)); it is ignored when the
// witness holds nothing or the sizes are equal. A newer consistent
// checkpoint replaces the one held, and so does one of equal size with a
// keyset line when the one held has none; an older or equal consistent one
// otherwise changes nothing. A witness does not check keyset lines against
// the log (it cannot: only a replay of the log can); it cosigns the whole
// body. But two of one size whose lines differ are a *ForkError
// (ErrKeySetEquivocation): one tree has one newest key set. Accept
// returns the newest checkpoint held afterwards.
//
// Errors: a bad signature or another log's checkpoint (ErrCheckpointSignature,
// ErrWrongOrigin, ErrMalformedCheckpoint) changes nothing and says nothing
// about the bank; two signed checkpoints that are not consistent are a
// *ForkError (errors.Is(err, ErrForked)).
func (w *Witness) Accept(signed []byte, proof tlog.TreeProof) (Checkpoint, error) {
	cp, err := openCheckpoint(signed, w.origin, w.verifiers)
	if err != nil {
		return Checkpoint{}, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.signed == nil {
		w.keep(cp, signed)
		return cp, nil
	}
	older, newer := w.cp, cp
	olderSigned, newerSigned := w.signed, signed
	if cp.Size < w.cp.Size {
		older, newer = newer, older
		olderSigned, newerSigned = newerSigned, olderSigned
	}
	if older.Size == newer.Size {
		proof = nil
	}
	if err := VerifyConsistency(older, newer, proof); err != nil {
		return w.cp, &ForkError{Older: clone(olderSigned), Newer: clone(newerSigned), Proof: proof, Reason: err}
	}
	// The tree determines its newest key set: two lines for one tree are
	// as strong a proof as two roots.
	if older.Size == newer.Size && older.HasKeySet && newer.HasKeySet && older.KeySet != newer.KeySet {
		return w.cp, &ForkError{Older: clone(olderSigned), Newer: clone(newerSigned), Reason: fmt.Errorf("%w: two checkpoints of %d entries name different newest key sets (entry %d, %x…; entry %d, %x…)",
			ErrKeySetEquivocation, older.Size, older.KeySet.Index, older.KeySet.Hash[:8], newer.KeySet.Index, newer.KeySet.Hash[:8])}
	}
	// An equal one replaces a checkpoint without a keyset line (saved
	// before banks committed to their key sets): same tree, and the claim
	// it adds is what a client checks.
	if cp.Size > w.cp.Size || (cp.Size == w.cp.Size && cp.HasKeySet && !w.cp.HasKeySet) {
		w.keep(cp, signed)
	}
	return w.cp, nil
}

func (w *Witness) keep(cp Checkpoint, signed []byte) {
	w.cp, w.signed = cp, clone(signed)
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// witnessPurpose is the tag of a saved witness.
const witnessPurpose = "auditlog/witness"

// MarshalBinary is the witness's saved form (tag "auditlog/witness"): the
// origin, then the newest signed checkpoint (empty if none). The verifiers
// are not saved: the client supplies them again from the key set it pins.
func (w *Witness) MarshalBinary() ([]byte, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := ecash.NewEncoder(witnessPurpose)
	e.String(w.origin)
	e.VarBytes(w.signed)
	return e.Bytes(), nil
}

// SavedCheckpoint returns the signed checkpoint that a saved witness
// (MarshalBinary's form) holds, nil if it holds none: the bytes a client
// hands an auditor ("audit log --from"). It does not verify the signature:
// restore the witness (UnmarshalBinary) for that.
func SavedCheckpoint(saved []byte) ([]byte, error) {
	d := ecash.NewDecoder(witnessPurpose, saved)
	_ = d.String() // the origin: not needed here
	signed := d.VarBytes(MaxCheckpointSize)
	if err := d.Finish(); err != nil {
		return nil, fmt.Errorf("auditlog: saved witness: %w", err)
	}
	if len(signed) == 0 {
		return nil, nil
	}
	return signed, nil
}

// UnmarshalBinary restores a saved witness into w, which NewWitness made
// with the same origin: the saved checkpoint is verified again, so a
// tampered file is refused (and w is left unchanged).
func (w *Witness) UnmarshalBinary(b []byte) error {
	d := ecash.NewDecoder(witnessPurpose, b)
	origin := d.String()
	signed := d.VarBytes(MaxCheckpointSize)
	if err := d.Finish(); err != nil {
		return fmt.Errorf("auditlog: saved witness: %w", err)
	}
	if origin != w.origin {
		return fmt.Errorf("%w: saved witness of %q, want %q", ErrWrongOrigin, origin, w.origin)
	}
	if len(signed) == 0 {
		w.mu.Lock()
		w.signed, w.cp = nil, Checkpoint{}
		w.mu.Unlock()
		return nil
	}
	cp, err := openCheckpoint(signed, w.origin, w.verifiers)
	if err != nil {
		return fmt.Errorf("auditlog: saved witness: %w", err)
	}
	w.mu.Lock()
	w.keep(cp, signed)
	w.mu.Unlock()
	return nil
}
