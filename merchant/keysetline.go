package merchant

import (
	"context"
	"errors"
	"fmt"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
)

// checkKeySetLine compares the keyset line of cp, the checkpoint the
// merchant's witness holds, with the key set it holds
// (logclient.CheckKeySet). A newer logged key set that follows it replaces
// it, stored as when GetKeys serves one (rep.AdoptedKeySet), so that a
// restart on a replica still serving the older set keeps it (keys.go). One
// that does not follow, and a false line, wrap logclient.ErrMismatch.
func (m *Merchant) checkKeySetLine(ctx context.Context, cp auditlog.Checkpoint, rep *LogReport) error {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	held := m.keySet()
	newer, err := logclient.CheckKeySet(ctx, m.logc, cp, held, held.Encode())
	switch {
	case errors.Is(err, logclient.ErrKeySetLine), errors.Is(err, logclient.ErrMismatch):
		return fmt.Errorf("merchant: %w: %w", logclient.ErrMismatch, err)
	case err != nil || newer == nil:
		return err
	}
	// CheckKeySet returns no set issued before the one held, so
	// replaceKeySet either takes it or refuses it.
	ks, err := m.replaceKeySet(held, newer.Signed)
	if err == nil {
		rep.AdoptedKeySet = ks != held
		return nil
	}
	if !refusedKeySet(err) {
		return err // the store's: the bank did nothing wrong
	}
	return fmt.Errorf("merchant: %w: the bank's log holds key set %x… (entry %d), newer than the one it serves this merchant, which does not take it: %w",
		logclient.ErrMismatch, cp.KeySet.Hash[:8], newer.Index, err)
}
