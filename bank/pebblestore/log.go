package pebblestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// The audit log lives beside the state it describes:
//
//	m/log-size        u64 number of committed entries
//	m/keyset-hash     SHA-256 of the newest published key set
//	l/<u64 index>     encoded entry
//	h/<u64 index>     tlog stored hash (tlog.StoredHashIndex numbering)
//	x/<ref>           u64 index of the entry of a deposit, withdrawal, swap,
//	                  recoup, check or key set, by its payment, request or
//	                  EPO hash or the SHA-256 of the signed key set
//	y/<denomination>  u64 index of the first key set entry that revoked it
//
// The committer owns the log: each group commit starts an Appender on top
// of the committed size, every operation of the group appends its entry in
// commit order (a refused one rewinds its appends), and the entries, their
// stored hashes and the new size go into the group's batch: the log and the
// state change commit together or not at all.
var (
	keyLogSize    = []byte("m/log-size")
	keyKeySetHash = []byte("m/keyset-hash")
	// keyRevocations marks a store whose y/ keys hold every revocation
	// of its log (scanRevocations).
	keyRevocations = []byte("m/revocations")
	// keyKeySetRefs marks a store whose x/ keys find every key set of its
	// log (indexKeySets).
	keyKeySetRefs = []byte("m/keyset-refs")
)

const (
	prefixLogEntry = "l/"
	prefixLogHash  = "h/"
	prefixLogRef   = "x/"
	prefixRevoked  = "y/"
)

// loadLogSize reads the committed log size (0 for a store without a log).
func loadLogSize(db *pebble.DB) (int64, error) {
	v, closer, err := db.Get(keyLogSize)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pebblestore: %w", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: log size", errCorrupt)
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// committedHashes serves committed stored hashes to an Appender.
type committedHashes struct{ r pebble.Reader }

func (c committedHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		v, closer, err := c.r.Get(u64Key(prefixLogHash, uint64(x)))
		if err != nil {
			return nil, fmt.Errorf("pebblestore: log hash %d: %w", x, err)
		}
		ok := len(v) == len(out[i])
		copy(out[i][:], v)
		closer.Close()
		if !ok {
			return nil, fmt.Errorf("%w: log hash %d", errCorrupt, x)
		}
	}
	return out, nil
}

// appendLog appends op's entry to the group's log, and records its index
// under ref if ref is not nil; a nil op appends nothing. A refused entry is
// an invalid op.
func (t *txn) appendLog(op auditlog.Op, at time.Time, ref *ecash.Hash) error {
	if op == nil {
		return nil
	}
	if err := t.checkRevoked(op); err != nil {
		return err
	}
	e, _, err := t.log.Append(op, at)
	if err != nil {
		return fmt.Errorf("%w: audit-log entry: %v", ErrInvalid, err)
	}
	if ref != nil {
		t.set(hashKey(prefixLogRef, *ref), binary.BigEndian.AppendUint64(nil, uint64(e.Index)))
		t.refs = append(t.refs, loggedRef{*ref, e.Index})
	}
	return nil
}

