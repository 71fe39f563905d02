package merchant

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/blindbank/blindbank/bank/pebblestore/formattest"
	"github.com/blindbank/blindbank/ecash"
)

// TestStoreFormat: a new merchant store records its format; a newer one,
// or a record that is not a version, is refused by every way in (Open,
// ReadKeySet, DropKeySet), which writes nothing; a store from before the
// record is read by ReadKeySet without a write, and Open records the
// format in it and keeps everything else.
func TestStoreFormat(t *testing.T) {
	s := newShop(t)
	s.m.Close()
	s.fs = nil // a store on disk, made by this Open
	s.open()
	o, err := s.m.CreateOrder(ecash.MustParseAmount("EUR:1.00"), "tea", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.m.Close(); err != nil {
		t.Fatal(err)
	}
	formattest.Run(t, formattest.Store{
		Format: storeFormat,
		Path:   filepath.Join(s.dir, StoreDir),
		Open: func() error {
			m, err := Open(context.Background(), Config{Dir: s.dir, Account: s.account, Bank: s.bankc, AuditLog: s.logc, Now: s.clock.now})
			if err == nil {
				err = m.Close()
			}
			return err
		},
		OpenReadOnly: func() error { _, err := ReadKeySet(s.dir, nil); return err },
		Others: []formattest.Way{{Name: "drop key set", Open: func() error {
			_, err := DropKeySet(s.dir, nil, ecash.Hash{})
			return err
		}}},
		// Open's marks of a run (reconcile.go).
		Rewritten: [][]byte{keyClosed, keyOpened},
	})
	s.open()
	if got, err := s.m.Order(o.ID); err != nil || got.Summary != "tea" {
		t.Fatalf("the order after the format was recorded: %+v, %v", got, err)
	}
}
