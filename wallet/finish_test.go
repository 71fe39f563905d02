package wallet

import (
	"context"
	"crypto/rand"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// prepOnly answers the first round from the keys; it serves nothing else.
type prepOnly struct {
	pb.BankClient
	k *bank.Keys
}

func (p prepOnly) priv(id ecash.Hash) ecash.DenomPrivateKey {
	for _, d := range p.k.Denoms {
		if d.ID == id {
			return d.Private
		}
	}
	return nil
}

func (p prepOnly) PrepareWithdraw(_ context.Context, in *pb.PrepareWithdrawRequest, _ ...grpc.CallOption) (*pb.PrepareWithdrawResponse, error) {
	out := &pb.PrepareWithdrawResponse{}
	for _, it := range in.Items {
		a, err := p.priv(ecash.Hash(it.Denomination)).Prepare(it.Request)
		if err != nil {
			return nil, err
		}
		out.Answers = append(out.Answers, a)
	}
	return out, nil
}

// finish on planchets this process blinded (p.blinded) gives exactly what
// finish on the same planchets read back from a pending record gives
// (re-derived): the same coin records, the same dispute; and every coin's
// key is its index's. A blinded list out of step with the planchets makes a
// dispute, never a coin.
func TestFinishBlindedMatchesRederived(t *testing.T) {
	now := time.Now()
	var specs []bank.DenomSpec
	for _, v := range []uint64{1, 2, 4, 128} { // CS below 100, RSA above
		c := ecash.CipherCS
		if v >= 100 {
			c = ecash.CipherRSA
		}
		specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: c})
	}
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, now.Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Create(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.acceptKeySet(k.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	bc := prepOnly{k: k}
	denoms := append(ks.Withdrawable(now), ks.Withdrawable(now)...)
	fresh, err := w.newPlanchets(context.Background(), bc, denoms, true)
	if err != nil {
		t.Fatal(err)
	}
	sigs := make([][]byte, len(fresh.Planchets))
	for i, pl := range fresh.Planchets {
		if sigs[i], err = bc.priv(pl.Denom).BlindSign(pl.Blinded); err != nil {
			t.Fatal(err)
		}
	}
	stored := &planchets{Planchets: fresh.Planchets, Indices: fresh.Indices, Prepared: fresh.Prepared}
	a, badA, err := w.finish(ks, fresh, sigs)
	if err != nil || badA != nil {
		t.Fatalf("blinded: %v %v", err, badA)
	}
	b, badB, err := w.finish(ks, stored, sigs)
	if err != nil || badB != nil {
		t.Fatalf("re-derived: %v %v", err, badB)
	}
	if !reflect.DeepEqual(a, b) || len(a) != len(denoms) {
		t.Fatalf("blinded and re-derived records differ")
	}
	for _, r := range a {
		d, err := ks.Denomination(r.Coin.Denom)
		if err != nil {
			t.Fatal(err)
		}
		ps, err := ecash.DerivePlanchet(w.seed, r.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Coin.Verify(d.Key); err != nil {
			t.Fatalf("coin %d: %v", r.Index, err)
		}
		if !ps.CoinPub().Equal(r.Coin.Pub) {
			t.Fatalf("coin %d: not its index's key", r.Index)
		}
	}
	// A bad signature: the same dispute either way.
	bad := append([][]byte(nil), sigs...)
	bad[2] = append([]byte(nil), bad[2]...)
	bad[2][len(bad[2])-1] ^= 1
	_, dA, _ := w.finish(ks, fresh, bad)
	_, dB, _ := w.finish(ks, stored, bad)
	if dA == nil || !reflect.DeepEqual(dA, dB) {
		t.Fatalf("disputes differ: %+v vs %+v", dA, dB)
	}
	// blinded out of step with the planchets: disputes, no wrong coins.
	swapped := *fresh
	swapped.blinded = append([]blindedPlanchet(nil), fresh.blinded...)
	swapped.blinded[0], swapped.blinded[1] = swapped.blinded[1], swapped.blinded[0]
	recs, d, err := w.finish(ks, &swapped, sigs)
	if err != nil || d == nil || len(d.Indices) != 2 || len(recs) != len(denoms)-2 {
		t.Fatalf("out of step: %d coins, dispute %+v, %v", len(recs), d, err)
	}
}
