//go:build unix

package wallet

import (
	"errors"
	"os"
	"testing"

	"github.com/blindbank/blindbank/bank/pebblestore"
)

// TestRefusedStoreKeepsMode: a wallet pointed at another kind's store
// refuses it and leaves its directory as it was, mode included (the
// wallet tightens its own store's directory to 0700, which on a
// merchant's directory changed what its operator set, or failed there
// with EPERM instead of saying what the directory is).
func TestRefusedStoreKeepsMode(t *testing.T) {
	dir := t.TempDir()
	merchant := pebblestore.Format{Key: []byte(pebblestore.MerchantFormatKey), Store: "merchant", Version: 1}
	db, err := merchant.OpenDB(dir, pebblestore.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if w, err := Open(dir, Options{}); !errors.Is(err, pebblestore.ErrOtherStore) {
		if err == nil {
			w.Close()
		}
		t.Fatalf("wallet opened a merchant's store: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o750 {
		t.Fatalf("refused store's directory is now %v, was 0750", fi.Mode().Perm())
	}
	// Its own store it still makes private.
	own := t.TempDir()
	if err := os.Chmod(own, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := Create(own, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if fi, err := os.Stat(own); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("wallet's own directory: %v, %v; want 0700", fi.Mode().Perm(), err)
	}
}
