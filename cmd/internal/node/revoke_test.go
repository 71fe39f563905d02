package node

import (
	"context"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestLiveRevocation: the operator revokes a denomination on the running
// bank (bankd admin revoke-denomination). At once the bank serves the key set
// listing it, refuses the denomination's coins in payments, and pays them
// back by recoup; the key file keeps the revocation across a restart, and
// the audit log holds the revoked key set (the audit at cleanup replays it).
func TestLiveRevocation(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc := e.dialBank()
	w := e.newWallet(filepath.Join(t.TempDir(), "w"), "EUR:5.00")
	acct, _ := w.Account()
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:0.63"), nil); err != nil {
		t.Fatal(err)
	}
	var d ecash.Denomination
	for _, x := range e.ks.Denominations {
		if x.Value.String() == "EUR:0.32" {
			d = x
		}
	}
	if _, err := e.admin.RevokeDenomination(ctx, &pb.RevokeDenominationRequest{Denomination: "not hex"}); status.Code(err) != codes.NotFound {
		t.Errorf("a denomination that does not exist: %v, want NotFound", err)
	}
	r, err := e.admin.RevokeDenomination(ctx, &pb.RevokeDenominationRequest{Denomination: d.ID.String()[:12]})
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Denomination) != string(d.ID[:]) || r.Value != "EUR:0.32" {
		t.Errorf("revoked %x (%s), want %s", r.Denomination, r.Value, d.ID)
	}
	keys, err := bankc.GetKeys(ctx, &pb.GetKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ecash.DecodeKeySet(keys.SignedKeyset, e.ks.MasterPub)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := ks.Denomination(d.ID); !got.Revoked {
		t.Fatal("the key set served after the revocation does not list it")
	}
	if again, err := e.admin.RevokeDenomination(ctx, &pb.RevokeDenominationRequest{Denomination: d.ID.String()}); err != nil || string(again.SignedKeyset) != string(keys.SignedKeyset) {
		t.Errorf("revoking again: %v; the key set changed", err)
	}

	// The wallet's EUR:0.32 coin is now only recouped: credited back to
	// the account that withdrew it.
	before := e.raw(acct)
	rep, err := w.Recoup(ctx, bankc)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Credited.String() != "EUR:0.32" || e.raw(acct) != before+32 {
		t.Errorf("recouped %+v; account %d → %d", rep, before, e.raw(acct))
	}

	// The key file kept it: a restarted bank serves the same key set.
	e.restartBank(t)
	after, _ := e.bank.Bank.KeySet()
	if got, _ := after.Denomination(d.ID); !got.Revoked {
		t.Error("the revocation did not survive a restart")
	}
	k, err := bank.LoadKeys(filepath.Join(e.dir, bank.KeysFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range k.Denoms {
		if x.ID == d.ID && !x.Revoked {
			t.Error("the key file does not record the revocation")
		}
	}
}
