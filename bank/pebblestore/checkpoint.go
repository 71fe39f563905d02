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

	"github.com/cockroachdb/pebble/v2"
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
	if err := s.db.Checkpoint(tmp, pebble.WithFlushedWAL()); err != nil {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %w", err)
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return CheckpointInfo{}, fmt.Errorf("pebblestore: checkpoint: %w", err)
	}
	info, err := VerifyCheckpoint(tmp)
	if err != nil {
		return CheckpointInfo{}, err
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

// VerifyCheckpoint opens a checkpoint, or the directory of a store that is
// not open, read-only and checks it: a store of this format whose account
// records decode and whose balances sum to zero. It changes nothing.
func VerifyCheckpoint(dir string) (CheckpointInfo, error) {
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
	v, closer, err := db.Get(keyFormat)
	if err != nil {
		return info, fmt.Errorf("pebblestore: verify %s: format record: %w", dir, err)
	}
	ok := knownFormat(v)
	closer.Close()
	if !ok {
		return info, fmt.Errorf("pebblestore: verify %s: unsupported format %x", dir, v)
	}
	prefix := []byte(prefixAccount)
	it, err := db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
	if err != nil {
		return info, fmt.Errorf("pebblestore: verify %s: %w", dir, err)
	}
	var sum int64
	for valid := it.First(); valid; valid = it.Next() {
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
