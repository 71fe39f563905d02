package pebblestore

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// CheckpointInfo describes a checkpoint (a backup of a store).
type CheckpointInfo struct {
	Dir      string // the checkpoint's directory
	Files    int    // files in it
	Bytes    int64  // their total size (what a copy of it takes)
	Accounts int    // accounts in its ledger, system accounts included
}

// Checkpoint writes a consistent copy of the store into dir while the store
// keeps serving: a Pebble checkpoint (DB.Checkpoint) taken after flushing
// and syncing the write-ahead log. Every mutation that returned before
// Checkpoint was called is in the copy; mutations running meanwhile either
// are in it completely or not at all (each is one Pebble batch). The copy is
// itself a store directory: Open it to restore.
//
// dir must not exist and its parent must. The checkpoint is written to a
// temporary directory beside dir and renamed to dir once complete and
// checked ([VerifyCheckpoint]), so dir holds a whole checkpoint or does not
// exist. dir has mode 0700. Tables are hard links when dir is on the same
// file system as the store (cheap at first, but the links keep files the
// store has since compacted away: copy the checkpoint elsewhere and delete
// it), copies otherwise. For stores on the operating system's file system.
//
// Once ctx ends, the checkpoint ends at its next file or write (or account
// read, verifying) with ctx's error and removes what it wrote: dir is not
// made for a caller gone.
func (s *Store) Checkpoint(ctx context.Context, dir string) (CheckpointInfo, error) {
	if err := s.enter(); err != nil {
		return CheckpointInfo{}, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return CheckpointInfo{}, err
	}
	dir = filepath.Clean(dir)
	if _, err := os.Lstat(dir); err == nil {
		return CheckpointInfo{}, existsError(dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %w", err)
	}
	parent := filepath.Dir(dir)
	if fi, err := os.Stat(parent); err != nil {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: the parent directory: %w", err)
	} else if !fi.IsDir() {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %s is not a directory", parent)
	}
	var suffix [8]byte
	rand.Read(suffix[:])
	tmp := filepath.Join(parent, "."+filepath.Base(dir)+".partial-"+hex.EncodeToString(suffix[:]))
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	defer s.cfs.guard(tmp, ctx)()
	if err := s.db.Checkpoint(tmp, pebble.WithFlushedWAL()); err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = cerr // what ended it, not the file it was writing
		}
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %w", err)
	}
	info, err := verifyCheckpoint(ctx, tmp)
	if err != nil {
		return CheckpointInfo{}, err
	}
	// A checkpoint whose caller is gone (it gave up, or a stop cut it off)
	// is not put in place: it was told the backup failed.
	if err := ctx.Err(); err != nil {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %w", err)
	}
	// Rename would replace an empty directory made meanwhile: look again.
	if _, err := os.Lstat(dir); err == nil {
		return CheckpointInfo{}, existsError(dir)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %w", err)
	}
	ok = true
	if err := syncDir(parent); err != nil {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %w", err)
	}
	info.Dir = dir
	return info, nil
}

// existsError refuses a checkpoint into an existing path; it is an
// fs.ErrExist.
type existsError string

func (e existsError) Error() string {
	return "pebblestore: checkpoint: " + string(e) + " already exists; a checkpoint goes into a new directory"
}

func (existsError) Is(target error) bool { return target == fs.ErrExist }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// checkpointFS is a store's file system. DB.Checkpoint takes no context,
// and a copy to another file system takes as long as the ledger is large,
// holding a bank's stop (the store closes only once its calls return); so
// once a checkpoint's context ends, creating, linking or writing a file
// under its directory fails, and the checkpoint ends at its next file or
// write. Nothing outside a checkpoint's directory is affected.
type checkpointFS struct {
	vfs.FS
	mu   sync.Mutex
	dirs map[string]context.Context // each running checkpoint's directory
}

// guard ends the writes under dir once ctx ends; the function it returns
// stops that.
func (f *checkpointFS) guard(dir string, ctx context.Context) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dirs == nil {
		f.dirs = map[string]context.Context{}
	}
	f.dirs[dir] = ctx
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.dirs, dir)
	}
}

