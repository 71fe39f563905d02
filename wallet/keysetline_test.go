package wallet_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

// hiddenKeySetBank is a bank replica with the key set k over store (shared
// with other replicas), serving the Bank and AuditLog services.
func hiddenKeySetBank(t *testing.T, store bank.Store, k *bank.Keys) (pb.BankClient, pb.AuditLogClient) {
	t.Helper()
	b := bank.New(store, k, time.Now, nil)
	if err := b.PublishKeySet(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn := serve(t, b.Register)
	return pb.NewBankClient(conn), pb.NewAuditLogClient(conn)
}

// TestVerifyLogNewerKeySet: a bank that keeps serving a wallet an old
// logged key set (a replica on the old keys, or one that means to hide a
// revocation) while a newer one is logged is caught by the wallet's
// VerifyLog through the checkpoint's keyset line: the newer set is adopted
// if it follows the one held (the revocation reaches the wallet), and
// reported as ErrLogMismatch if not.
func TestVerifyLogNewerKeySet(t *testing.T) {
	ctx := context.Background()
	k0 := keys(t)
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	// The replica on the old keys: the one the wallet talks to.
	bankc, logc := hiddenKeySetBank(t, store, k0)
	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.RefreshKeys(ctx, bankc); err != nil {
		t.Fatal(err)
	}
	if rep, err := w.VerifyLog(ctx, bankc, logc); err != nil || rep.Verified != 1 {
		t.Fatalf("the served key set: %+v, %v", rep, err)
	}

	// Another replica revokes a denomination (its key leaked): the new key
	// set is logged, and the wallet's replica still serves the old one.
	k1 := *k0
	k1.Denoms = slices.Clone(k0.Denoms)
	leaked := k1.Denoms[0].ID
	if err := k1.Revoke(leaked, time.Now()); err != nil {
		t.Fatal(err)
	}
	hiddenKeySetBank(t, store, &k1)
	served, err := w.RefreshKeys(ctx, bankc)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := served.Denomination(leaked); d.Revoked {
		t.Fatal("the old replica serves the revocation")
	}
	rep, err := w.VerifyLog(ctx, bankc, logc)
	if err != nil {
		t.Fatalf("a newer logged key set that follows the one held: %v", err)
	}
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := ks.Denomination(leaked); !d.Revoked {
		t.Fatalf("the wallet holds a key set issued %s without the revocation logged after it (report %+v): the bank hid it", ks.IssuedAt.UTC(), rep)
	}
	if rep.Verified != 1 {
		t.Errorf("report %+v: want the adopted key set's entry checked", rep)
	}
	if again, err := w.VerifyLog(ctx, bankc, logc); err != nil || again.Verified != 0 {
		t.Fatalf("again: %+v, %v", again, err)
	}

	// A newer logged key set the wallet does not take (it drops a key
	// whose coins are still accepted): reported, not adopted.
	k2 := k1
	k2.Denoms = slices.Clone(k1.Denoms[1:])
	k2.IssuedAt = time.Now()
	hiddenKeySetBank(t, store, &k2)
	_, err = w.VerifyLog(ctx, bankc, logc)
	if !errors.Is(err, wallet.ErrLogMismatch) || !strings.Contains(err.Error(), "newer than the one it serves this wallet") {
		t.Fatalf("a newer logged key set the wallet refuses: %v, want ErrLogMismatch", err)
	}
	if held, _ := w.KeySet(); len(held.Denominations) != len(k1.Denoms) {
		t.Fatal("the refused key set replaced the one held")
	}
}
