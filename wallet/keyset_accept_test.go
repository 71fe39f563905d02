package wallet

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// A key set stamped ahead of the wallet's clock by more than the protocol's
// clock allowance (a bank's or an offline operator's clock wrong once,
// during "keys extend" or "keys revoke") is refused and the stored one
// kept: accepted, it would make every correctly dated key set after it,
// a revocation included, look older until that date. A wallet that stored
// one before refusing them takes a correctly dated set again.
func TestWalletRefusesFutureIssuedKeySet(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := csKeys(t, now.Add(-time.Hour), bank.KeyConfig{})
	w, err := Create(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.acceptKeySet(k.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	wrong := *k
	wrong.IssuedAt = now.AddDate(1, 0, 0) // clock a year ahead
	if _, err := w.acceptKeySet(wrong.KeySet().Encode()); !errors.Is(err, ErrKeySetRefused) {
		t.Fatalf("a key set issued a year ahead of the wallet's clock: %v, want ErrKeySetRefused", err)
	}
	if ks, err := w.KeySet(); err != nil || !ks.IssuedAt.Equal(k.IssuedAt) {
		t.Fatalf("the stored key set after the refusal: %v", err)
	}
	// Within the clock allowance: a bank's clock a little ahead.
	ahead := *k
	ahead.IssuedAt = now.Add(ecash.MaxClockSkew)
	if _, err := w.acceptKeySet(ahead.KeySet().Encode()); err != nil {
		t.Fatalf("a key set issued within the clock allowance: %v", err)
	}

	// A wallet that accepted a future-dated set before this check.
	if err := w.db.Set(keyKeySet, wrong.KeySet().Encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	fixed := *k
	fixed.Denoms = slices.Clone(k.Denoms)
	if err := fixed.Revoke(fixed.Denoms[0].ID, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	ks, err := w.acceptKeySet(fixed.KeySet().Encode())
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := ks.Denomination(fixed.Denoms[0].ID); !d.Revoked {
		t.Errorf("holding a key set issued %s (a year ahead of the wallet's clock), the wallet ignores the bank's revocation", wrong.IssuedAt.UTC())
	}
}
