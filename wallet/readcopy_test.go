package wallet

import (
	"bytes"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// TestReadCopySeedSize: a copy whose stored seed is not 32 bytes (damaged,
// or another program's store) is refused by ReadCopy, which restore
// --from-wallet reads, rather than handed on.
func TestReadCopySeedSize(t *testing.T) {
	dir := t.TempDir()
	seed := bytes.Repeat([]byte{7}, seedSize)
	w, err := createFromSeed(dir, seed, false, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _, err := ReadCopy(dir); err != nil || !bytes.Equal(got, seed) {
		t.Fatalf("ReadCopy of a whole copy: %x, %v", got, err)
	}
	db, err := openDB(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set(keySeed, seed[:31], pebble.Sync); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _, err := ReadCopy(dir); err == nil || !strings.Contains(err.Error(), "31 bytes") {
		t.Fatalf("ReadCopy of a copy holding a 31-byte seed: %x, %v; want an error saying so", got, err)
	}
}
