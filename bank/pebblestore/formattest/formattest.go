// Package formattest checks how a store opens by its format record
// (pebblestore.Format): the same checks for every store that keeps one
// under a key of its own (the wallet's, the merchant's; not the bank's,
// whose store without a record must be empty), on a real Pebble database
// on disk, through the store package's own ways in.
//
// It is for tests only, as net/http/httptest is: it imports testing, and
// only _test.go files may import it, so that no binary links it
// (go list -deps ./cmd/... does not list it).
package formattest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/bank/pebblestore"
)

// Store is a store made by its package, closed, and how to open it again.
type Store struct {
	Format pebblestore.Format
	// Path is the Pebble database's directory.
	Path string
	// Open opens the store read-write as the package does (and closes
	// it); OpenReadOnly opens it as the package's read-only way in does.
	Open, OpenReadOnly func() error
	// Others are the package's other ways in, read-write or not, which
	// must refuse what Open refuses (what they do with a store they read
	// is theirs).
	Others []Way
	// Rewritten lists the keys Open itself writes or deletes (a marker of
	// the run), which a store need not keep as they were.
	Rewritten [][]byte
}

// Way is one of a package's ways to open its store.
type Way struct {
	Name string
	Open func() error
}

// Run checks, in order, on the store s made: that it holds the format
// record; that the bank's store (pebblestore.Open) refuses it as not a
// ledger, without a write; that a newer version, and a record that is not
// a version, are refused by every way in and leave every key as it was; and that a store
// without the record (as builds before it made) is opened read-only
// without a write, and read-write gets the record and keeps every key.
func Run(t *testing.T, s Store) {
	t.Helper()
	if got := dump(t, s.Path)[string(s.Format.Key)]; got != string(version(s.Format.Version)) {
		t.Fatalf("a new store's format record is %x, want %d", got, s.Format.Version)
	}
	notABank(t, s.Path)

	newer := s.Format.Version + 1
	refused(t, s, version(newer), pebblestore.ErrStoreTooNew,
		fmt.Sprintf("format %d", newer), fmt.Sprintf("up to %d", s.Format.Version), "newer build")
	for _, v := range [][]byte{{}, {1}, version(s.Format.Version)[1:], append(version(s.Format.Version), 0), version(0), bytes.Repeat([]byte{1}, 1<<20)} {
		refused(t, s, v, pebblestore.ErrBadFormat, fmt.Sprintf("%d bytes", len(v)))
	}

	set(t, s.Path, s.Format.Key, nil) // a store of a build from before the record
	before := dump(t, s.Path)
	if err := s.OpenReadOnly(); err != nil {
		t.Fatalf("read-only open of a store without a format record: %v", err)
	}
	if after := dump(t, s.Path); !maps.Equal(before, after) {
		t.Fatal("a read-only open wrote to the store")
	}
	if err := s.Open(); err != nil {
		t.Fatalf("open of a store without a format record: %v", err)
	}
	after := dump(t, s.Path)
	if got := after[string(s.Format.Key)]; got != string(version(s.Format.Version)) {
		t.Fatalf("format record %x after a read-write open of a store without one, want %d", got, s.Format.Version)
	}
	for _, k := range s.Rewritten {
		delete(before, string(k))
	}
	for k, v := range before {
		if w, ok := after[k]; !ok || w != v {
			t.Errorf("key %q: %.32x... before the open that recorded the format, %.32x... (present: %v) after", k, v, w, ok)
		}
	}
	if err := s.Open(); err != nil {
		t.Fatalf("open of a store of this format: %v", err)
	}
}

// notABank checks that a bank opening the closed store at path (a ledger
// directory pointed at it, a backup of the wrong store put back) refuses
// it as not a bank's, and writes nothing: a bank takes a store with its
// own format record (m/format) for a ledger, and upgrades it.
func notABank(t *testing.T, path string) {
	t.Helper()
	before := dump(t, path)
	st, err := pebblestore.Open(path, pebblestore.Options{Logger: slog.New(slog.DiscardHandler), CacheSize: 1 << 20})
	if err == nil {
		st.Close()
		t.Errorf("the bank's store opened the store at %s as a ledger", path)
	}
	if after := dump(t, path); !maps.Equal(before, after) {
		t.Errorf("the bank's store wrote to the store at %s (%v)", path, err)
	}
}

// refused sets the store's format record to v and checks that every way
// in refuses it with want, saying each of says, and write nothing.
func refused(t *testing.T, s Store, v []byte, want error, says ...string) {
	t.Helper()
	set(t, s.Path, s.Format.Key, v)
	before := dump(t, s.Path)
	for _, open := range append([]Way{{"read-write", s.Open}, {"read-only", s.OpenReadOnly}}, s.Others...) {
		err := open.Open()
		if !errors.Is(err, want) {
			t.Fatalf("%s open of a store whose format record is %d bytes (%.8x): %v, want %v", open.Name, len(v), v, err, want)
		}
		// The message reaches a user's terminal: it says what is wrong,
		// and does not echo a megabyte of the record.
		for _, w := range says {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s open refused with %q, which does not say %q", open.Name, err, w)
			}
		}
		if len(err.Error()) > 500 {
			t.Errorf("%s open refused with a message of %d bytes", open.Name, len(err.Error()))
		}
		if after := dump(t, s.Path); !maps.Equal(before, after) {
			t.Fatalf("%s open of a refused store changed it", open.Name)
		}
	}
}

// MarkNewer sets the format record at key of the closed store at path,
// which this build made, to the version after the one it holds, as a
// newer build would; it returns the version it held and the record it
// wrote. For a test of what a command does with such a store.
func MarkNewer(t *testing.T, path string, key []byte) (uint32, []byte) {
	t.Helper()
	v, ok := dump(t, path)[string(key)]
	if !ok || len(v) != 4 {
		t.Fatalf("the format record of the store at %s: %x (present: %v), want 4 bytes", path, v, ok)
	}
	known := binary.BigEndian.Uint32([]byte(v))
	set(t, path, key, version(known+1))
	return known, version(known + 1)
}

// Record is the value at key in the closed store at path (nil if there is
// none), read without writing.
func Record(t *testing.T, path string, key []byte) []byte {
	t.Helper()
	v, ok := dump(t, path)[string(key)]
	if !ok {
		return nil
	}
	return []byte(v)
}

func version(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// set writes v at key in the closed store at path, or deletes the key if
// v is nil, behind the package's back.
func set(t *testing.T, path string, key, v []byte) {
	t.Helper()
	db, err := pebblestore.OpenDB(path, pebblestore.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v == nil {
		err = db.Delete(key, pebble.Sync)
	} else {
		err = db.Set(key, v, pebble.Sync)
	}
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
}

// dump is every key and value of the closed store at path, read without
// writing.
func dump(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := pebblestore.OpenDB(path, pebblestore.DBOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string)
	for it.First(); it.Valid(); it.Next() {
		m[string(it.Key())] = string(it.Value())
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		t.Fatal(err)
	}
	return m
}
