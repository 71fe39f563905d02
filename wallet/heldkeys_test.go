package wallet_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// TestDropCorruptKeySet: a wallet whose stored key set no longer decodes
// (a damaged store) pays no more and takes no set from the bank over it;
// HeldKeySet shows the set and why, DropKeySet drops it only if it is the
// one named, keeping the coins and the pinned master key, and the wallet
// then takes the bank's set again and pays.
func TestDropCorruptKeySet(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dir := t.TempDir()
	w, err := wallet.Create(dir, wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.fund(t, w, "EUR:10.00")
	if _, err := w.Withdraw(ctx, f.bankc, ecash.MustParseAmount("EUR:5.00"), nil); err != nil {
		t.Fatal(err)
	}
	sound, err := w.HeldKeySet()
	if err != nil || sound.KeySet == nil || sound.Err != nil || sound.Hash != ecash.HashOf(sound.Signed) || !sound.Master.Equal(keys(t).MasterPub) {
		t.Fatalf("the key set held after a withdrawal: %+v, %v", sound, err)
	}
	top, coins, err := wallet.TopCoinIndex(w)
	if err != nil || coins == 0 {
		t.Fatalf("coins: %d, %v", coins, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := pebblestore.OpenDB(dir, pebblestore.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	damaged := []byte("not a key set")
	if err := errors.Join(db.Set([]byte("m/keyset"), damaged, pebble.Sync), db.Close()); err != nil {
		t.Fatal(err)
	}
	if w, err = wallet.Open(dir, wallet.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })

	pay := func() error {
		t.Helper()
		o, err := f.merchant.CreateOrder(ecash.MustParseAmount("EUR:1.50"), "a coffee", 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.Pay(ctx, f.bankc, f.shop, "shop", o.ID, nil)
		return err
	}
	if err := pay(); !errors.Is(err, wallet.ErrCorruptKeySet) {
		t.Fatalf("pay with a damaged key set stored: %v, want ErrCorruptKeySet", err)
	}
	if _, err := w.RefreshKeys(ctx, f.bankc); !errors.Is(err, wallet.ErrCorruptKeySet) {
		t.Fatalf("fetch over a damaged key set: %v, want ErrCorruptKeySet", err)
	}
	held, err := w.HeldKeySet()
	if err != nil || !bytes.Equal(held.Signed, damaged) || held.KeySet != nil || !errors.Is(held.Err, wallet.ErrCorruptKeySet) ||
		held.Hash != ecash.HashOf(damaged) || !held.Master.Equal(sound.Master) {
		t.Fatalf("the damaged key set held: %+v, %v", held, err)
	}

	// Not another set than the one named (the sound one, shown before).
	if _, err := w.DropKeySet(sound.Hash); !errors.Is(err, wallet.ErrKeySetChanged) {
		t.Fatalf("drop of another set than the one held: %v, want ErrKeySetChanged", err)
	}
	if now, _ := w.HeldKeySet(); !bytes.Equal(now.Signed, damaged) {
		t.Fatal("a refused drop dropped the set")
	}
	dropped, err := w.DropKeySet(held.Hash)
	if err != nil || dropped.Hash != held.Hash {
		t.Fatalf("drop of the set held: %+v, %v", dropped, err)
	}
	after, err := w.HeldKeySet()
	if err != nil || after.Signed != nil || !after.Master.Equal(sound.Master) {
		t.Fatalf("after the drop: %+v, %v (want no set, the master key still pinned)", after, err)
	}
	if _, err := w.KeySet(); !errors.Is(err, wallet.ErrNoKeys) {
		t.Fatalf("KeySet after the drop: %v, want ErrNoKeys", err)
	}
	if top2, coins2, err := wallet.TopCoinIndex(w); err != nil || top2 != top || coins2 != coins {
		t.Fatalf("coins after the drop: %d (top %d), %v; want %d (top %d)", coins2, top2, err, coins, top)
	}
	if _, err := w.DropKeySet(held.Hash); !errors.Is(err, wallet.ErrKeySetChanged) {
		t.Fatalf("a second drop: %v, want ErrKeySetChanged", err)
	}

	if err := pay(); err != nil {
		t.Fatalf("pay after the drop: %v", err)
	}
	if again, err := w.HeldKeySet(); err != nil || again.Hash != sound.Hash {
		t.Fatalf("the key set held after the payment: %+v, %v; want the bank's again", again, err)
	}
	if bal, err := w.Balance(); err != nil || bal.Fresh.String() != "EUR:3.50" || !bal.Pending.IsZero() {
		t.Fatalf("after the payment: %+v, %v", bal, err)
	}
}