// LogIndex implements bank.Store. The entry of a recent commit is
// remembered (bank.RecentLogRefs), the others read.
func (s *Store) LogIndex(ctx context.Context, ref ecash.Hash) (int64, bool, error) {
	if i, ok := s.refs.Get(ref); ok {
		// As a read would: closed or cancelled fails.
		if err := s.enter(); err != nil {
			return 0, false, err
		}
		s.calls.Done()
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		return i, true, nil
	}
	v, found, err := s.lookup(ctx, hashKey(prefixLogRef, ref))
	if err != nil || !found {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("%w: log index", errCorrupt)
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// writeLog puts the group's appended entries, their stored hashes and the
// new size into the batch.
func writeLog(b *pebble.Batch, a *auditlog.Appender) error {
	first, entries := a.Entries()
	if len(entries) == 0 {
		return nil
	}
	var errs []error
	for i, e := range entries {
		errs = append(errs, b.Set(u64Key(prefixLogEntry, uint64(first)+uint64(i)), e, nil))
	}
	at, hashes := a.Pending()
	for i, h := range hashes {
		errs = append(errs, b.Set(u64Key(prefixLogHash, uint64(at)+uint64(i)), h[:], nil))
	}
	errs = append(errs, b.Set(keyLogSize, binary.BigEndian.AppendUint64(nil, uint64(a.Size())), nil))
	return errors.Join(errs...)
}

// checkRevoked refuses an op whose entry issues or spends coins of a
// denomination a logged key set revoked. It reads only once the store
// holds a revocation: in the committer, so in commit order with
// PublishKeySet.
func (t *txn) checkRevoked(op auditlog.Op) error {
	if !*t.anyRevoked {
		return nil
	}
	for _, id := range bank.LogDenoms(op) {
		_, revoked, err := t.get(hashKey(prefixRevoked, id))
		if err != nil {
			return err
		}
		if revoked {
			return bank.RevokedInLog(id)
		}
	}
	return nil
}

// PublishKeySet implements bank.Store.
func (s *Store) PublishKeySet(ctx context.Context, signed []byte, at time.Time) error {
	h := sha256.Sum256(signed)
	signed = bytes.Clone(signed)
	return s.submit(ctx, func(t *txn) error {
		v, ok, err := t.get(keyKeySetHash)
		if err != nil || (ok && bytes.Equal(v, h[:])) {
			return err
		}
		revoked, err := bank.KeySetRevocations(signed, func(id ecash.Hash) (bool, error) {
			_, found, err := t.get(hashKey(prefixRevoked, id))
			return found, err
		})
		if err != nil {
			return err
		}
		// Logged before another (a replica restarting on an old key
		// file): never again, so that the newest entry, and
		// m/keyset-hash, stay the newest key set.
		if _, found, err := t.get(hashKey(prefixLogRef, h)); err != nil || found {
			return err
		}
		index := t.log.Size()
		if err := t.appendLog(auditlog.KeySet{Signed: signed}, at, (*ecash.Hash)(&h)); err != nil {
			return err
		}
		t.set(keyKeySetHash, h[:])
		for _, id := range revoked {
			key := hashKey(prefixRevoked, id)
			_, found, err := t.get(key)
			if err != nil {
				return err
			}
			if found {
				continue
			}
			t.set(key, binary.BigEndian.AppendUint64(nil, uint64(index)))
			*t.anyRevoked = true // committer-only; at worst a few reads too many if this op fails
		}
		return nil
	})
}

// Revocations implements bank.Store.
func (s *Store) Revocations(ctx context.Context) ([]bank.Revocation, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	revs, err := loadRevocations(s.db)
	if err == nil {
		// A revocation is acted on (the key file saved): never one a crash
		// could undo.
		err = s.durableIf(ctx, len(revs) > 0)
	}
	if err != nil {
		return nil, err
	}
	return revs, nil
}

// scanRevocations records, once, the revocations of a log written before
// the store kept them, before the committer starts.
func scanRevocations(db *pebble.DB, size int64, log *slog.Logger) error {
	return onceOverLog(db, keyRevocations, size, log, "recording the revocations", func(read logReader) ([]kv, error) {
		revs, err := bank.ScanRevocations(size, read)
		out := make([]kv, len(revs))
		for i, r := range revs {
			out[i] = kv{key: hashKey(prefixRevoked, r.Denom), value: binary.BigEndian.AppendUint64(nil, uint64(r.KeySet))}
		}
		return out, err
	})
}

// indexKeySets makes LogIndex find, once, the key sets of a log written
// before the store indexed them by hash, before the committer starts: a
// wallet checks that the key set it was served is logged (and would take
// an unindexed one for keys made for it alone).
func indexKeySets(db *pebble.DB, size int64, log *slog.Logger) error {
	return onceOverLog(db, keyKeySetRefs, size, log, "indexing the key sets", func(read logReader) ([]kv, error) {
		refs, err := bank.ScanKeySets(size, read)
		out := make([]kv, len(refs))
		for i, r := range refs { // in log order: a key set logged twice names its newer entry
			out[i] = kv{key: hashKey(prefixLogRef, r.Ref), value: binary.BigEndian.AppendUint64(nil, uint64(r.Index))}
		}
		return out, err
	})
}

// onceOverLog fills in, once (until mark is set), what a log written
// before this version of the store lacks: scan reads the log and returns
// the keys to write, which go with mark in one synced batch. On the first
// open after an upgrade a large log takes a while, and the operator should
// know why the bank is not up yet.
func onceOverLog(db *pebble.DB, mark []byte, size int64, log *slog.Logger, what string, scan func(logReader) ([]kv, error)) error {
	if _, found, err := Get(db, mark); err != nil || found {
		return err
	}
	start := time.Now()
	if size > 0 {
		log.Info(what+" of the audit log written before this version (once)", "entries", size)
	}
	writes, err := scan(entryReader(db))
	if err != nil {
		return err
	}
	b := db.NewBatch()
	defer b.Close()
	var errs []error
	for _, w := range writes {
		errs = append(errs, b.Set(w.key, w.value, nil))
	}
	errs = append(errs, b.Set(mark, nil, nil), b.Commit(pebble.Sync))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pebblestore: %s of the log: %w", what, err)
	}
	if size > 0 {
		log.Info(what+": done", "entries", size, "keys", len(writes), "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// logReader reads n log entries from index from.
type logReader = func(from int64, n int) ([][]byte, error)

// entryReader reads n log entries from index from, for a scan at Open.
func entryReader(db *pebble.DB) logReader {
	return func(from int64, n int) ([][]byte, error) {
		out := make([][]byte, 0, n)
		for i := from; i < from+int64(n); i++ {
			v, found, err := Get(db, u64Key(prefixLogEntry, uint64(i)))
			if err != nil || !found {
				return nil, fmt.Errorf("pebblestore: log entry %d: %w (found %t)", i, err, found)
			}
			out = append(out, v)
		}
		return out, nil
	}
}

// loadRevocations reads every recorded revocation.
func loadRevocations(r pebble.Reader) ([]bank.Revocation, error) {
	p := []byte(prefixRevoked)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: p, UpperBound: prefixEnd(p)})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: %w", err)
	}
	defer it.Close()
	var out []bank.Revocation
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key()[len(p):], it.Value()
		var r bank.Revocation
		if len(k) != len(r.Denom) || len(v) != 8 {
			return nil, fmt.Errorf("%w: revocation", errCorrupt)
		}
		copy(r.Denom[:], k)
		r.KeySet = int64(binary.BigEndian.Uint64(v))
		out = append(out, r)
	}
	return out, it.Error()
}

