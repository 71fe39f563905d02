package wallet

import (
	"context"
	"crypto/rand"
	"errors"
	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
	k, w, ks := keyedWallet(t, now, specs)
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

// signingBank: PrepareWithdraw from prepOnly; Swap fails once (transient),
// then blind-signs every output.
type signingBank struct {
	prepOnly
	calls int
}

func (s *signingBank) Swap(_ context.Context, in *pb.SwapRequest, _ ...grpc.CallOption) (*pb.SwapResponse, error) {
	s.calls++
	if s.calls == 1 {
		return nil, status.Error(codes.Unavailable, "link down")
	}
	r, err := ecash.DecodeSwapRequest(in.Body)
	if err != nil {
		return nil, err
	}
	out := &pb.SwapResponse{}
	for _, p := range r.Outputs {
		sig, err := s.priv(p.Denom).BlindSign(p.Blinded)
		if err != nil {
			return nil, err
		}
		out.BlindSignatures = append(out.BlindSignatures, sig)
	}
	return out, nil
}

// keyedWallet is a new wallet holding the key set of fresh keys of specs,
// made a minute before now: the keys, the wallet and its key set.
func keyedWallet(t *testing.T, now time.Time, specs []bank.DenomSpec) (*bank.Keys, *Wallet, *ecash.KeySet) {
	t.Helper()
	k, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, now.Add(-time.Minute), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := Create(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if _, err := w.acceptKeySet(k.KeySet().Encode()); err != nil {
		t.Fatal(err)
	}
	ks, err := w.KeySet()
	if err != nil {
		t.Fatal(err)
	}
	return k, w, ks
}

func csSpec(v uint64) bank.DenomSpec {
	return bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: ecash.CipherCS}
}

// TestRecoverWithOlderKeySet: Recover reads the key set once, before it
// recovers the pending swaps; a swap made meanwhile by another call, with
// a newer key set listing a new key, and left pending by a lost answer,
// meets a key set that does not list its output's key. It stays pending,
// and blocks nothing (Pay recovers swaps first), until a recovery with the
// newer key set makes its coin: dropping the output as departed would lose
// a coin the bank signed.
func TestRecoverWithOlderKeySet(t *testing.T) {
	now := time.Now()
	k, w, s1 := keyedWallet(t, now, []bank.DenomSpec{csSpec(1), csSpec(2)}) // s1: what a Recover started now holds in memory

	// The bank adds a key (rotation / Extend); another call of the wallet fetches it.
	k2, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", MasterPub: k.MasterPub, Denoms: []bank.DenomSpec{csSpec(4)}}, now.Add(-time.Second), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k.Denoms = append(k.Denoms, k2.Denoms...)
	k.IssuedAt = now.Truncate(time.Second).Add(time.Second)
	s2, err := w.acceptKeySet(k.KeySet().Encode())
	if err != nil {
		t.Fatal(err)
	}
	newD := k2.Denoms[0].Denomination
	if _, err := s2.Denomination(newD.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Denomination(newD.ID); !errors.Is(err, ecash.ErrUnknownDenomination) {
		t.Fatal("s1 should lack the new key")
	}

	// A fresh input coin worth 4.
	in := &coinRecord{Index: 1000, Coin: ecash.Coin{Denom: k.Denoms[0].ID}, Value: newD.Value, State: CoinFresh}
	in.Coin.Pub = mustPub(t, w, 1000)
	if err := w.db.Set(coinKey(in.Coin.ID()), in.encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
	b := &signingBank{prepOnly: prepOnly{k: k}}
	_, err = w.swap(context.Background(), b, s2, []*coinRecord{in}, []ecash.Denomination{newD})
	if !errors.Is(err, ErrPending) {
		t.Fatalf("first send: %v, want pending", err)
	}
	// Recover's recoverSwaps with the key set it read before the swap was
	// made: no error, the swap still pending.
	if err := w.recoverSwaps(context.Background(), b, s1); err != nil {
		t.Fatalf("recovering with the older key set: %v", err)
	}
	if n, _ := w.pendingKeys("s/"); len(n) != 1 {
		t.Fatalf("%d swaps pending after recovering with the older key set, want it still pending", len(n))
	}
	if c, _ := w.coin(in.Coin.ID()); c.State != CoinPending {
		t.Fatalf("the input's state %d, want pending", c.State)
	}
	// With the newer one the coin is made.
	if err := w.recoverSwaps(context.Background(), b, s2); err != nil {
		t.Fatal(err)
	}
	bal, err := w.Balance()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := w.pendingKeys("s/"); len(n) != 0 || bal.Fresh.Value != 4 {
		t.Fatalf("after recovering with the newer key set: %d pending, %s fresh; want none and the 4 the bank signed", len(n), bal.Fresh)
	}
}

// mustPub is the coin key of the wallet's planchet idx.
func mustPub(t *testing.T, w *Wallet, idx uint64) []byte {
	t.Helper()
	ps, err := ecash.DerivePlanchet(w.seed, idx)
	if err != nil {
		t.Fatal(err)
	}
	return ps.CoinPub()
}
