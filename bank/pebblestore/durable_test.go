package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/storetest"
	"github.com/blindbank/blindbank/ecash"
)

// heldSyncFS holds every sync of a WAL file while armed, until released.
type heldSyncFS struct {
	vfs.FS
	armed            atomic.Bool
	fail             atomic.Bool // a held sync, released, fails instead
	once             sync.Once
	entered, release chan struct{}
}

func (fs *heldSyncFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &heldSyncFile{File: f, fs: fs}, nil
}

func (fs *heldSyncFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, cat)
	return fs.wrap(name, f, err)
}

func (fs *heldSyncFS) ReuseForWrite(old, name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(old, name, cat)
	return fs.wrap(name, f, err)
}

type heldSyncFile struct {
	vfs.File
	fs *heldSyncFS
}

func (f *heldSyncFile) hold() error {
	if f.fs.armed.Load() {
		f.fs.once.Do(func() { close(f.fs.entered) })
		<-f.fs.release
		if f.fs.fail.Load() {
			return errSyncFailed
		}
	}
	return nil
}

var errSyncFailed = errors.New("test: the WAL's sync failed")

func (f *heldSyncFile) Sync() error {
	if err := f.hold(); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *heldSyncFile) SyncData() error {
	if err := f.hold(); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *heldSyncFile) SyncTo(n int64) (bool, error) {
	if err := f.hold(); err != nil {
		return false, err
	}
	return f.File.SyncTo(n)
}

// heldStore opens a store on a heldSyncFS: release lets its held syncs
// go, and waits receives as a read starts to wait for one. Cleanup
// releases, then closes (Close waits for a held commit).
func heldStore(t *testing.T) (s *Store, fs *heldSyncFS, release func(), waits chan struct{}) {
	t.Helper()
	fs = &heldSyncFS{FS: vfs.NewMem(), entered: make(chan struct{}), release: make(chan struct{})}
	s = mustOpen(t, fs)
	release = sync.OnceFunc(func() { close(fs.release) })
	t.Cleanup(func() { release(); s.Close() })
	waits = make(chan struct{}, 16)
	s.waitHook = func() {
		select {
		case waits <- struct{}{}:
		default:
		}
	}
	return s, fs, release, waits
}

// TestReadWaitsForTheSync: Pebble shows a committed batch to reads before
// its WAL sync ends; a read that finds it answers only once it is synced,
// so nothing a crash could take back is ever returned (a retry's
// signatures, a receipt, a checkpoint's size).
func TestReadWaitsForTheSync(t *testing.T) {
	s, fs, release, waits := heldStore(t)
	key, value := []byte("test/durable"), []byte("v")

	fs.armed.Store(true)
	committed := make(chan error, 1)
	go func() { committed <- s.submit(bg, func(t *txn) error { t.set(key, value); return nil }) }()
	<-fs.entered
	for { // the commit publishes while its sync is held
		if _, found, err := Get(s.db, key); err != nil {
			t.Fatal(err)
		} else if found {
			break
		}
		runtime.Gosched()
	}
	type answer struct {
		found bool
		err   error
	}
	read := make(chan answer, 1)
	go func() {
		_, found, err := s.lookup(bg, key)
		read <- answer{found, err}
	}()
	select {
	case <-waits:
	case a := <-read:
		t.Fatalf("answered (found %t, %v) while the commit's sync was held", a.found, a.err)
	}
	// A read given up while it waits ends with its context.
	ctx, cancel := context.WithCancel(bg)
	given := make(chan error, 1)
	go func() {
		_, _, err := s.lookup(ctx, key)
		given <- err
	}()
	select {
	case <-waits:
	case err := <-given:
		t.Fatalf("a second read answered (%v) while the sync was held", err)
	}
	cancel()
	if err := <-given; !errors.Is(err, context.Canceled) {
		t.Fatalf("a read cancelled while it waits: %v", err)
	}
	release()
	if a := <-read; !a.found || a.err != nil {
		t.Fatalf("after the sync: found %t, %v", a.found, a.err)
	}
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
}

