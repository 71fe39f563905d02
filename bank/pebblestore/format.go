package pebblestore

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
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
)

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
// from before its record). It refuses a version newer than f.Version
// (ErrStoreTooNew, naming both) and a record that is not a version
// (ErrBadFormat).
func (f Format) Read(r pebble.Reader) (uint32, error) {
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
// Upgrade. A store it refuses is closed again, its records as they were;
// but opened read-write it was already Pebble's to rewrite as files
// (Open flushes the log it replays, and writes a new manifest). A
// read-only open changes nothing. The bank's store does not use it: a
// ledger without a record must be empty (initialize).
func (f Format) OpenDB(dir string, o DBOptions) (*pebble.DB, error) {
	db, err := OpenDB(dir, o)
	if err != nil {
		return nil, err
	}
	v, err := f.Read(db)
	if err == nil && !o.ReadOnly {
		err = f.Upgrade(db, v)
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// value is f.Version as its record holds it.
func (f Format) value() []byte { return binary.BigEndian.AppendUint32(nil, f.Version) }
