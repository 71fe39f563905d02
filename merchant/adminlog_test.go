package merchant

import (
	"context"
	"slices"
	"testing"

	"github.com/blindbank/blindbank/bank"
	pb "github.com/blindbank/blindbank/proto"
)

// TestAdminVerifyLogAdoptedKeySet: the admin VerifyLog response says
// whether the merchant took a newer logged key set from the checkpoint
// (LogReport.AdoptedKeySet), for "merchantd verify-log" to show: not when
// the bank serves the newest, yes when a newer one that follows (a
// revocation) is logged than the bank serves.
func TestAdminVerifyLogAdoptedKeySet(t *testing.T) {
	ctx := context.Background()
	var store bank.Store
	k0 := bankKeys(t)
	s := newShopOn(t, k0, func(st bank.Store) bank.Store { store = st; return st })
	admin := s.m.AdminServer()
	if r, err := admin.VerifyLog(ctx, &pb.VerifyLogRequest{}); err != nil || r.AdoptedKeySet {
		t.Fatalf("the served key set: %+v, %v", r, err)
	}
	k1 := *k0
	k1.Denoms = slices.Clone(k0.Denoms)
	if err := k1.Revoke(k1.Denoms[0].ID, s.clock.now()); err != nil {
		t.Fatal(err)
	}
	if err := bank.New(store, &k1, s.clock.now, nil).PublishKeySet(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := admin.VerifyLog(ctx, &pb.VerifyLogRequest{}); err != nil || !r.AdoptedKeySet {
		t.Fatalf("a newer logged key set that follows: %+v, %v; want adopted_key_set", r, err)
	}
}
