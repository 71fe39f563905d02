package wallet

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

func csKeys(t *testing.T, now time.Time, cfg bank.KeyConfig) *bank.Keys {
	t.Helper()
	cfg.Currency = "EUR"
	for v := uint64(1); v <= 8; v *= 2 {
		cfg.Denoms = append(cfg.Denoms, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: ecash.CipherCS})
	}
	k, err := bank.GenerateKeys(cfg, now, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// During the overlap of two keys' withdraw windows, split takes one key per
// value, the newer: never both.
func TestSplitOneKeyPerValue(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	k := csKeys(t, t0, bank.KeyConfig{WithdrawPeriod: 10 * time.Hour, Overlap: 2 * time.Hour, DepositPeriod: 20 * time.Hour, Until: t0.Add(15 * time.Hour)})
	ks := k.KeySet()
	amount := ecash.MustParseAmount("EUR:0.15")
	for _, tc := range []struct {
		at    time.Duration
		start time.Duration
	}{{time.Hour, 0}, {9 * time.Hour, 8 * time.Hour}, {12 * time.Hour, 8 * time.Hour}} {
		ds, err := split(amount, ks, t0.Add(tc.at))
		if err != nil {
			t.Fatal(err)
		}
		var sum uint64
		for _, d := range ds {
			sum += d.Value.Value
			if !d.WithdrawStart.Equal(t0.Add(tc.start)) {
				t.Errorf("at %v: a key from %v, want the one from %v", tc.at, d.WithdrawStart.Sub(t0), tc.start)
			}
		}
		// 1+2+4+8 = 15: one coin of each value.
		if sum != 15 || len(ds) != 4 {
			t.Errorf("at %v: %d coins worth %d", tc.at, len(ds), sum)
		}
	}
	if _, err := split(amount, ks, t0.Add(18*time.Hour)); !errors.Is(err, ErrNoExactChange) {
		t.Errorf("after the last key: %v", err)
	}
}

// A wallet from before the pin was stored on its own pins the master key of
// its stored key set: a set signed by another master key is refused, and
// the first accepted set stores the pin.
func TestLegacyWalletPin(t *testing.T) {
	now := time.Now()
	w, err := Create(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a := csKeys(t, now, bank.KeyConfig{})
	if err := w.db.Set(keyKeySet, a.KeySet().Encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if pin, _ := get(w.db, keyMasterPin); pin != nil {
		t.Fatal("pinned already")
	}
	b := csKeys(t, now, bank.KeyConfig{})
	if _, err := w.acceptKeySet(b.KeySet().Encode()); !errors.Is(err, ErrMasterKeyChanged) {
		t.Fatalf("another master: %v", err)
	}
	if ks, err := w.KeySet(); err != nil || !ks.MasterPub.Equal(a.MasterPub) {
		t.Fatalf("stored key set after the refusal: %v", err)
	}
	if _, err := w.acceptKeySet(a.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	if pin, _ := get(w.db, keyMasterPin); !a.MasterPub.Equal(ed25519.PublicKey(pin)) {
		t.Fatal("the pin was not stored")
	}
	// A stored set that cannot be read does not unpin the wallet.
	if err := w.db.Delete(keyMasterPin, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := w.db.Set(keyKeySet, []byte("junk"), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if _, err := w.acceptKeySet(b.KeySet().Encode()); err == nil {
		t.Fatal("a corrupt stored key set let another master in")
	}
}

// DropKeySet keeps the master key pinned: a wallet from before the pin was
// stored on its own has the one its stored set names pinned in the drop's
// write, so that the next set is checked against it; one whose set names
// none readably drops nothing (ErrNoMasterPin). The drop takes the time
// the set was fetched with it, and nothing else.
func TestDropKeySetKeepsPin(t *testing.T) {
	now := time.Now()
	w, err := Create(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a := csKeys(t, now, bank.KeyConfig{})
	if _, err := w.acceptKeySet(a.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	if err := w.SetAccount(7); err != nil {
		t.Fatal(err)
	}
	// A legacy wallet (no m/master) whose stored set names its master key
	// but does not verify: its signature damaged.
	damaged := a.KeySet().Encode()
	damaged[len(damaged)-1] ^= 1
	if err := errors.Join(w.db.Delete(keyMasterPin, pebble.Sync), w.db.Set(keyKeySet, damaged, pebble.Sync)); err != nil {
		t.Fatal(err)
	}
	held, err := w.HeldKeySet()
	if err != nil || !held.Master.Equal(a.MasterPub) || !errors.Is(held.Err, ErrCorruptKeySet) {
		t.Fatalf("held: %+v, %v", held, err)
	}
	if _, err := w.DropKeySet(held.Hash); err != nil {
		t.Fatal(err)
	}
	if pin, _ := get(w.db, keyMasterPin); !a.MasterPub.Equal(ed25519.PublicKey(pin)) {
		t.Fatalf("pin after the drop: %x, want the stored set's master key", pin)
	}
	if fetched, err := w.KeySetFetched(); err != nil || !fetched.IsZero() {
		t.Fatalf("fetched after the drop: %v, %v", fetched, err)
	}
	if id, err := w.Account(); err != nil || id != 7 {
		t.Fatalf("account after the drop: %d, %v", id, err)
	}
	b := csKeys(t, now, bank.KeyConfig{})
	if _, err := w.acceptKeySet(b.KeySet().Encode()); !errors.Is(err, ErrMasterKeyChanged) {
		t.Fatalf("another master's set after the drop: %v, want ErrMasterKeyChanged", err)
	}
	if _, err := w.acceptKeySet(a.KeySet().Encode()); err != nil {
		t.Fatalf("the bank's set after the drop: %v", err)
	}

	// A legacy wallet whose stored set names no master key readably.
	junk := []byte("junk")
	if err := errors.Join(w.db.Delete(keyMasterPin, pebble.Sync), w.db.Set(keyKeySet, junk, pebble.Sync)); err != nil {
		t.Fatal(err)
	}
	held, err = w.HeldKeySet()
	if err != nil || held.Master != nil || !errors.Is(held.Err, ErrCorruptKeySet) || held.Hash != ecash.HashOf(junk) {
		t.Fatalf("held junk: %+v, %v", held, err)
	}
	if _, err := w.DropKeySet(held.Hash); !errors.Is(err, ErrNoMasterPin) {
		t.Fatalf("drop with no master key to keep: %v, want ErrNoMasterPin", err)
	}
	if stored, _ := get(w.db, keyKeySet); string(stored) != "junk" {
		t.Fatalf("stored after a refused drop: %q", stored)
	}
}

// The wallet fetches the key set again when it is older than KeySetMaxAge,
// when the clock went back, or when a value the bank honours has no
// withdrawable key in it.
func TestKeySetStale(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	w, err := Create(t.TempDir(), Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	k := csKeys(t, t0, bank.KeyConfig{WithdrawPeriod: 10 * time.Hour, DepositPeriod: 20 * time.Hour})
	ks, err := w.acceptKeySet(k.KeySet().Encode())
	if err != nil {
		t.Fatal(err)
	}
	if fetched, err := w.KeySetFetched(); err != nil || !fetched.Equal(t0) {
		t.Fatalf("fetched %v, %v", fetched, err)
	}
	for _, tc := range []struct {
		at    time.Duration
		stale bool
	}{{0, false}, {KeySetMaxAge - time.Second, false}, {KeySetMaxAge, true}, {-2 * KeySetMaxAge, true}} {
		if got := w.keySetStale(ks, t0.Add(tc.at)); got != tc.stale {
			t.Errorf("at %v: stale %v", tc.at, got)
		}
	}
	// Fetched just now, but past the keys' withdraw windows (their coins
	// still accepted): the bank has made new keys since.
	now = t0.Add(11 * time.Hour)
	if _, err := w.acceptKeySet(k.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	if !w.keySetStale(ks, now) {
		t.Error("a key set with no withdrawable key is not stale")
	}
	// Past every deposit deadline too: nothing the bank honours is listed,
	// nothing to refresh for but age.
	now = t0.Add(21 * time.Hour)
	if _, err := w.acceptKeySet(k.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	if w.keySetStale(ks, now) {
		t.Error("stale with only expired keys, freshly fetched")
	}
}
