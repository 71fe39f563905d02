package merchant

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// TestDropCorruptKeySet: a key set held that no longer decodes stops Open
// with ErrCorruptKeySet; ReadKeySet shows it (and why) without changing
// it, DropKeySet deletes it, and the next Open takes the bank's, under
// the master key still pinned.
func TestDropCorruptKeySet(t *testing.T) {
	ctx := context.Background()
	s := newShop(t)
	good, err := storedKeySet(s)
	if err != nil {
		t.Fatal(err)
	}
	s.m.Close()
	held, err := ReadKeySet(s.dir, s.fs)
	if err != nil || held.KeySet == nil || held.Err != nil || !bytes.Equal(held.Signed, good) {
		t.Fatalf("a good key set held reads as %+v, %v", held, err)
	}
	master := held.Master

	// Damage the stored set, as a disk or an old bug might.
	db, err := pebblestore.OpenDB(filepath.Join(s.dir, StoreDir), pebblestore.DBOptions{FS: s.fs})
	if err != nil {
		t.Fatal(err)
	}
	bad := append(bytes.Clone(good[:len(good)-1]), good[len(good)-1]^1)
	if err := db.Set(keyKeySet, bad, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	db.Close()
	open := func() (*Merchant, error) {
		return Open(ctx, Config{Dir: s.dir, Account: s.account, Bank: s.bankc, AuditLog: s.logc, Now: s.clock.now, FS: s.fs})
	}
	if m, err := open(); !errors.Is(err, ErrCorruptKeySet) {
		if m != nil {
			m.Close()
		}
		t.Fatalf("Open with a damaged key set held: %v, want ErrCorruptKeySet", err)
	}
	held, err = ReadKeySet(s.dir, s.fs)
	if err != nil || held.KeySet != nil || !errors.Is(held.Err, ErrCorruptKeySet) || !bytes.Equal(held.Signed, bad) {
		t.Fatalf("the damaged set reads as %+v, %v", held, err)
	}
	if _, err := DropKeySet(s.dir, s.fs, ecash.HashOf(good)); !errors.Is(err, ErrKeySetChanged) {
		t.Fatalf("DropKeySet of the set before the damage: %v, want ErrKeySetChanged", err)
	}
	dropped, err := DropKeySet(s.dir, s.fs, held.Hash)
	if err != nil || !bytes.Equal(dropped.Signed, bad) {
		t.Fatalf("DropKeySet: %+v, %v", dropped, err)
	}
	if held, err := ReadKeySet(s.dir, s.fs); err != nil || held.Signed != nil || !held.Master.Equal(master) {
		t.Fatalf("after the drop: %+v, %v; want no set, the master key still pinned", held, err)
	}
	m, err := open()
	if err != nil {
		t.Fatalf("Open after the drop: %v", err)
	}
	defer m.Close()
	if !bytes.Equal(m.keySet().Encode(), good) {
		t.Fatal("the merchant does not hold the bank's key set after the drop")
	}
	if _, err := ReadKeySet(t.TempDir(), nil); !errors.Is(err, ErrNoStore) {
		t.Fatalf("a directory without a store: %v", err)
	}
}

// storedKeySet is the signed key set the open merchant of s stores.
func storedKeySet(s *shop) ([]byte, error) { return s.m.get(keyKeySet) }
