package pebblestore

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/storetest"
)

// TestScanRevocations: a store whose log holds revoking key sets but no
// record of them (written before it kept one) records them when opened.
func TestScanRevocations(t *testing.T) {
	fs := vfs.NewMem()
	s := mustOpen(t, fs)
	ks0, ids := storetest.RevocationKeySet(t, epoch)
	ks1, _ := storetest.RevocationKeySet(t, epoch.Add(time.Second), 1)
	for _, ks := range [][]byte{ks0, ks1} {
		if err := s.PublishKeySet(bg, ks, epoch); err != nil {
			t.Fatal(err)
		}
	}
	// Back to a store from before revocations were recorded.
	for _, k := range [][]byte{keyRevocations, hashKey(prefixRevoked, ids[1])} {
		if err := s.db.Delete(k, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = mustOpen(t, fs)
	defer s.Close()
	revs, err := s.Revocations(bg)
	if want := []bank.Revocation{{Denom: ids[1], KeySet: 1}}; err != nil || !slices.Equal(revs, want) {
		t.Fatalf("revocations after the scan: %+v, %v; want %+v", revs, err, want)
	}
	if err := s.PublishKeySet(bg, ks0, epoch); !errors.Is(err, bank.ErrUnrevoked) {
		t.Fatalf("a key set un-revoking a scanned revocation: %v, want ErrUnrevoked", err)
	}
}
