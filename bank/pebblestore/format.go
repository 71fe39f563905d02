package pebblestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors of a store's format record (Format).
var (
	// ErrStoreTooNew refuses a store whose format record names a version
	// newer than this build reads: a newer build wrote records this one
	// would misread, so it neither reads nor writes any.
	ErrStoreTooNew = errors.New("store written by a newer build")
	// ErrBadFormat refuses a format record that is not a version (not 4
	// bytes, or 0).
	ErrBadFormat = errors.New("malformed store format record")
	// ErrOtherStore refuses a store that holds another kind's format
	// record (a wallet pointed at a merchant's directory, a backup of the
	// wrong store put back): its records mean something else.
	ErrOtherStore = errors.New("store of another kind")
)

// The format record's key of each kind of store. Every kind refuses a
// store holding another's (ErrOtherStore), so a key belongs to one kind
// only, and a kind's Format takes its key from here.
const (
	BankFormatKey     = "m/format"
	WalletFormatKey   = "m/wallet-format"
	MerchantFormatKey = "m/merchant-format"
)

// storeKinds names the store each format record marks, for Read's check
// and its message.
var storeKinds = []struct{ key, store string }{
	{BankFormatKey, "bank"},
	{WalletFormatKey, "wallet"},
	{MerchantFormatKey, "merchant"},
}

// Format is a store's on-disk format version record, which every store of
// the project (bank, wallet, merchant) keeps: a u32, big-endian, from 1,
// that a build raises when its records change so that an older build
// cannot read. A build reads every version from 1 up to Version, and
// records Version once it has opened a store read-write, so that a later
// downgrade is refused rather than misread.
//
// Each kind of store keeps its record under a key of its own, never the
// bank's m/format: a bank, this build or an older one, takes a database
// with that record for a ledger (of format 1, the first of every kind)
// and upgrades it, where it refuses one with data and without it as not
// a bank's.
type Format struct {
	Key     []byte // the record's key, one per kind of store: m/format for the bank
	Store   string // what the store is, for messages: "wallet", "merchant", "bank"
	Version uint32 // the newest version this build reads, and the one it writes
}

// Read returns the version recorded in r, or 0 if there is none (a store
// from before its record). It refuses a store holding another kind's
// record (ErrOtherStore, naming both kinds), whether or not it holds
// f's too, a version newer than f.Version (ErrStoreTooNew, naming both)
// and a record that is not a version (ErrBadFormat).
//
// A store without any record is taken for one of f's from before the
// record: the kinds' stores made then cannot be told apart by a record.
func (f Format) Read(r pebble.Reader) (uint32, error) {
	for _, k := range storeKinds {
		if bytes.Equal(f.Key, []byte(k.key)) {
			continue
		}
		switch _, found, err := Get(r, []byte(k.key)); {
		case err != nil:
			return 0, err
		case found:
			return 0, fmt.Errorf("%w: this is a %s's store, not a %s's (it holds %s)", ErrOtherStore, k.store, f.Store, k.key)
		}
	}
	v, found, err := Get(r, f.Key)
	if err != nil || !found {
		return 0, err
	}
	// The value is read from disk: check its length before decoding, and
	// name only its length, not its bytes, in an error.
	var n uint32
	if len(v) == 4 {
		n = binary.BigEndian.Uint32(v)
	}
	switch {
	case n == 0:
		return 0, fmt.Errorf("%w: %s %s is not a u32 version from 1 (%d bytes)", ErrBadFormat, f.Store, f.Key, len(v))
	case n > f.Version:
		return 0, fmt.Errorf("%w: %s store format %d, this build reads formats up to %d; use a newer build", ErrStoreTooNew, f.Store, n, f.Version)
	}
	return n, nil
}

// Upgrade records f.Version in db, synced, if found (what Read returned)
// is older: a store without a record, or one an older build marked. The
// caller's records must read as they are in every older version (or be
// migrated first), since a record of f.Version says they do.
func (f Format) Upgrade(db *pebble.DB, found uint32) error {
	if found >= f.Version {
		return nil
	}
	if err := db.Set(f.Key, f.value(), pebble.Sync); err != nil {
		return fmt.Errorf("recording the %s store's format %d: %w", f.Store, f.Version, err)
	}
	return nil
}

// OpenDB is every way into a store that keeps its format record f: it
// opens the database in dir as OpenDB does and checks the record before
// its caller reads or writes any other: Read, and unless o.ReadOnly,
// Upgrade. A store it refuses is left as it was, file for file: opened
// read-write, it is first opened read-only for Read (openChecked). The
// bank's store does not use it: a ledger without a record must be empty
// (initialize).
func (f Format) OpenDB(dir string, o DBOptions) (*pebble.DB, error) {
	var v uint32
	read := func(db *pebble.DB) (err error) { v, err = f.Read(db); return err }
	db, err := openChecked(dir, o, read) // read's last call is on db
	if err != nil {
		return nil, err
	}
	if !o.ReadOnly {
		if err := f.Upgrade(db, v); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// openChecked opens the database in dir as OpenDB does and checks it with
// check, which is called last on the database returned; check's error is
// returned as is, the database closed. Opened read-write, Pebble writes
// before a caller can look (Open flushes the log it replays into a table,
// writes a new manifest, OPTIONS file and log), so an existing store is
// looked at first through a read-only open, which writes nothing, with
// the directory locked from that look to the read-write open so that no
// other process changes it in between: a store check refuses is left as
// it was, file for file. A directory with no database (none yet, or
// empty) has nothing to look at: it is opened, and created, at once. The
// cost is a second open of an existing store, which replays its log twice:
// once per start.
func openChecked(dir string, o DBOptions, check func(*pebble.DB) error) (*pebble.DB, error) {
	if o.ReadOnly {
		return openAndCheck(dir, o, check)
	}
	vfsys := o.FS
	if vfsys == nil {
		vfsys = vfs.Default
	}
	desc, err := pebble.Peek(dir, vfsys)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return openAndCheck(dir, o, check)
	case err != nil:
		return nil, err
	case !desc.Exists:
		return openAndCheck(dir, o, check)
	}
	lock, err := pebble.LockDirectory(dir, vfsys)
	if err != nil {
		return nil, err
	}
	// Each open takes a reference on the lock and its Close drops it; this
	// drops ours, so the lock is released when the database returned is
	// closed (or at once if none is).
	defer lock.Close()
	ro := o
	ro.ReadOnly, ro.lock = true, lock
	db, err := OpenDB(dir, ro)
	if err != nil {
		return nil, err
	}
	if err := check(db); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.Close(); err != nil {
		return nil, err
	}
	o.lock = lock
	return openAndCheck(dir, o, check)
}

// openAndCheck opens dir as o says and checks it, closing it if check
// refuses it.
func openAndCheck(dir string, o DBOptions, check func(*pebble.DB) error) (*pebble.DB, error) {
	db, err := OpenDB(dir, o)
	if err != nil {
		return nil, err
	}
	if err := check(db); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// value is f.Version as its record holds it.
func (f Format) value() []byte { return binary.BigEndian.AppendUint32(nil, f.Version) }
