package merchant

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// ErrCorruptKeySet: the bank's key set the merchant holds (m/keyset) does
// not decode under the pinned master key, so Open cannot start from it.
// DropKeySet, on the stopped merchant, is the way out (docs/OPERATIONS.md).
var ErrCorruptKeySet = errors.New("merchant: corrupt key set held")

// ErrNoStore: the data directory holds no merchant store (never served).
var ErrNoStore = errors.New("merchant: no order store here (has merchantd served from it?)")

// HeldKeySet is the bank's key set a merchant's store holds, read offline
// (ReadKeySet), as a wallet's is (wallet.HeldKeySet).
type HeldKeySet = ecash.HeldKeySet

// ReadKeySet reads the key set held in the store of the merchant in dir,
// which must not be running (the store is locked while it runs). It writes
// nothing.
func ReadKeySet(dir string, fs vfs.FS) (*HeldKeySet, error) {
	db, err := openStoreOffline(dir, fs, true)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return readKeySet(db)
}

// ErrKeySetChanged: the key set held is not the one DropKeySet was asked
// to drop (the store changed since it was shown); nothing was dropped.
var ErrKeySetChanged = errors.New("merchant: the key set held is not the one shown; nothing dropped")

// DropKeySet deletes the key set held in the store of the stopped merchant
// in dir (synced), if its hash is shown (the one the operator agreed to
// drop: the store is not locked between ReadKeySet and here, so a merchant
// may have started and taken another set; ErrKeySetChanged), and returns
// what it held: the next Open takes the set the
// bank serves, checked against the pinned master key, which stays. Until
// then nothing tells a set the bank's current from an older one it signed
// (a replica not yet restarted, or a replay), whose retired signing key
// the merchant would trust again; the operator drops a set only when it
// stops the start (ErrCorruptKeySet).
func DropKeySet(dir string, fs vfs.FS, shown ecash.Hash) (*HeldKeySet, error) {
	db, err := openStoreOffline(dir, fs, false)
	if err != nil {
		return nil, err
	}
	held, err := readKeySet(db)
	switch {
	case err != nil:
	case held.Signed == nil || held.Hash != shown:
		err = ErrKeySetChanged
	default:
		err = db.Delete(keyKeySet, pebble.Sync)
	}
	return held, errors.Join(err, db.Close())
}

func openStoreOffline(dir string, fs vfs.FS, readOnly bool) (*pebble.DB, error) {
	if fs == nil {
		fs = vfs.Default
	}
	path := filepath.Join(dir, StoreDir)
	if _, err := fs.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoStore
	}
	return openDB(path, pebblestore.DBOptions{FS: fs, ReadOnly: readOnly})
}

func readKeySet(db *pebble.DB) (*HeldKeySet, error) {
	m := &Merchant{db: db}
	master, err := m.get(keyMasterPin)
	if err != nil {
		return nil, err
	}
	signed, err := m.get(keyKeySet)
	if err != nil {
		return nil, err
	}
	return ecash.ReadHeldKeySet(signed, master, ErrCorruptKeySet), nil
}
