package pebblestore

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
)

// LogHead implements bank.Store. The size, the newest key set's hash
// (m/keyset-hash) and its index (x/<hash>; a key set is logged once,
// though a log written before that rule may hold one twice, and its ref
// names the newer entry) are read from one snapshot, so the key set is the
// newest of exactly those entries.
func (s *Store) LogHead(ctx context.Context) (int64, bank.KeySetRef, bool, error) {
	if err := s.enter(); err != nil {
		return 0, bank.KeySetRef{}, false, err
	}
	defer s.calls.Done()
	if err := ctx.Err(); err != nil {
		return 0, bank.KeySetRef{}, false, err
	}
	snap := s.db.NewSnapshot()
	defer snap.Close()
	var size int64
	v, found, err := Get(snap, keyLogSize)
	switch {
	case err != nil:
		return 0, bank.KeySetRef{}, false, fmt.Errorf("pebblestore: %w", err)
	case found && len(v) != 8:
		return 0, bank.KeySetRef{}, false, fmt.Errorf("%w: log size", errCorrupt)
	case found:
		size = int64(binary.BigEndian.Uint64(v))
	}
	h, found, err := Get(snap, keyKeySetHash)
	if err != nil {
		return 0, bank.KeySetRef{}, false, fmt.Errorf("pebblestore: %w", err)
	}
	var ks bank.KeySetRef
	if found {
		if len(h) != len(ks.Ref) {
			return 0, bank.KeySetRef{}, false, fmt.Errorf("%w: newest key set hash", errCorrupt)
		}
		ks.Ref = ecash.Hash(h)
		v, ok, err := Get(snap, hashKey(prefixLogRef, ks.Ref))
		if err != nil {
			return 0, bank.KeySetRef{}, false, fmt.Errorf("pebblestore: %w", err)
		}
		if !ok || len(v) != 8 || int64(binary.BigEndian.Uint64(v)) >= size {
			return 0, bank.KeySetRef{}, false, fmt.Errorf("%w: the newest key set has no entry below the log's size %d", errCorrupt, size)
		}
		ks.Index = int64(binary.BigEndian.Uint64(v))
	}
	// A checkpoint signed over entries a crash takes back would later
	// look like a fork of the log (as LogSize).
	if err := s.durable(ctx); err != nil {
		return 0, bank.KeySetRef{}, false, err
	}
	return size, ks, found, nil
}
