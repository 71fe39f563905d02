package wallet_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/wallet"
)

// TestVerifyLogMismatchKeepsReport: a logged entry that does not match
// (here the bank points the key set the wallet was served at another key
// set's entry) is ErrLogMismatch with the report, whose signed checkpoint
// (saved, its signature verified) is what "wallet verify-log
// --checkpoint-out" writes as evidence.
func TestVerifyLogMismatchKeepsReport(t *testing.T) {
	ctx := context.Background()
	k0 := keys(t)
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	bankc, logc := hiddenKeySetBank(t, store, k0)
	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.RefreshKeys(ctx, bankc); err != nil {
		t.Fatal(err)
	}
	// A second key set logged (entry 1), not served to the wallet.
	k1 := *k0
	k1.Denoms = slices.Clone(k0.Denoms)
	if err := k1.Revoke(k1.Denoms[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	hiddenKeySetBank(t, store, &k1)
	held := sha256.Sum256(k0.KeySet().Encode())
	rep, err := w.VerifyLog(ctx, bankc, lyingLog{AuditLogClient: logc, ref: held[:], at: 1})
	if !errors.Is(err, wallet.ErrLogMismatch) {
		t.Fatalf("the served key set found at another's entry: %v, want ErrLogMismatch", err)
	}
	if rep == nil || rep.Signed == nil {
		t.Fatalf("a mismatch's report: %+v; want the signed checkpoint held, the evidence", rep)
	}
	origin := auditlog.Origin(k0.KeySet().BankID())
	v, err := auditlog.NewVerifier(origin, k0.KeySet().SigningPub)
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := auditlog.OpenCheckpoint(rep.Signed, origin, v); err != nil || cp.Size != rep.Checkpoint.Size {
		t.Fatalf("the report's signed checkpoint: %+v, %v; want the bank's of %d entries", cp, err, rep.Checkpoint.Size)
	}
}
