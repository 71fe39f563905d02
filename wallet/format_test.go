package wallet

import (
	"bytes"
	"testing"

	"github.com/blindbank/blindbank/bank/pebblestore/formattest"
)

// TestStoreFormat: a new wallet's store records its format; a newer one,
// or a record that is not a version, is refused by every way in (Open,
// Create, a restore, ReadCopy), which writes nothing; a store from
// before the record is read by ReadCopy without a write, and Open records
// the format in it and keeps everything else.
func TestStoreFormat(t *testing.T) {
	dir := t.TempDir()
	seed := bytes.Repeat([]byte{7}, seedSize)
	w, err := createFromSeed(dir, seed, false, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.SetAccount(1234); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	open := func(w *Wallet, err error) error {
		if err == nil {
			err = w.Close()
		}
		return err
	}
	formattest.Run(t, formattest.Store{
		Format:       storeFormat,
		Path:         dir,
		Open:         func() error { return open(Open(dir, Options{})) },
		OpenReadOnly: func() error { _, _, err := ReadCopy(dir); return err },
		Others: []formattest.Way{
			{Name: "create", Open: func() error { return open(Create(dir, Options{})) }},
			{Name: "restore", Open: func() error { return open(openForRestore(dir, seed, Options{})) }},
		},
	})
	if got, acct, err := ReadCopy(dir); err != nil || !bytes.Equal(got, seed) || acct != 1234 {
		t.Fatalf("after the format was recorded: seed %x, account %d, %v", got, acct, err)
	}
}
