package wallet

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// checkKeySetLine compares the keyset line of cp, the checkpoint the
// wallet's witness holds, with ks, the key set the wallet holds
// (logclient.CheckKeySet). A newer logged key set that follows ks is
// adopted, as if GetKeys had served it (acceptKeySet), and said in rep:
// a replica not restarted since another logged it serves the old one. One
// the wallet refuses is reported: the bank hides it from this wallet. A
// false line is reported too. Both are ErrLogMismatch; the caller reports
// them after its other checks.
func (w *Wallet) checkKeySetLine(ctx context.Context, logc pb.AuditLogClient, cp auditlog.Checkpoint, ks *ecash.KeySet, rep *LogReport) (mismatch error, err error) {
	signed, err := get(w.db, keyKeySet)
	if err != nil {
		return nil, err
	}
	newer, err := logclient.CheckKeySet(ctx, logc, cp, ks, signed)
	switch {
	case errors.Is(err, logclient.ErrKeySetLine), errors.Is(err, logclient.ErrMismatch):
		return fmt.Errorf("%w: %w", ErrLogMismatch, err), nil
	case err != nil || newer == nil:
		return nil, err
	}
	hidden := func(why error) error {
		return fmt.Errorf("%w: the bank's log holds key set %x… (entry %d, issued %s), newer than the one it serves this wallet, and this wallet does not take it: %w",
			ErrLogMismatch, cp.KeySet.Hash[:8], newer.Index, newer.KeySet.IssuedAt.UTC().Format("2006-01-02T15:04:05Z"), why)
	}
	if _, err := w.acceptKeySet(newer.Signed); err != nil {
		if errors.Is(err, ErrKeySetRefused) || errors.Is(err, ErrMasterKeyChanged) {
			return hidden(err), nil
		}
		return nil, err
	}
	// acceptKeySet keeps a stored set issued later: one a GetKeys
	// stored meanwhile, which hides nothing.
	now, err := get(w.db, keyKeySet)
	if err != nil {
		return nil, err
	}
	rep.AdoptedKeySet = bytes.Equal(now, newer.Signed)
	return nil, nil
}
