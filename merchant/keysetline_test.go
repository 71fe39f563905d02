package merchant

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// TestVerifyLogNewerKeySet: a bank replica that keeps serving the
// merchant its old key set while another logged a newer one is caught by
// the checkpoint's keyset line: a newer set that follows (a revocation) is
// taken, so the merchant stops accepting the revoked coins; one that does
// not follow is reported (logclient.ErrMismatch).
func TestVerifyLogNewerKeySet(t *testing.T) {
	ctx := context.Background()
	var store bank.Store
	k0 := bankKeys(t)
	s := newShopOn(t, k0, func(st bank.Store) bank.Store { store = st; return st })
	if rep, err := s.m.VerifyLog(ctx); err != nil || rep.AdoptedKeySet {
		t.Fatalf("%+v, %v", rep, err)
	}
	k1 := *k0
	k1.Denoms = slices.Clone(k0.Denoms)
	leaked := k1.Denoms[0].ID
	if err := k1.Revoke(leaked, s.clock.now()); err != nil {
		t.Fatal(err)
	}
	if err := bank.New(store, &k1, s.clock.now, nil).PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := s.m.VerifyLog(ctx)
	if err != nil || !rep.AdoptedKeySet {
		t.Fatalf("a newer logged key set that follows: %+v, %v", rep, err)
	}
	if d, _ := s.m.keySet().Denomination(leaked); !d.Revoked {
		t.Fatal("the merchant holds the key set without the revocation")
	}
	k2 := k1
	k2.Denoms = slices.Clone(k1.Denoms[1:]) // drops a key whose coins are still accepted
	k2.IssuedAt = k1.IssuedAt.Add(time.Second)
	if err := bank.New(store, &k2, s.clock.now, nil).PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	// The finding is reported after the other checks, which it does not
	// stop: the check written meanwhile is verified.
	s.writeCheck("EUR:5.00")
	if rep, err := s.m.VerifyLog(ctx); !errors.Is(err, logclient.ErrMismatch) || rep == nil || rep.Verified != 1 {
		t.Fatalf("a newer logged key set that does not follow: %+v, %v, want logclient.ErrMismatch and the check verified", rep, err)
	}
	if len(s.m.keySet().Denominations) != len(k1.Denoms) {
		t.Fatal("the refused key set replaced the one held")
	}
}

// TestAdoptedKeySetSurvivesRestart: a key set the merchant took from the
// log's keyset line (here one that retires the signing key, with a
// minute's grace) is the one it holds after a restart too, though the
// replica it asks still serves the older set. Otherwise the retired key,
// current again in the older set, would sign receipts the merchant
// accepts for any time after its window: a leaked key's forgeries.
func TestAdoptedKeySetSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	var store bank.Store
	k0 := oneCSKey(t)
	s := newShopOn(t, k0, func(st bank.Store) bank.Store { store = st; return st })
	k1 := *k0
	if _, err := k1.RotateSigning(s.clock.now(), time.Minute, rand.Reader); err != nil {
		t.Fatal(err)
	}
	if err := bank.New(store, &k1, s.clock.now, nil).PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	// The replica the merchant asks is not restarted: it serves k0 and
	// signs with k0's key.
	if rep, err := s.m.VerifyLog(ctx); err != nil || !rep.AdoptedKeySet {
		t.Fatalf("a newer logged key set that follows: %+v, %v", rep, err)
	}
	s.clock.add(2 * time.Minute) // past the retired key's window
	if _, err := s.m.WriteCheck(ctx, s.check("EUR:1.00")); !errors.Is(err, ErrBadBankAnswer) {
		t.Fatalf("a receipt by the retired key after its window: %v, want ErrBadBankAnswer", err)
	}
	s.powerLoss() // what was synced survives
	if ks := s.m.keySet(); !ks.SigningPub.Equal(k1.Signing.Public().(ed25519.PublicKey)) {
		t.Fatal("after a restart the merchant holds the older key set the replica serves")
	}
	if _, err := s.m.WriteCheck(ctx, s.check("EUR:1.00")); !errors.Is(err, ErrBadBankAnswer) {
		t.Fatalf("after a restart, a receipt by the retired key after its window: %v, want ErrBadBankAnswer", err)
	}
}

// entriesDown is an audit-log link on which fetching entry index (as
// logclient.Entry does, alone) fails.
type entriesDown struct {
	pb.AuditLogClient
	index int64
}

var errEntriesDown = errors.New("entries unavailable (simulated)")

func (e entriesDown) GetLogEntries(ctx context.Context, in *pb.GetLogEntriesRequest, opts ...grpc.CallOption) (*pb.GetLogEntriesResponse, error) {
	if in.From == e.index {
		return nil, errEntriesDown
	}
	return e.AuditLogClient.GetLogEntries(ctx, in, opts...)
}

// TestVerifyLogKeySetFindingSurvivesStop: a key-set finding (a newer
// logged set that does not follow the one held) is returned with an error
// that stops the later checks, not lost to it.
func TestVerifyLogKeySetFindingSurvivesStop(t *testing.T) {
	ctx := context.Background()
	var store bank.Store
	k0 := oneCSKey(t)
	s := newShopOn(t, k0, func(st bank.Store) bank.Store { store = st; return st })
	a := s.writeCheck("EUR:5.00")
	at, err := s.bank.LogIndex(ctx, a.Receipt.EPOHash)
	if err != nil || at <= 0 {
		t.Fatal(at, err)
	}
	k1 := *k0
	k1.Denoms = nil // drops a key whose coins are still accepted
	k1.IssuedAt = k0.IssuedAt.Add(time.Second)
	if err := bank.New(store, &k1, s.clock.now, nil).PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	s.logc.AuditLogClient = entriesDown{AuditLogClient: s.logc.AuditLogClient, index: at}
	_, err = s.m.VerifyLog(ctx)
	if !errors.Is(err, errEntriesDown) || !errors.Is(err, logclient.ErrMismatch) || !errors.Is(err, ecash.ErrKeySetSuccession) {
		t.Fatalf("got %v, want the failed fetch and the key-set finding (logclient.ErrMismatch, ecash.ErrKeySetSuccession)", err)
	}
	t.Log(err)
}
