package bank

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// batchCoins withdraws n CS coins and signs a deposit permission for each.
func batchCoins(t *testing.T, n int) ([]ecash.DepositPermission, []*DenomKey) {
	t.Helper()
	sk, err := ecash.GenerateCSKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	d := &DenomKey{Denomination: ecash.Denomination{ID: ecash.HashOf(sk.PublicKey().Bytes()), Key: sk.PublicKey(), Value: eur1}, Private: sk}
	seed := bytes.Repeat([]byte{3}, 32)
	perms := make([]ecash.DepositPermission, n)
	keys := make([]*DenomKey, n)
	for i := range n {
		ps, err := ecash.DerivePlanchet(seed, uint64(i))
		if err != nil {
			t.Fatal(err)
		}
		prepared, err := sk.Prepare(d.Key.PrepareRequest(ps.BlindSeed))
		if err != nil {
			t.Fatal(err)
		}
		pl, st, err := ps.Blind(d.Denomination, prepared)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := sk.BlindSign(pl.Blinded)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := st.Unblind(bs)
		if err != nil {
			t.Fatal(err)
		}
		perms[i] = ecash.DepositPermission{Coin: ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig}, PaymentHash: ecash.HashOf([]byte("p")), MerchantAccount: 9, Value: eur1, Timestamp: start}
		perms[i].CoinSig = ed25519.Sign(ps.CoinKey, perms[i].Body())
		keys[i] = d
	}
	return perms, keys
}

// TestVerifyBatches checks a request split over several batches: every
// batch must pass, and a bad coin fails exactly the batch holding it.
func TestVerifyBatches(t *testing.T) {
	for _, n := range []int{1, BatchSize, 3*BatchSize + 5} {
		perms, keys := batchCoins(t, n)
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			if got := verifyBatches(perms, keys); got != nil {
				t.Fatalf("valid coins: batches %v failed", got)
			}
			for _, i := range []int{0, n / 2, n - 1} {
				bad := append([]ecash.DepositPermission(nil), perms...)
				bad[i].CoinSig = bytes.Clone(bad[i].CoinSig)
				bad[i].CoinSig[10] ^= 1
				got := verifyBatches(bad, keys)
				if len(got) != 1 || got[0].lo > i || i >= got[0].hi || got[0].hi-got[0].lo > BatchSize {
					t.Errorf("a bad permission at %d of %d: failed batches %v, want the one batch holding it", i, n, got)
				}
			}
		})
	}
}