// LogSize implements bank.Store.
func (s *Store) LogSize(ctx context.Context) (int64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	size, err := loadLogSize(s.db)
	if err != nil {
		return 0, err
	}
	// A checkpoint signed over entries a crash takes back would later
	// look like a fork of the log.
	return size, s.durable(ctx)
}

// LogEntries implements bank.Store.
func (s *Store) LogEntries(ctx context.Context, from int64, n, maxBytes int) ([][]byte, error) {
	if from < 0 || n < 0 || n > bank.MaxLogRead {
		return nil, invalid("log read of %d entries from %d", n, from)
	}
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	size, err := loadLogSize(s.db)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for i, total := from, 0; i < size && len(out) < n && total < maxBytes; i++ {
		v, closer, err := s.db.Get(u64Key(prefixLogEntry, uint64(i)))
		if err != nil {
			return nil, fmt.Errorf("pebblestore: log entry %d: %w", i, err)
		}
		out = append(out, bytes.Clone(v))
		total += len(v)
		closer.Close()
	}
	if len(out) > 0 {
		if err := s.durable(ctx); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// LogHashes implements bank.Store.
func (s *Store) LogHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hs, err := committedHashes{s.db}.ReadHashes(indexes)
	if err != nil {
		return nil, err
	}
	return hs, s.durable(ctx)
}
