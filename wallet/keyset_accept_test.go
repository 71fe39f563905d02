package wallet

import (
	"bytes"
	"crypto/rand"
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

// A later key set that drops denomination keys the stored one listed,
// before their deposit windows close, is refused and the stored set kept:
// an honest bank drops a key only once its coins are no longer accepted
// (Keys.Prune). Such a set is how a bank would move a wallet into another
// group of a split between key sets it serves different wallets.
func TestWalletRefusesKeySetDroppingLiveKeys(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0.Add(24 * time.Hour)
	k := csKeys(t, t0, bank.KeyConfig{})
	kb := *k
	kb.Denoms = slices.Clone(k.Denoms)
	if _, err := kb.Extend(bank.Schedule{}, t0.AddDate(1, 6, 0), now, rand.Reader); err != nil {
		t.Fatal(err)
	}
	w, err := Create(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.acceptKeySet(kb.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	ka2 := *k
	ka2.IssuedAt = now.Add(time.Hour)
	now = now.Add(2 * time.Hour)
	if _, err := w.acceptKeySet(ka2.KeySet().Encode()); !errors.Is(err, ErrKeySetRefused) {
		ks, _ := w.KeySet()
		t.Fatalf("a key set dropping %d live denomination keys the stored one listed: %v, want ErrKeySetRefused (stored now lists %d)", len(kb.Denoms)-len(ka2.Denoms), err, len(ks.Denominations))
	}
	if ks, err := w.KeySet(); err != nil || len(ks.Denominations) != len(kb.Denoms) {
		t.Fatalf("the stored key set after the refusal: %v", err)
	}
}

// A later key set listing a known denomination key with other windows or
// fees is refused: a denomination's id covers its value and key, not its
// windows, so a bank could otherwise give one wallet next year's key
// withdrawable months early and know every coin of it deposited before
// the schedule's start to be that wallet's. The changes an honest bank
// makes (extending, revoking, rotating the signing key, pruning keys
// past their deposit end) are taken.
func TestWalletRefusesKeySetChangingWindowsOrFees(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0.Add(time.Hour)
	k := csKeys(t, t0, bank.KeyConfig{WithdrawPeriod: 10 * 24 * time.Hour, DepositPeriod: 30 * 24 * time.Hour, Until: t0.Add(15 * 24 * time.Hour)})
	w, err := Create(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.acceptKeySet(k.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	next := k.Denoms[len(k.Denoms)-1].ID // a key starting later
	for name, change := range map[string]func(d *ecash.Denomination){
		"an earlier withdraw start": func(d *ecash.Denomination) { d.WithdrawStart = d.WithdrawStart.Add(-48 * time.Hour) },
		"a later withdraw end":      func(d *ecash.Denomination) { d.WithdrawEnd = d.WithdrawEnd.Add(time.Hour) },
		"an earlier deposit end":    func(d *ecash.Denomination) { d.DepositEnd = d.DepositEnd.Add(-time.Hour) },
		"another deposit fee": func(d *ecash.Denomination) {
			d.Fees.Deposit = ecash.Amount{Currency: "EUR", Value: 1}
		},
	} {
		other := *k
		other.Denoms = slices.Clone(k.Denoms)
		for i := range other.Denoms {
			if other.Denoms[i].ID == next {
				change(&other.Denoms[i].Denomination)
			}
		}
		other.IssuedAt = now
		if _, err := w.acceptKeySet(other.KeySet().Encode()); !errors.Is(err, ErrKeySetRefused) {
			t.Errorf("a key set listing a known key with %s: %v, want ErrKeySetRefused", name, err)
		}
		if ks, _ := w.KeySet(); !ks.IssuedAt.Equal(k.IssuedAt) {
			t.Fatalf("the stored key set was replaced by one with %s", name)
		}
	}

	// What an honest bank does.
	for _, step := range []struct {
		name   string
		at     time.Duration
		change func(k *bank.Keys, now time.Time) error
	}{
		{"extend", 2 * time.Hour, func(k *bank.Keys, now time.Time) error {
			_, err := k.Extend(bank.Schedule{}, now.Add(40*24*time.Hour), now, rand.Reader)
			return err
		}},
		{"revoke", 3 * time.Hour, func(k *bank.Keys, now time.Time) error { return k.Revoke(next, now) }},
		{"rotate the signing key", 4 * time.Hour, func(k *bank.Keys, now time.Time) error {
			_, err := k.RotateSigning(now, time.Hour, rand.Reader)
			return err
		}},
		{"prune", 31 * 24 * time.Hour, func(k *bank.Keys, now time.Time) error {
			if d, _ := k.Prune(now, time.Time{}); len(d) == 0 {
				return errors.New("nothing pruned")
			}
			return nil
		}},
	} {
		now = t0.Add(step.at)
		if err := step.change(k, now); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		ks, err := w.acceptKeySet(k.KeySet().Encode())
		if err != nil {
			t.Fatalf("the key set after %s: %v", step.name, err)
		}
		if !ks.IssuedAt.Equal(k.IssuedAt) {
			t.Fatalf("after %s the wallet kept a key set issued %s", step.name, ks.IssuedAt.UTC())
		}
	}
	// Nor does an honest bank list a revoked key as valid again (the store
	// refuses to log it: bank.ErrUnrevoked).
	unrevoked := *k
	unrevoked.Denoms = slices.Clone(k.Denoms)
	for i := range unrevoked.Denoms {
		if unrevoked.Denoms[i].ID == next {
			unrevoked.Denoms[i].Revoked = false
		}
	}
	unrevoked.IssuedAt = now.Add(time.Minute)
	now = now.Add(time.Hour)
	if _, err := w.acceptKeySet(unrevoked.KeySet().Encode()); !errors.Is(err, ErrKeySetRefused) {
		t.Errorf("a key set listing a revoked key as valid: %v, want ErrKeySetRefused", err)
	}
	// Nor when the stored set cannot be read (a damaged store): the set it
	// would follow is unknown, so it is not taken unchecked.
	damaged := []byte("not a key set")
	if err := w.db.Set(keyKeySet, damaged, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := w.acceptKeySet(unrevoked.KeySet().Encode()); err == nil {
		t.Error("a key set listing a revoked key as valid, over a stored set that cannot be read: taken")
	}
	if stored, _ := get(w.db, keyKeySet); !bytes.Equal(stored, damaged) {
		t.Error("the stored key set that cannot be read was replaced unchecked")
	}
}
