package merchant

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/logclient"
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