// TestScansWaitForTheSync: the reads that scan rather than look up wait
// for the sync too: Totals, by which settlement pays merchants out, and
// Revocations, on which a replica saves its key file.
func TestScansWaitForTheSync(t *testing.T) {
	signed, _ := storetest.RevocationKeySet(t, epoch, 0)
	for _, tc := range []struct {
		name    string
		commit  func(s *Store, account uint64) error
		visible func(s *Store, account uint64) bool          // the commit, read from Pebble directly
		read    func(s *Store, account uint64) (bool, error) // the store's answer shows the commit
	}{
		{"Totals",
			func(s *Store, c uint64) error {
				_, err := s.Credit(bg, bank.CreditOp{Account: c, Amount: 500, Time: epoch})
				return err
			},
			func(s *Store, c uint64) bool {
				v, _, _ := Get(s.db, accountKey(c))
				a, err := decodeAccount(c, v)
				return err == nil && a.Balance == 500
			},
			func(s *Store, c uint64) (bool, error) { tot, err := s.Totals(bg); return tot[c] == 500, err }},
		{"Revocations",
			func(s *Store, _ uint64) error { return s.PublishKeySet(bg, signed, epoch) },
			func(s *Store, _ uint64) bool { revs, _ := loadRevocations(s.db); return len(revs) > 0 },
			func(s *Store, _ uint64) (bool, error) { revs, err := s.Revocations(bg); return len(revs) == 1, err }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, fs, release, waits := heldStore(t)
			c := openAccount(t, s, "alice", false)
			fs.armed.Store(true)
			committed := make(chan error, 1)
			go func() { committed <- tc.commit(s, c) }()
			<-fs.entered
			for !tc.visible(s, c) {
				runtime.Gosched()
			}
			type answer struct {
				shown bool
				err   error
			}
			read := make(chan answer, 1)
			go func() {
				shown, err := tc.read(s, c)
				read <- answer{shown, err}
			}()
			select {
			case <-waits:
			case a := <-read:
				t.Fatalf("answered (shows the commit: %t, %v) while the commit's sync was held", a.shown, a.err)
			}
			release()
			if a := <-read; !a.shown || a.err != nil {
				t.Fatalf("after the sync: shows the commit %t, %v", a.shown, a.err)
			}
			if err := <-committed; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// pipelined holds the sync of a first group (A, a write of test/a), then
// runs second (B), and waits until the committer has applied it: a
// group's sync overlaps the next group's apply. It returns the answers'
// channels; B's also carries how far the syncs had come (synced) when B
// was answered, and A's group is the store's next (started + 1).
func pipelined(t *testing.T, s *Store, fs *heldSyncFS, second func(*txn) error) (a chan error, b chan answered) {
	t.Helper()
	fs.armed.Store(true)
	a = make(chan error, 1)
	go func() { a <- s.submit(bg, func(t *txn) error { t.set([]byte("test/a"), []byte("a")); return nil }) }()
	<-fs.entered
	var ran atomic.Bool
	b = make(chan answered, 1)
	go func() {
		err := s.submit(bg, func(t *txn) error { defer ran.Store(true); return second(t) })
		b <- answered{err, s.synced.Load()}
	}()
	waitHeld(t, "the next group applied", ran.Load)
	return a, b
}

type answered struct {
	err    error
	synced uint64
}

// waitHeld waits until done, which must happen while a sync is held. Not
// a timing threshold: a bound on waiting for what must happen.
func waitHeld(t *testing.T, what string, done func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !done(); runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not while the first group's sync was held", what)
		}
	}
}

// TestNextGroupAppliedDuringSync: the committer applies the next group
// while a group's WAL sync runs, and answers nothing before the syncs of
// its group and every group before it have ended. B reads A's write
// before A is synced, and so must not be answered before A.
func TestNextGroupAppliedDuringSync(t *testing.T) {
	s, fs, release, _ := heldStore(t)
	groupA := s.started.Load() + 1
	var sawA bool
	a, b := pipelined(t, s, fs, func(t *txn) error {
		_, found, err := t.get([]byte("test/a"))
		sawA = found
		return err
	})
	// B must not be answered while A's sync is held. A store that answered
	// it early would do so at once; the window only bounds how long the
	// test looks (a slow machine can make it miss a bug, never fail a
	// correct store).
	select {
	case got := <-b:
		t.Fatalf("B answered (%v) while the sync of A, whose write it read, was held", got.err)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if err := <-a; err != nil {
		t.Error(err)
	}
	got := <-b
	if got.err != nil {
		t.Error(got.err)
	}
	if !sawA {
		t.Error("B, applied after A, did not see A's write")
	}
	if got.synced < groupA {
		t.Errorf("B answered with %d groups synced, before A's (group %d), whose write it read", got.synced, groupA)
	}
	if s.synced.Load() != s.started.Load() {
		t.Errorf("%d groups synced of %d started", s.synced.Load(), s.started.Load())
	}
}

// TestFailedSyncFailsLaterGroups: when a group's sync fails, a group
// applied on top of it fails too, and so does every operation after;
// reads of what they wrote fail rather than answer.
func TestFailedSyncFailsLaterGroups(t *testing.T) {
	s, fs, release, _ := heldStore(t)
	keyB := []byte("test/b")
	a, b := pipelined(t, s, fs, func(t *txn) error { t.set(keyB, []byte("b")); return nil })
	waitHeld(t, "B visible", func() bool { _, found, err := Get(s.db, keyB); return found || err != nil })
	fs.fail.Store(true)
	release()
	if err := <-a; err == nil {
		t.Error("A answered without error after its sync failed")
	}
	if got := <-b; got.err == nil {
		t.Error("B, applied on top of A, answered without error after A's sync failed")
	}
	fs.fail.Store(false)
	if err := s.submit(bg, func(t *txn) error { t.set([]byte("test/d"), []byte("d")); return nil }); err == nil {
		t.Error("an operation after the failed sync succeeded")
	}
	if _, _, err := s.lookup(bg, keyB); err == nil {
		t.Error("a read of a write on top of the failed sync answered")
	}
}

// loggedRefOp is an operation that records ref's audit-log entry at
// index, as appendLog does: the ref's key and the group's loggedRef.
func loggedRefOp(ref ecash.Hash, index int64) func(*txn) error {
	return func(t *txn) error {
		t.set(hashKey(prefixLogRef, ref), binary.BigEndian.AppendUint64(nil, uint64(index)))
		t.refs = append(t.refs, loggedRef{ref, index})
		return nil
	}
}

// TestLogIndexWaitsForTheSync: LogIndex answers a ref remembered in
// RecentLogRefs without reading the store, so a store may remember a ref
// only once its group is synced; before, LogIndex would name an entry a
// crash could take back (and a failed sync does take back). B, applied
// after the held group, makes sure the committer is done with it.
func TestLogIndexWaitsForTheSync(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail=%t", fail), func(t *testing.T) {
			s, fs, release, waits := heldStore(t)
			ref := ecash.HashOf([]byte("a logged op"))
			fs.armed.Store(true)
			a := make(chan error, 1)
			go func() { a <- s.submit(bg, loggedRefOp(ref, 7)) }()
			<-fs.entered
			var ran atomic.Bool
			b := make(chan error, 1)
			go func() { b <- s.submit(bg, func(*txn) error { ran.Store(true); return nil }) }()
			waitHeld(t, "the next group applied", ran.Load)
			type answer struct {
				index int64
				found bool
				err   error
			}
			read := make(chan answer, 1)
			go func() {
				i, found, err := s.LogIndex(bg, ref)
				read <- answer{i, found, err}
			}()
			select {
			case <-waits:
			case got := <-read:
				t.Fatalf("LogIndex answered (%d, found %t, %v) while the sync of the ref's group was held", got.index, got.found, got.err)
			}
			fs.fail.Store(fail)
			release()
			got := <-read
			if aerr := <-a; (aerr != nil) != fail {
				t.Fatalf("the logged op: %v", aerr)
			}
			<-b
			switch {
			case fail && got.err == nil:
				t.Errorf("LogIndex answered (%d, found %t) from a group whose sync failed", got.index, got.found)
			case !fail && (got.err != nil || !got.found || got.index != 7):
				t.Errorf("LogIndex after the sync: %d, found %t, %v", got.index, got.found, got.err)
			}
			if i, found, err := s.LogIndex(bg, ref); fail && err == nil {
				t.Errorf("LogIndex answered (%d, found %t) after the ref's sync failed", i, found)
			}
		})
	}
}
