package auditlog_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func TestWitness(t *testing.T) {
	f := newFixture(t)
	v := f.verifier(t)
	m := auditlog.NewMemLog()
	signer, _ := auditlog.NewSigner(f.origin, f.signing)
	sign := func() (auditlog.Checkpoint, []byte) {
		cp, err := m.Checkpoint(f.origin)
		if err != nil {
			t.Fatal(err)
		}
		b, err := auditlog.SignCheckpoint(cp, signer)
		if err != nil {
			t.Fatal(err)
		}
		return cp, b
	}
	w, err := auditlog.NewWitness(f.origin, v)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := w.Latest(); ok {
		t.Fatal("new witness holds a checkpoint")
	}
	var history [][]byte
	var held auditlog.Checkpoint
	for i, e := range f.entries {
		if _, err := m.Append(e.Op, e.Time); err != nil {
			t.Fatal(err)
		}
		if i%3 != 0 {
			continue
		}
		cp, signed := sign()
		var p tlog.TreeProof
		if held.Size > 0 {
			p, _ = auditlog.ProveConsistency(held.Size, cp.Size, m)
		}
		got, err := w.Accept(signed, p)
		if err != nil || got != cp {
			t.Fatalf("accept %d: %+v %v", cp.Size, got, err)
		}
		held = cp
		history = append(history, signed)
	}
	// An older checkpoint, proved consistent, leaves the newest in place.
	old, _ := auditlog.OpenCheckpoint(history[1], f.origin, v)
	p, _ := auditlog.ProveConsistency(old.Size, held.Size, m)
	if got, err := w.Accept(history[1], p); err != nil || got != held {
		t.Errorf("older checkpoint: %+v %v", got, err)
	}
	// The same checkpoint again: fine.
	if got, err := w.Accept(history[len(history)-1], nil); err != nil || got != held {
		t.Errorf("same checkpoint: %+v %v", got, err)
	}
	// A newer one without a proof: refused as a fork (the bank must prove
	// consistency), and the witness keeps what it had.
	_, _ = m.Append(credits(1)[0], fixtureBase)
	_, newer := sign()
	_, err = w.Accept(newer, nil)
	var fe *auditlog.ForkError
	if !errors.As(err, &fe) || !errors.Is(err, auditlog.ErrForked) || !errors.Is(err, auditlog.ErrBadProof) {
		t.Fatalf("no proof: %v", err)
	}
	if !bytes.Equal(fe.Older, history[len(history)-1]) || !bytes.Equal(fe.Newer, newer) {
		t.Error("evidence is not the two checkpoints")
	}
	if got, _, _ := w.Latest(); got != held {
		t.Error("witness moved on a failed proof")
	}
	// With the proof it moves.
	p, _ = auditlog.ProveConsistency(held.Size, m.Size(), m)
	if got, err := w.Accept(newer, p); err != nil || got.Size != m.Size() {
		t.Fatalf("with proof: %+v %v", got, err)
	}
	// A bad signature says nothing about the bank: not a fork.
	bad := bytes.Clone(newer)
	bad[len(bad)-5] ^= 1
	if _, err := w.Accept(bad, nil); err == nil || errors.Is(err, auditlog.ErrForked) {
		t.Errorf("bad signature: %v", err)
	}

	// Saved and restored.
	saved, err := w.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	w2, _ := auditlog.NewWitness(f.origin, v)
	if err := w2.UnmarshalBinary(saved); err != nil {
		t.Fatal(err)
	}
	c1, s1, _ := w.Latest()
	c2, s2, _ := w2.Latest()
	if c1 != c2 || !bytes.Equal(s1, s2) {
		t.Error("restored witness differs")
	}
	again, _ := w2.MarshalBinary()
	if !bytes.Equal(again, saved) {
		t.Error("saved form is not canonical")
	}
	// The signed checkpoint a save holds, as a client exports it.
	if got, err := auditlog.SavedCheckpoint(saved); err != nil || !bytes.Equal(got, s1) {
		t.Errorf("SavedCheckpoint = %q, %v; want %q", got, err, s1)
	}
	// A tampered save is refused, and leaves the witness as it was.
	tampered := bytes.Clone(saved)
	tampered[len(tampered)-10] ^= 1 // inside the signature
	w3, _ := auditlog.NewWitness(f.origin, v)
	_ = w3.UnmarshalBinary(saved)
	if err := w3.UnmarshalBinary(tampered); err == nil {
		t.Error("tampered save accepted")
	}
	if c3, _, _ := w3.Latest(); c3 != c1 {
		t.Error("failed restore changed the witness")
	}
	// Another log's save is refused.
	w4, _ := auditlog.NewWitness("example.org/other", v)
	if err := w4.UnmarshalBinary(saved); !errors.Is(err, auditlog.ErrWrongOrigin) {
		t.Errorf("other origin: %v", err)
	}
	// An empty witness saves and restores empty.
	empty, _ := auditlog.NewWitness(f.origin, v)
	b, _ := empty.MarshalBinary()
	if err := w2.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := w2.Latest(); ok {
		t.Error("restored empty witness holds a checkpoint")
	}
	if got, err := auditlog.SavedCheckpoint(b); got != nil || err != nil {
		t.Errorf("SavedCheckpoint of an empty witness = %q, %v", got, err)
	}
	if _, err := auditlog.SavedCheckpoint(append(b, 0)); !errors.Is(err, ecash.ErrMalformed) {
		t.Errorf("SavedCheckpoint, trailing byte: %v", err)
	}
	if err := w2.UnmarshalBinary(append(b, 0)); !errors.Is(err, ecash.ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
}

// TestWitnessKeyRotation: a witness that knows the bank's current and
// retired signing keys opens a checkpoint saved under the retired key and
// checks the new key's checkpoints consistent with it; one that knows only
// the new key refuses the save.
func TestWitnessKeyRotation(t *testing.T) {
	f := newFixture(t)
	oldV := f.verifier(t)
	next := seedKey(0x03)
	newV, err := auditlog.NewVerifier(f.origin, next.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	oldS, _ := auditlog.NewSigner(f.origin, f.signing)
	newS, _ := auditlog.NewSigner(f.origin, next)
	m := f.memLog(t)
	sign := func(s note.Signer) []byte {
		cp, err := m.Checkpoint(f.origin)
		if err != nil {
			t.Fatal(err)
		}
		b, err := auditlog.SignCheckpoint(cp, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	before, _ := auditlog.NewWitness(f.origin, oldV)
	if _, err := before.Accept(sign(oldS), nil); err != nil {
		t.Fatal(err)
	}
	saved, _ := before.MarshalBinary()
	oldSize := m.Size()

	_, _ = m.Append(credits(1)[0], fixtureBase)
	rotated := sign(newS)
	proof, _ := auditlog.ProveConsistency(oldSize, m.Size(), m)

	// Only the new key: the save does not open.
	bare, _ := auditlog.NewWitness(f.origin, newV)
	if err := bare.UnmarshalBinary(saved); !errors.Is(err, auditlog.ErrCheckpointSignature) {
		t.Fatalf("a save under a key the witness does not know: %v", err)
	}
	// Both keys: it opens, and the new key's checkpoint is checked against it.
	w, err := auditlog.NewWitness(f.origin, newV, oldV)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.UnmarshalBinary(saved); err != nil {
		t.Fatalf("the retired key's checkpoint: %v", err)
	}
	if _, err := w.Accept(rotated, nil); !errors.Is(err, auditlog.ErrForked) {
		t.Errorf("the new key's checkpoint without a proof: %v, want a fork", err)
	}
	if got, err := w.Accept(rotated, proof); err != nil || got.Size != m.Size() {
		t.Fatalf("the new key's checkpoint: %+v, %v", got, err)
	}
	// A checkpoint of another history under the retired key is a fork.
	other := auditlog.NewMemLog()
	for _, e := range f.entries[:oldSize] {
		_, _ = other.Append(e.Op, e.Time.Add(time.Millisecond))
	}
	cp, _ := other.Checkpoint(f.origin)
	forged, _ := auditlog.SignCheckpoint(cp, oldS)
	if _, err := w.Accept(forged, nil); !errors.Is(err, auditlog.ErrForked) {
		t.Errorf("another history under the retired key: %v, want a fork", err)
	}
	if _, err := auditlog.NewWitness(f.origin); err == nil {
		t.Error("a witness without a verifier")
	}
	if _, err := auditlog.NewWitness(f.origin, newV, nil); err == nil {
		t.Error("a witness with a nil verifier")
	}
}
