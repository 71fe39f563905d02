package ecash_test

import (
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// TestReceiptsAfterSigningRotation: receipts and double-spend proofs signed
// by a retired signing key verify against a key set that lists the key for
// the time they state, and only then.
func TestReceiptsAfterSigningRotation(t *testing.T) {
	fx := newVectorFixture(t)
	rotated := func(from, until time.Time) *ecash.KeySet {
		ks := *fx.ks
		ks.SigningPub = edPub(edKey(0x09))
		ks.PastSigning = []ecash.SigningKey{{Pub: edPub(fx.signing), ValidFrom: from, ValidUntil: until}}
		return &ks
	}
	at := fx.receipt.DepositedAt
	cases := []struct {
		name string
		ks   *ecash.KeySet
		ok   bool
	}{
		{"current key", fx.ks, true},
		{"retired, window holds the receipt", rotated(at.Add(-time.Hour), at.Add(time.Hour)), true},
		{"retired before the receipt", rotated(at.Add(-2*time.Hour), at), false},
		{"retired key not yet valid", rotated(at.Add(time.Millisecond), at.Add(time.Hour)), false},
		{"not listed", rotated(at, at.Add(time.Hour)), true},
	}
	cases[4].ks.PastSigning = nil
	cases[4].ok = false
	for _, c := range cases {
		err := fx.receipt.Verify(c.ks, fx.req)
		if c.ok != (err == nil) {
			t.Errorf("receipt, %s: %v", c.name, err)
		}
		if err != nil && (!errors.Is(err, ecash.ErrBadSignature) || !errors.Is(err, ecash.ErrUnknownSigner)) {
			t.Errorf("receipt, %s: %v does not name an unknown signer", c.name, err)
		}
	}
	detected := fx.proof.DetectedAt
	if err := fx.proof.Verify(rotated(detected.Add(-time.Minute), detected.Add(time.Minute))); err != nil {
		t.Errorf("proof by a retired key in its window: %v", err)
	}
	if err := fx.proof.Verify(rotated(detected.Add(time.Minute), detected.Add(time.Hour))); !errors.Is(err, ecash.ErrUnknownSigner) {
		t.Errorf("proof by a retired key outside its window: %v", err)
	}
}
