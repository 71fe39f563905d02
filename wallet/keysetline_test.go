package wallet_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"golang.org/x/mod/sumdb/note"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
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
	k2.IssuedAt = k1.IssuedAt.Add(time.Second)
	hiddenKeySetBank(t, store, &k2)
	_, err = w.VerifyLog(ctx, bankc, logc)
	if !errors.Is(err, wallet.ErrLogMismatch) || !strings.Contains(err.Error(), "newer than the one it serves this wallet") {
		t.Fatalf("a newer logged key set the wallet refuses: %v, want ErrLogMismatch", err)
	}
	if held, _ := w.KeySet(); len(held.Denominations) != len(k1.Denoms) {
		t.Fatal("the refused key set replaced the one held")
	}
}

// lyingLog is an AuditLogClient whose FindEntry says the entry of ref is
// not logged (or, with at >= 0, is at entry at); every other answer is the
// bank's.
type lyingLog struct {
	pb.AuditLogClient
	ref []byte
	at  int64
}

func (l lyingLog) FindEntry(ctx context.Context, in *pb.FindEntryRequest, opts ...grpc.CallOption) (*pb.FindEntryResponse, error) {
	if bytes.Equal(in.Ref, l.ref) {
		if l.at < 0 {
			return nil, status.Error(codes.NotFound, "no such entry")
		}
		return &pb.FindEntryResponse{Index: l.at}, nil
	}
	return l.AuditLogClient.FindEntry(ctx, in, opts...)
}

// TestVerifyLogNewerKeySetFindLies: no FindEntry answer ends the keyset
// line's check. A bank that says the key set it served the wallet is not
// logged, or logged past the checkpoint, still cannot keep the wallet on
// it while the checkpoint names a newer one that revokes a denomination:
// the wallet adopts the newer one.
func TestVerifyLogNewerKeySetFindLies(t *testing.T) {
	for name, at := range map[string]int64{"not logged": -1, "past the checkpoint": 1 << 40} {
		t.Run(name, func(t *testing.T) {
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
			if _, err := w.VerifyLog(ctx, bankc, logc); err != nil {
				t.Fatal(err)
			}
			k1 := *k0
			k1.Denoms = slices.Clone(k0.Denoms)
			leaked := k1.Denoms[0].ID
			if err := k1.Revoke(leaked, time.Now()); err != nil {
				t.Fatal(err)
			}
			hiddenKeySetBank(t, store, &k1)
			held := sha256.Sum256(k0.KeySet().Encode())
			rep, err := w.VerifyLog(ctx, bankc, lyingLog{AuditLogClient: logc, ref: held[:], at: at})
			if err != nil {
				t.Fatalf("%+v, %v", rep, err)
			}
			ks, err := w.KeySet()
			if err != nil {
				t.Fatal(err)
			}
			if d, _ := ks.Denomination(leaked); !d.Revoked || !rep.AdoptedKeySet {
				t.Fatalf("a false FindEntry answer kept the wallet on the key set without the revocation (report %+v)", rep)
			}
		})
	}
}

