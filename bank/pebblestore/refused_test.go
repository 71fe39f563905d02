package pebblestore_test

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/bank/pebblestore/formattest"
)

// TestRefusedLedgerUntouched: a ledger the bank refuses (a newer format,
// a record that is not a version, another kind's format record, data
// without a record) is refused before Pebble writes a file: every file
// keeps its name and bytes. A read-write Pebble open rewrites the
// manifest, OPTIONS and log of a store it opens, so the check must come
// before it. The ledger opens again once its record is put back.
func TestRefusedLedgerUntouched(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ledger")
	opts := pebblestore.Options{Logger: slog.New(slog.DiscardHandler), CacheSize: 1 << 20}
	s, err := pebblestore.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	key := []byte(pebblestore.BankFormatKey)
	own := formattest.Record(t, dir, key)
	if len(own) != 4 {
		t.Fatalf("the ledger's format record is %x", own)
	}
	newer := binary.BigEndian.AppendUint32(nil, binary.BigEndian.Uint32(own)+1)
	for _, c := range []struct {
		name   string
		set    map[string][]byte // nil value: deleted
		want   error
		saying string
	}{
		{"newer format", map[string][]byte{pebblestore.BankFormatKey: newer}, pebblestore.ErrStoreTooNew, "newer build"},
		{"bad record", map[string][]byte{pebblestore.BankFormatKey: {0, 0, 2}}, pebblestore.ErrBadFormat, "(3 bytes)"},
		{"a wallet's record too", map[string][]byte{pebblestore.WalletFormatKey: own}, pebblestore.ErrOtherStore, "a wallet's store, not a bank's"},
		{"a merchant's store", map[string][]byte{pebblestore.BankFormatKey: nil, pebblestore.MerchantFormatKey: own}, pebblestore.ErrOtherStore, "a merchant's store, not a bank's"},
		{"no record", map[string][]byte{pebblestore.BankFormatKey: nil}, nil, "data but no format record"},
	} {
		t.Run(c.name, func(t *testing.T) {
			write(t, dir, c.set)
			before := formattest.Files(t, dir)
			s, err := pebblestore.Open(dir, opts)
			if err == nil {
				s.Close()
				t.Fatal("the ledger opened")
			}
			if (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.saying) {
				t.Errorf("Open = %v, want %v saying %q", err, c.want, c.saying)
			}
			formattest.SameFiles(t, "the refused open", dir, before)
			undo := map[string][]byte{pebblestore.BankFormatKey: own}
			for k := range c.set {
				if k != pebblestore.BankFormatKey {
					undo[k] = nil
				}
			}
			write(t, dir, undo)
			if s, err = pebblestore.Open(dir, opts); err != nil {
				t.Fatalf("the ledger with its record put back: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// write sets (or deletes, for a nil value) keys in the closed store at
// dir, behind the store's back.
func write(t *testing.T, dir string, kv map[string][]byte) {
	t.Helper()
	db, err := pebblestore.OpenDB(dir, pebblestore.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range kv {
		if v == nil {
			err = errors.Join(err, db.Delete([]byte(k), pebble.Sync))
		} else {
			err = errors.Join(err, db.Set([]byte(k), v, pebble.Sync))
		}
	}
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
}
