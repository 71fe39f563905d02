package pebblestore

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// heldSyncFS holds every sync of a WAL file while armed, until released.
type heldSyncFS struct {
	vfs.FS
	armed            atomic.Bool
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

func (f *heldSyncFile) hold() {
	if f.fs.armed.Load() {
		f.fs.once.Do(func() { close(f.fs.entered) })
		<-f.fs.release
	}
}

func (f *heldSyncFile) Sync() error                  { f.hold(); return f.File.Sync() }
func (f *heldSyncFile) SyncData() error              { f.hold(); return f.File.SyncData() }
func (f *heldSyncFile) SyncTo(n int64) (bool, error) { f.hold(); return f.File.SyncTo(n) }

// TestReadWaitsForTheSync: Pebble shows a committed batch to reads before
// its WAL sync ends; a read that finds it answers only once it is synced,
// so nothing a crash could take back is ever returned (a retry's
// signatures, a receipt, a checkpoint's size).
func TestReadWaitsForTheSync(t *testing.T) {
	fs := &heldSyncFS{FS: vfs.NewMem(), entered: make(chan struct{}), release: make(chan struct{})}
	s := mustOpen(t, fs)
	defer s.Close()
	release := sync.OnceFunc(func() { close(fs.release) })
	defer release() // before Close, which waits for the held commit
	key, value := []byte("test/durable"), []byte("v")
	waits := make(chan struct{}, 16) // a read starts to wait
	s.waitHook = func() {
		select {
		case waits <- struct{}{}:
		default:
		}
	}

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