// TestCheckKeySetIndex: a keyset line naming the held key set is checked
// too: the entry at its index must be that key set (a line naming the
// held set at another entry is false, ErrKeySetLine), and a line naming
// an older key set than the one held is logclient.ErrMismatch.
func TestCheckKeySetIndex(t *testing.T) {
	ctx := context.Background()
	k0 := keys(t)
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	_, logc := hiddenKeySetBank(t, store, k0)
	k1 := *k0
	k1.Denoms = slices.Clone(k0.Denoms)
	if err := k1.Revoke(k1.Denoms[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	hiddenKeySetBank(t, store, &k1)
	ks0, ks1 := k0.KeySet(), k1.KeySet()
	cp, _, err := logclient.Refresh(ctx, logc, ks0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 2 || cp.KeySet.Index != 1 || cp.KeySet.Hash != sha256.Sum256(ks1.Encode()) {
		t.Fatalf("checkpoint %+v: want k1 at entry 1 of 2", cp)
	}
	if newer, err := logclient.CheckKeySet(ctx, logc, cp, ks1, ks1.Encode()); newer != nil || err != nil {
		t.Fatalf("the true line naming the held set: %v, %v", newer, err)
	}
	if _, err := logclient.CheckKeySet(ctx, logc, cp, ks0, ks0.Encode()); err != nil {
		t.Fatalf("the true line naming a newer set: %v", err)
	}
	lie := cp
	lie.KeySet.Hash = sha256.Sum256(ks0.Encode()) // k0, said to be at entry 1 (k1's)
	if _, err := logclient.CheckKeySet(ctx, logc, lie, ks0, ks0.Encode()); !errors.Is(err, logclient.ErrKeySetLine) {
		t.Fatalf("a line naming the held set at another key set's entry: %v, want ErrKeySetLine", err)
	}
	older := cp
	older.KeySet.Index, older.KeySet.Hash = 0, sha256.Sum256(ks0.Encode())
	if _, err := logclient.CheckKeySet(ctx, logc, older, ks1, ks1.Encode()); !errors.Is(err, logclient.ErrMismatch) {
		t.Fatalf("a line naming an older key set than the held one: %v, want ErrMismatch", err)
	}
}

// linelessLog is an AuditLogClient whose checkpoints, re-signed with the
// bank's signing key, lack the keyset line.
type linelessLog struct {
	pb.AuditLogClient
	signer note.Signer
}

func (l linelessLog) GetCheckpoint(ctx context.Context, in *pb.GetCheckpointRequest, opts ...grpc.CallOption) (*pb.GetCheckpointResponse, error) {
	resp, err := l.AuditLogClient.GetCheckpoint(ctx, in, opts...)
	if err != nil {
		return nil, err
	}
	n, err := note.Open(resp.Checkpoint, note.VerifierList())
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		n, err = unverified.Note, nil
	}
	if err != nil {
		return nil, err
	}
	cp, err := auditlog.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	cp.KeySet, cp.HasKeySet = auditlog.KeySetLine{}, false
	signed, err := auditlog.SignCheckpoint(cp, l.signer)
	return &pb.GetCheckpointResponse{Checkpoint: signed}, err
}

// TestVerifyLogLinelessCheckpoint: a fresh checkpoint of a non-empty log
// without a keyset line, signed by the bank, is bank misbehaviour
// (ErrLogMismatch), not an error of the wallet's.
func TestVerifyLogLinelessCheckpoint(t *testing.T) {
	ctx := context.Background()
	k0 := keys(t)
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	bankc, logc := hiddenKeySetBank(t, store, k0)
	signer, err := auditlog.NewSigner(auditlog.Origin(k0.KeySet().BankID()), k0.Signing)
	if err != nil {
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
	if _, err := w.VerifyLog(ctx, bankc, linelessLog{AuditLogClient: logc, signer: signer}); !errors.Is(err, wallet.ErrLogMismatch) {
		t.Fatalf("a checkpoint without a keyset line: %v, want ErrLogMismatch", err)
	}
	if rep, err := w.VerifyLog(ctx, bankc, logc); err != nil || !rep.Checkpoint.HasKeySet {
		t.Fatalf("then the true checkpoint: %+v, %v", rep, err)
	}
}

// TestVerifyLogLinelessCheckpointNotSaved: a checkpoint a wallet fetches
// fresh from a non-empty log must carry the keyset line (AUDITLOG.md §4a);
// one without it is the bank's misbehaviour, refused before the witness
// saves it: neither as the first checkpoint the wallet sees, nor over a
// smaller one it holds (the log grew). Saved, it would be the newest
// checkpoint the wallet's witness holds, whose keyset line it checks.
func TestVerifyLogLinelessCheckpointNotSaved(t *testing.T) {
	ctx := context.Background()
	k0 := keys(t)
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	bankc, logc := hiddenKeySetBank(t, store, k0)
	signer, err := auditlog.NewSigner(auditlog.Origin(k0.KeySet().BankID()), k0.Signing)
	if err != nil {
		t.Fatal(err)
	}
	lineless := linelessLog{AuditLogClient: logc, signer: signer}
	w, err := wallet.Create(t.TempDir(), wallet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.RefreshKeys(ctx, bankc); err != nil {
		t.Fatal(err)
	}
	_, err = w.VerifyLog(ctx, bankc, lineless)
	if saved, serr := wallet.SavedCheckpoint(w); serr != nil || saved != nil {
		t.Fatalf("a first checkpoint without a keyset line was saved (%d bytes, %v; VerifyLog: %v)", len(saved), serr, err)
	}
	if !errors.Is(err, wallet.ErrLogMismatch) {
		t.Fatalf("a first checkpoint without a keyset line: %v, want ErrLogMismatch", err)
	}
	rep, err := w.VerifyLog(ctx, bankc, logc)
	if err != nil || !rep.Checkpoint.HasKeySet {
		t.Fatalf("the true checkpoint: %+v, %v", rep, err)
	}
	held, err := wallet.SavedCheckpoint(w)
	if err != nil || held == nil {
		t.Fatalf("the true checkpoint not saved: %v", err)
	}
	// The log grows: the lineless checkpoint is newer than the one held.
	pub, _, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenAccount(ctx, "another", pub, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	rep, err = w.VerifyLog(ctx, bankc, lineless)
	if saved, serr := wallet.SavedCheckpoint(w); serr != nil || !bytes.Equal(saved, held) {
		t.Fatalf("a newer checkpoint without a keyset line replaced the one held (%v; VerifyLog: %v)", serr, err)
	}
	if !errors.Is(err, wallet.ErrLogMismatch) {
		t.Fatalf("a newer checkpoint without a keyset line: %v, want ErrLogMismatch", err)
	}
	if rep == nil || rep.Checkpoint.Size <= 1 || rep.Checkpoint.HasKeySet {
		t.Fatalf("report %+v: want the lineless checkpoint of the grown log", rep)
	}
	rep, err = w.VerifyLog(ctx, bankc, logc)
	if err != nil || !rep.Checkpoint.HasKeySet || rep.Checkpoint.Size < 2 {
		t.Fatalf("then the true checkpoint of the grown log: %+v, %v", rep, err)
	}
}

// TestCheckKeySetSameSecond: issue times are whole seconds, and two
// replicas revoking at once can issue a set in the same second as the one
// a client holds. That set, logged after, is the client's to adopt if it
// follows, as GetKeys would serve it; it was reported as an older set
// named newest (ErrMismatch), a false alarm from an honest bank.
func TestCheckKeySetSameSecond(t *testing.T) {
	ctx := context.Background()
	k0 := keys(t)
	store, err := pebblestore.Open("ledger", pebblestore.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	_, logc := hiddenKeySetBank(t, store, k0)
	k1 := *k0
	k1.Denoms = slices.Clone(k0.Denoms)
	if err := k1.Revoke(k1.Denoms[0].ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	k1.IssuedAt = k0.IssuedAt
	hiddenKeySetBank(t, store, &k1)
	ks0, ks1 := k0.KeySet(), k1.KeySet()
	if !ks1.IssuedAt.Equal(ks0.IssuedAt) || ks1.Follows(ks0) != nil {
		t.Fatalf("k1 issued %s (k0 %s), follows k0: %v", ks1.IssuedAt, ks0.IssuedAt, ks1.Follows(ks0))
	}
	cp, _, err := logclient.Refresh(ctx, logc, ks0, nil)
	if err != nil {
		t.Fatal(err)
	}
	newer, err := logclient.CheckKeySet(ctx, logc, cp, ks0, ks0.Encode())
	if err != nil || newer == nil || newer.Index != 1 {
		t.Fatalf("a set issued in the same second as the held one, logged after it: %+v, %v; want it, to adopt", newer, err)
	}
}
