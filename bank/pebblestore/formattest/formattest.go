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
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
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
// ledger, without a write; that a store holding another kind's format
// record (with s's or without), a newer version, and a record that is
// not a version, are refused by every way in and leave every file as it
// was; and that a store without the record (as builds before it made) is
// opened read-only without a write, and read-write gets the record and
// keeps every key.
func Run(t *testing.T, s Store) {
	t.Helper()
	if got := dump(t, s.Path)[string(s.Format.Key)]; got != string(version(s.Format.Version)) {
		t.Fatalf("a new store's format record is %x, want %d", got, s.Format.Version)
	}
	notABank(t, s.Path)

	own := version(s.Format.Version)
	for _, k := range kinds {
		if k.key == string(s.Format.Key) {
			continue
		}
		for _, v := range [][]byte{own, nil} { // with s's record, and as the other kind's store would be
			set(t, s.Path, s.Format.Key, v)
			set(t, s.Path, []byte(k.key), version(1))
			refusedAll(t, s, pebblestore.ErrOtherStore, fmt.Sprintf("a %s's store, not a %s's", k.store, s.Format.Store), k.key)
			set(t, s.Path, []byte(k.key), nil)
		}
	}
	set(t, s.Path, s.Format.Key, own)

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

// kinds are the format records of every kind of store, and what each
// names its store in messages.
var kinds = []struct{ key, store string }{
	{pebblestore.BankFormatKey, "bank"},
	{pebblestore.WalletFormatKey, "wallet"},
	{pebblestore.MerchantFormatKey, "merchant"},
}

// notABank checks that a bank opening the closed store at path (a ledger
// directory pointed at it, a backup of the wrong store put back) refuses
// it as not a bank's, saying what it is, and writes nothing, not a file:
// a bank takes a store with its own format record (m/format) for a
// ledger, and upgrades it.
func notABank(t *testing.T, path string) {
	t.Helper()
	before, files := dump(t, path), Files(t, path)
	st, err := pebblestore.Open(path, pebblestore.Options{Logger: slog.New(slog.DiscardHandler), CacheSize: 1 << 20})
	if err == nil {
		st.Close()
		t.Errorf("the bank's store opened the store at %s as a ledger", path)
	} else if !errors.Is(err, pebblestore.ErrOtherStore) || !strings.Contains(err.Error(), "not a bank's") {
		t.Errorf("the bank's store refused the store at %s with %q, want %v saying it is not a bank's", path, err, pebblestore.ErrOtherStore)
	}
	if after := dump(t, path); !maps.Equal(before, after) {
		t.Errorf("the bank's store wrote to the store at %s (%v)", path, err)
	}
	SameFiles(t, "the bank's open", path, files)
}

// refused sets the store's format record to v and checks that every way
// in refuses it with want, saying each of says, and write nothing.
func refused(t *testing.T, s Store, v []byte, want error, says ...string) {
	t.Helper()
	set(t, s.Path, s.Format.Key, v)
	refusedAll(t, s, want, says...)
}

// refusedAll checks that every way in refuses the store as it is with
// want, saying each of says, and changes no key, and no file's name or
// bytes: a refused read-write open must refuse before Pebble writes.
func refusedAll(t *testing.T, s Store, want error, says ...string) {
	t.Helper()
	before, files := dump(t, s.Path), Files(t, s.Path)
	v := []byte(before[string(s.Format.Key)])
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
		if !SameFiles(t, open.Name+" open of a refused store", s.Path, files) {
			t.FailNow() // the next ways in would be blamed for its writes
		}
	}
}

// Files is the name and SHA-256 of every file under dir, read without
// writing: what a refused open must leave as it was.
func Files(t testing.TB, dir string) map[string][32]byte {
	t.Helper()
	m := make(map[string][32]byte)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		m[rel] = sha256.Sum256(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// SameFiles fails t, saying what did it, if the files under dir are not
// before, by name and content, and reports whether they are.
func SameFiles(t testing.TB, what, dir string, before map[string][32]byte) bool {
	t.Helper()
	after := Files(t, dir)
	same := maps.Equal(before, after)
	for name, h := range after {
		if b, ok := before[name]; !ok {
			t.Errorf("%s wrote a file %s", what, name)
		} else if b != h {
			t.Errorf("%s rewrote the file %s", what, name)
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			t.Errorf("%s removed the file %s", what, name)
		}
	}
	return same
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
