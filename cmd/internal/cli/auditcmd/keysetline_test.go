package auditcmd_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// staleLineBank is a fakeLogBank whose checkpoints say what line says of
// the newest key set: a bank hiding a later key set from the wallets it
// serves an older one.
type staleLineBank struct {
	*fakeLogBank
	line func(cp *auditlog.Checkpoint)
}

func (b staleLineBank) GetCheckpoint(context.Context, *pb.GetCheckpointRequest) (*pb.GetCheckpointResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	cp, err := b.log.Checkpoint(b.origin)
	if err != nil {
		return nil, err
	}
	b.line(&cp)
	signed, err := auditlog.SignCheckpoint(cp, b.signer)
	return &pb.GetCheckpointResponse{Checkpoint: signed}, err
}

// TestLogAuditKeySetLine: the audit fails a checkpoint, signed by the
// bank, whose keyset line names an older key set than the newest logged,
// and one without a line.
func TestLogAuditKeySetLine(t *testing.T) {
	seed := func(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }
	master, signing := seed(1), seed(2)
	now := time.Now().Truncate(time.Second)
	ks1 := &ecash.KeySet{Currency: "EUR", MasterPub: master.Public().(ed25519.PublicKey), SigningPub: signing.Public().(ed25519.PublicKey),
		HPKEPub: bytes.Repeat([]byte{9}, 32), IssuedAt: now}
	ks1.Sign(master)
	ks2 := *ks1
	ks2.IssuedAt = now.Add(time.Second)
	ks2.Sign(master)
	f := &fakeLogBank{log: auditlog.NewMemLog()}
	f.serve(t, ks1, signing, now)
	f.serve(t, &ks2, signing, now)
	for name, line := range map[string]func(cp *auditlog.Checkpoint){
		"the truth": func(*auditlog.Checkpoint) {},
		"the older key set": func(cp *auditlog.Checkpoint) {
			cp.KeySet = auditlog.KeySetLine{Index: 0, Hash: sha256.Sum256(ks1.Encode())}
		},
		"no line": func(cp *auditlog.Checkpoint) { cp.HasKeySet = false },
	} {
		t.Run(name, func(t *testing.T) {
			b := staleLineBank{fakeLogBank: f, line: line}
			conn := serveLoopback(t, func(s *grpc.Server) {
				pb.RegisterAuditLogServer(s, b)
				pb.RegisterBankServer(s, fakeKeys{f: f})
			})
			code, rep, stderr := runLogAudit(t, "--bank", conn.Target(), "--plaintext", "--master", hex.EncodeToString(ks1.MasterPub))
			switch name {
			case "the truth":
				mustOK(t, code, rep, stderr)
			case "the older key set":
				// As any replay that is not the checkpoint's: no check name.
				mustFail(t, code, rep, stderr, "", -1, "keyset line is false")
			default:
				mustFail(t, code, rep, stderr, "checkpoint", -1, "no keyset line")
			}
		})
	}
}

// TestLogAuditFromKeySetLine: the keyset line of a --from checkpoint (a
// wallet's, of an earlier size) is checked against the replay too: one
// naming an older key set than the newest below its size fails the audit,
// though the bank's checkpoint now is true; the true one passes.
func TestLogAuditFromKeySetLine(t *testing.T) {
	seed := func(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, 32)) }
	master, signing := seed(1), seed(2)
	now := time.Now().Truncate(time.Second)
	ks1 := &ecash.KeySet{Currency: "EUR", MasterPub: master.Public().(ed25519.PublicKey), SigningPub: signing.Public().(ed25519.PublicKey),
		HPKEPub: bytes.Repeat([]byte{9}, 32), IssuedAt: now}
	ks1.Sign(master)
	ks2, ks3 := *ks1, *ks1
	ks2.IssuedAt, ks3.IssuedAt = now.Add(time.Second), now.Add(2*time.Second)
	ks2.Sign(master)
	ks3.Sign(master)
	f := &fakeLogBank{log: auditlog.NewMemLog()}
	f.serve(t, ks1, signing, now)
	f.serve(t, &ks2, signing, now)
	// The checkpoint of 2 entries a wallet kept.
	at2, err := f.log.Checkpoint(f.origin)
	if err != nil {
		t.Fatal(err)
	}
	f.serve(t, &ks3, signing, now)
	conn := serveLoopback(t, func(s *grpc.Server) {
		pb.RegisterAuditLogServer(s, f)
		pb.RegisterBankServer(s, fakeKeys{f: f})
	})
	for name, line := range map[string]auditlog.KeySetLine{
		"the truth":         at2.KeySet,
		"the older key set": {Index: 0, Hash: sha256.Sum256(ks1.Encode())},
	} {
		t.Run(name, func(t *testing.T) {
			cp := at2
			cp.KeySet = line
			signed, err := auditlog.SignCheckpoint(cp, f.signer)
			if err != nil {
				t.Fatal(err)
			}
			from := filepath.Join(t.TempDir(), "checkpoint")
			if err := os.WriteFile(from, signed, 0o600); err != nil {
				t.Fatal(err)
			}
			code, rep, stderr := runLogAudit(t, "--bank", conn.Target(), "--plaintext", "--master", hex.EncodeToString(ks1.MasterPub), "--from", from)
			if name == "the truth" {
				mustOK(t, code, rep, stderr)
				return
			}
			mustFail(t, code, rep, stderr, "", -1, "keyset line is false")
			if !strings.Contains(stderr, "--from") {
				t.Errorf("the failure does not name the --from checkpoint: %s", stderr)
			}
		})
	}
}
