package node

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	pb "github.com/blindbank/blindbank/proto"
	"github.com/blindbank/blindbank/wallet"
)

func (e *env) dialLog() pb.AuditLogClient {
	e.t.Helper()
	conn, err := transport.Dial(e.bank.Addr, transport.ClientConfig{Pin: e.bank.Fingerprint})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return pb.NewAuditLogClient(conn)
}

// TestAuditLog: every state change of real flows is in the bank's log; the
// whole log replays to the signed checkpoint; a wallet verifies its
// payments, return and swaps by inclusion proofs, the log across a restart
// stays consistent, and the wallet catches a bank that shows it two
// histories (a second bank with the same keys).
func TestAuditLog(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc, logc := e.dialBank(), e.dialLog()
	s := e.startMerchant("shop")
	w := e.newWallet(t.TempDir(), "EUR:50.00")
	defer w.Close()
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:5.12"), nil); err != nil {
		t.Fatal(err)
	}
	for _, amount := range []string{"EUR:0.03", "EUR:0.03", "EUR:1.07"} {
		if _, err := w.Pay(ctx, bankc, s.client, "shop", s.order(t, amount), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Return(ctx, bankc, mustAmount(t, "EUR:0.50")); err != nil {
		t.Fatal(err)
	}
	// A check paid from the account (NetBill), approved, and one declined.
	if _, err := w.WriteCheck(ctx, bankc, s.client, mustAmount(t, "EUR:1.00"), "rent"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteCheck(ctx, bankc, s.client, mustAmount(t, "EUR:1000.00"), "too much"); err == nil {
		t.Fatal("a check beyond the balance was approved")
	}
	rep, err := w.VerifyLog(ctx, bankc, logc)
	if err != nil {
		t.Fatal(err)
	}
	// Three payments, a return, the swaps that made change, and two checks.
	if rep.Verified < 7 || rep.Waiting != 0 {
		t.Fatalf("verified %d entries, %d waiting; want every payment, return, swap and check", rep.Verified, rep.Waiting)
	}
	// The merchant checks its deposits and payment orders too.
	mrep, err := s.admin.VerifyLog(ctx, &pb.VerifyLogRequest{})
	if err != nil || mrep.Verified != 5 || mrep.Waiting != 0 {
		t.Fatalf("merchant's check: %+v, %v; want its 3 deposits and 2 checks verified", mrep, err)
	}
	again, err := w.VerifyLog(ctx, bankc, logc)
	if err != nil || again.Verified != 0 {
		t.Fatalf("second check: %+v, %v; want nothing left to verify", again, err)
	}

	// The whole log replays to the signed checkpoint, and holds an entry
	// for every kind of change made.
	ks, _ := e.bank.Bank.KeySet()
	wit, err := logclient.NewWitness(ks)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := logclient.Update(ctx, logc, wit)
	if err != nil {
		t.Fatal(err)
	}
	var raw [][]byte
	kinds := map[auditlog.Kind]int{}
	for from := int64(0); from < cp.Size; {
		resp, err := logc.GetLogEntries(ctx, &pb.GetLogEntriesRequest{From: from, Count: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range resp.Entries {
			en, err := auditlog.DecodeEntry(b)
			if err != nil {
				t.Fatal(err)
			}
			kinds[en.Kind()]++
		}
		raw = append(raw, resp.Entries...)
		from += int64(len(resp.Entries))
	}
	if err := auditlog.VerifyLog(cp, raw[:cp.Size]); err != nil {
		t.Fatal(err)
	}
	// The audit passes on the history these flows left: money conserved,
	// each coin spent once, redeemed ≤ issued, every key set signed by the
	// pinned master key.
	auditor := auditlog.NewAuditor(ks.MasterPub)
	for _, b := range raw[:cp.Size] {
		if _, err := auditor.Apply(b); err != nil {
			t.Fatalf("audit: %v", err)
		}
	}
	if err := auditor.Verify(cp); err != nil {
		t.Fatalf("audit: %v", err)
	}
	for _, k := range []auditlog.Kind{auditlog.KindKeySet, auditlog.KindAccountOpened, auditlog.KindCredit, auditlog.KindWithdraw, auditlog.KindDeposit, auditlog.KindSwap} {
		if kinds[k] == 0 {
			t.Errorf("no %s entry in the log: %v", k, kinds)
		}
	}
	if kinds[auditlog.KindKeySet] != 1 {
		t.Errorf("%d key set entries, want 1", kinds[auditlog.KindKeySet])
	}
	// Bad requests are refused, not answered with nonsense.
	if _, err := logc.GetInclusionProof(ctx, &pb.GetInclusionProofRequest{Index: cp.Size, TreeSize: cp.Size}); err == nil {
		t.Error("inclusion proof of an entry past the end")
	}
	if _, err := logc.GetConsistencyProof(ctx, &pb.GetConsistencyProofRequest{OldSize: 2, NewSize: cp.Size + 10}); err == nil {
		t.Error("consistency proof to a tree larger than the log")
	}

	// A restart appends no key set entry (the same keys) and the log stays
	// consistent with what the wallet saw. (The restarted bank listens on a
	// new port, which the merchant does not know: the wallet swaps.)
	e.restartBank(t)
	bankc, logc = e.dialBank(), e.dialLog()
	if _, err := w.Swap(ctx, bankc, mustAmount(t, "EUR:0.20")); err != nil {
		t.Fatal(err)
	}
	if rep, err := w.VerifyLog(ctx, bankc, logc); err != nil || rep.Verified == 0 || rep.Checkpoint.Size <= cp.Size {
		t.Fatalf("after a restart: %+v, %v", rep, err)
	}

	// A second bank with the same keys but another history: to the wallet
	// it is the same bank showing a different log.
	other := startEnv(t)
	w2 := other.newWallet(t.TempDir(), "EUR:9.00")
	defer w2.Close()
	if _, err := w2.Withdraw(ctx, other.dialBank(), mustAmount(t, "EUR:3.00"), nil); err != nil {
		t.Fatal(err)
	}
	acct2, err := w2.Account()
	if err != nil {
		t.Fatal(err)
	}
	for int64(other.logSize(t)) <= rep.Checkpoint.Size+5 { // longer than what the wallet saw
		other.credit(acct2, "EUR:0.01")
	}
	_, err = w.VerifyLog(ctx, other.dialBank(), other.dialLog())
	var fork *auditlog.ForkError
	if !errors.As(err, &fork) || !errors.Is(err, auditlog.ErrForked) {
		t.Fatalf("a different history under the same keys: %v, want a fork", err)
	}
	v, err := auditlog.NewVerifier(auditlog.Origin(ks.BankID()), ks.SigningPub)
	if err != nil {
		t.Fatal(err)
	}
	for _, signed := range [][]byte{fork.Older, fork.Newer} {
		if _, err := auditlog.OpenCheckpoint(signed, auditlog.Origin(ks.BankID()), v); err != nil {
			t.Errorf("fork evidence does not verify: %v", err)
		}
	}
}

func (e *env) logSize(t *testing.T) int64 {
	t.Helper()
	n, err := e.bank.Bank.Store().LogSize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAuditLogSigningKeyRotation: a checkpoint a wallet (or merchant) saved
// while the bank signed with one key still opens after the bank rotates its
// signing key (the retired key stays listed in the key set), and the new
// key's checkpoints are checked consistent with it.
func TestAuditLogSigningKeyRotation(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc, logc := e.dialBank(), e.dialLog()
	w := e.newWallet(t.TempDir(), "EUR:20.00")
	defer w.Close()
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:3.00"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Return(ctx, bankc, mustAmount(t, "EUR:1.00")); err != nil {
		t.Fatal(err)
	}
	before, err := w.VerifyLog(ctx, bankc, logc)
	if err != nil || before.Verified == 0 {
		t.Fatalf("before the rotation: %+v, %v", before, err)
	}
	// The saved witness of a merchant, made the same way.
	oldKS := e.ks
	_, saved, err := logclient.Refresh(ctx, logc, oldKS, nil)
	if err != nil {
		t.Fatal(err)
	}

	// bankd keys rotate-signing, then a restart on the rotated key file.
	if err := e.bank.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, bank.KeysFile)
	keys, err := bank.LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.RotateSigning(time.Now().Add(time.Second), time.Hour, rand.Reader); err != nil {
		t.Fatal(err)
	}
	if err := keys.Save(path); err != nil {
		t.Fatal(err)
	}
	e.startBank()
	bankc, logc = e.dialBank(), e.dialLog()
	if e.ks.SigningPub.Equal(oldKS.SigningPub) || len(e.ks.PastSigning) != 1 {
		t.Fatal("the signing key did not rotate")
	}
	if _, err := w.RefreshKeys(ctx, bankc); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Return(ctx, bankc, mustAmount(t, "EUR:1.00")); err != nil {
		t.Fatal(err)
	}
	after, err := w.VerifyLog(ctx, bankc, logc)
	if err != nil || after.Verified == 0 || after.Checkpoint.Size <= before.Checkpoint.Size {
		t.Fatalf("after the rotation: %+v, %v; want the saved checkpoint opened and the new one accepted", after, err)
	}
	cp, next, err := logclient.Refresh(ctx, logc, e.ks, saved)
	if err != nil || cp.Size != after.Checkpoint.Size {
		t.Fatalf("the merchant's saved checkpoint after the rotation: %+v, %v", cp, err)
	}
	// What the witness keeps now is the new key's checkpoint.
	bare := *e.ks
	bare.PastSigning = nil
	if _, _, err := logclient.Refresh(ctx, logc, &bare, next); err != nil {
		t.Errorf("the new key's checkpoint: %v", err)
	}
	// A key set that does not list the retired key does not vouch for what
	// it signed.
	if _, _, err := logclient.Refresh(ctx, logc, &bare, saved); !errors.Is(err, auditlog.ErrCheckpointSignature) {
		t.Errorf("a checkpoint by a key the key set does not list: %v", err)
	}
}

// keySetBank serves one wallet a key set of its own.
type keySetBank struct {
	pb.BankClient
	signed []byte
}

func (b keySetBank) GetKeys(context.Context, *pb.GetKeysRequest, ...grpc.CallOption) (*pb.GetKeysResponse, error) {
	return &pb.GetKeysResponse{SignedKeyset: b.signed}, nil
}

// TestKeySetNotLogged: the key set a wallet accepts is checked against the
// bank's audit log. The one the bank serves everyone is there (entry 0); a
// key set signed by the same master key but served to one wallet alone,
// which would let the bank recognise that wallet's coins, is not: the
// wallet's log check says so.
func TestKeySetNotLogged(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc, logc := e.dialBank(), e.dialLog()
	w := e.newWallet(t.TempDir(), "EUR:1.00")
	defer w.Close()
	if rep, err := w.VerifyLog(ctx, bankc, logc); err != nil || rep.Verified != 1 {
		t.Fatalf("the served key set: %+v, %v; want it verified", rep, err)
	}
	path := filepath.Join(t.TempDir(), bank.KeysFile)
	if err := os.WriteFile(path, testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := bank.LoadKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	own := k.KeySet()
	own.IssuedAt = own.IssuedAt.Add(time.Second)
	own.Sign(k.Master)
	tagging := keySetBank{BankClient: bankc, signed: own.Encode()}
	if _, err := w.RefreshKeys(ctx, tagging); err != nil {
		t.Fatalf("the wallet refused a key set its master key signed: %v", err)
	}
	if _, err := w.VerifyLog(ctx, tagging, logc); !errors.Is(err, wallet.ErrLogMismatch) {
		t.Fatalf("a key set the log lacks: %v, want ErrLogMismatch", err)
	}
}