// of is the context of the checkpoint whose directory is or holds name;
// nil if none's does.
func (f *checkpointFS) of(name string) context.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	for dir, ctx := range f.dirs {
		if name == dir || strings.HasPrefix(name, dir+string(filepath.Separator)) {
			return ctx
		}
	}
	return nil
}

// ended is the error of the context of the checkpoint whose directory is
// or holds name, once that context has ended.
func (f *checkpointFS) ended(name string) error {
	if ctx := f.of(name); ctx != nil {
		return ctx.Err()
	}
	return nil
}

func (f *checkpointFS) Unwrap() vfs.FS { return f.FS }

func (f *checkpointFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := f.ended(dir); err != nil {
		return err
	}
	return f.FS.MkdirAll(dir, perm)
}

func (f *checkpointFS) Link(oldname, newname string) error {
	if err := f.ended(newname); err != nil {
		return err
	}
	return f.FS.Link(oldname, newname)
}

func (f *checkpointFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	ctx := f.of(name)
	if ctx != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	file, err := f.FS.Create(name, category)
	if err == nil && ctx != nil {
		return checkpointFile{file, ctx}, nil
	}
	return file, err
}

// checkpointFile is a file a checkpoint writes; a write fails once the
// checkpoint's context has ended.
type checkpointFile struct {
	vfs.File
	ctx context.Context
}

func (f checkpointFile) Write(p []byte) (int, error) {
	if err := f.ctx.Err(); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

// VerifyCheckpoint opens a checkpoint, or the directory of a store that is
// not open, read-only and checks it: a store of this format whose account
// records decode and whose balances sum to zero. It changes nothing.
func VerifyCheckpoint(dir string) (CheckpointInfo, error) {
	return verifyCheckpoint(context.Background(), dir)
}

// verifyCheckpoint is VerifyCheckpoint, ended with ctx's error once ctx
// ends (a ledger of many accounts takes a while to read).
func verifyCheckpoint(ctx context.Context, dir string) (CheckpointInfo, error) {
	info := CheckpointInfo{Dir: dir}
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		info.Files++
		info.Bytes += fi.Size()
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("pebblestore: verify %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, ErrorIfNotExists: true, Logger: pebbleLogger{slog.Default()}})
	if err != nil {
		return info, fmt.Errorf("pebblestore: verify %s: %w", dir, err)
	}
	defer db.Close()
	switch v, err := bankFormat.Read(db); {
	case err != nil:
		return info, fmt.Errorf("pebblestore: verify %s: %w", dir, err)
	case v == 0:
		return info, fmt.Errorf("pebblestore: verify %s: no format record: not a bank store", dir)
	}
	prefix := []byte(prefixAccount)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return info, fmt.Errorf("pebblestore: verify %s: %w", dir, err)
	}
	var sum int64
	for valid := it.First(); valid; valid = it.Next() {
		if info.Accounts%4096 == 0 && ctx.Err() != nil {
			it.Close()
			return info, fmt.Errorf("pebblestore: verify %s: %w", dir, ctx.Err())
		}
		k := it.Key()
		if len(k) != len(prefix)+8 {
			it.Close()
			return info, fmt.Errorf("pebblestore: verify %s: %w: account key %x", dir, errCorrupt, k)
		}
		a, err := decodeAccount(binary.BigEndian.Uint64(k[len(prefix):]), it.Value())
		if err != nil {
			it.Close()
			return info, fmt.Errorf("pebblestore: verify %s: %w", dir, err)
		}
		if sum, err = addBalance(sum, a.Balance); err != nil {
			it.Close()
			return info, fmt.Errorf("pebblestore: verify %s: balances overflow: %w", dir, err)
		}
		info.Accounts++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return info, fmt.Errorf("pebblestore: verify %s: %w", dir, err)
	}
	if sum != 0 {
		return info, fmt.Errorf("pebblestore: verify %s: the balances sum to %d, not zero", dir, sum)
	}
	if info.Accounts < 2 {
		return info, fmt.Errorf("pebblestore: verify %s: the system accounts are missing", dir)
	}
	return info, nil
}
