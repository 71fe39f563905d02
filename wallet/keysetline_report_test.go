package wallet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/wallet"
)

// staleHead is a store whose checkpoints (LogHead), while lie is set,
// name the first key set logged however many came after: a bank lying in
// the checkpoint's keyset line.
type staleHead struct {
	bank.Store
	lie   atomic.Bool
	first bank.KeySetRef
}

func (s *staleHead) LogHead(ctx context.Context) (int64, bank.KeySetRef, bool, error) {
	size, ks, found, err := s.Store.LogHead(ctx)
	if s.lie.Load() {
		ks = s.first
	}
	return size, ks, found, err
}

// TestVerifyLogKeySetReport: VerifyLog says in its report which key set
// the checkpoint names and whether the wallet adopted it; a checkpoint
// whose keyset line names an older key set than the one the wallet holds
// is reported (ErrLogMismatch, logclient.ErrMismatch).
func TestVerifyLogKeySetReport(t *testing.T) {
	ctx := context.Background()
	k0 := keys(t)
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	lying := &staleHead{Store: store}
	bankc, logc := hiddenKeySetBank(t, lying, k0)
	if _, lying.first, _, err = store.LogHead(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.RefreshKeys(ctx, bankc); err != nil {
		t.Fatal(err)
	}
	rep, err := w.VerifyLog(ctx, bankc, logc)
	if err != nil || rep.AdoptedKeySet || !rep.Checkpoint.HasKeySet || rep.Checkpoint.KeySet.Hash != sha256.Sum256(k0.KeySet().Encode()) {
		t.Fatalf("the served key set: %+v, %v", rep, err)
	}
	k1 := *k0
	k1.Denoms = slices.Clone(k0.Denoms)
	if err := k1.Revoke(k1.Denoms[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	hiddenKeySetBank(t, store, &k1)
	rep, err = w.VerifyLog(ctx, bankc, logc)
	if err != nil || !rep.AdoptedKeySet || rep.Checkpoint.KeySet.Hash != sha256.Sum256(k1.KeySet().Encode()) || rep.Checkpoint.KeySet.Index == 0 {
		t.Fatalf("a newer logged key set: %+v, %v; want it named and adopted", rep, err)
	}

	// A checkpoint naming the first key set as the newest, while the
	// wallet holds one issued after it: reported. (The log grows, so
	// that the witness takes the new checkpoint.)
	lying.lie.Store(true)
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenAccount(ctx, "another", pub, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.VerifyLog(ctx, bankc, logc); !errors.Is(err, wallet.ErrLogMismatch) || !errors.Is(err, logclient.ErrMismatch) {
		t.Fatalf("a keyset line naming an older key set than the one held: %v", err)
	}
}
