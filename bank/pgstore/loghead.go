package pgstore

import (
	"context"
	"errors"

	"github.com/blindbank/blindbank/bank"
)

// LogHead implements bank.Store. One statement reads the size, the newest
// key set's hash (log_state.keyset_hash) and its entry (log_refs; a key
// set is logged once, though a log written before that rule may hold one
// twice, and its ref names the newer entry), so all three come from one
// snapshot: a key set another replica logs meanwhile is in neither or in
// all three.
func (s *Store) LogHead(ctx context.Context) (int64, bank.KeySetRef, bool, error) {
	var (
		size  int64
		hash  []byte
		idx   *int64
		found bool
		ks    bank.KeySetRef
	)
	err := s.read(ctx, func(ctx context.Context) error {
		err := s.pool.QueryRow(ctx, `SELECT s.size, s.keyset_hash, r.idx FROM log_state AS s
			LEFT JOIN log_refs AS r ON r.ref = s.keyset_hash`).Scan(&size, &hash, &idx)
		if err != nil {
			return err
		}
		if found = hash != nil; !found {
			return nil
		}
		if err := fixedBytes(ks.Ref[:], hash, "log_state.keyset_hash"); err != nil {
			return err
		}
		if idx == nil || *idx >= size {
			return errors.New("pgstore: the newest key set has no entry below the log's size")
		}
		ks.Index = *idx
		return nil
	})
	if err != nil {
		return 0, bank.KeySetRef{}, false, err
	}
	return size, ks, found, nil
}
