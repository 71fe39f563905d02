package bank_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/ecash"
)

// recoupEnv is a bank with two denominations, cheap (EUR:0.01) and dear,
// free of fees, on an in-memory store, with one customer account.
type recoupEnv struct {
	t           *testing.T
	now         time.Time
	b           *bank.Bank
	s           *pebblestore.Store
	keys        *bank.Keys
	cheap, dear bank.DenomKey
	acct        uint64
	acctKey     ed25519.PrivateKey
	seed        []byte // the customer's wallet seed
}

// newRecoupEnv makes the bank; wrap, if not nil, wraps every denomination
// private key (to count its signatures). The account holds credit.
func newRecoupEnv(t *testing.T, cipher ecash.Cipher, dear uint64, credit uint64, wrap func(ecash.DenomPrivateKey) ecash.DenomPrivateKey) *recoupEnv {
	t.Helper()
	e := &recoupEnv{t: t, now: time.Unix(1_800_000_000, 0)}
	var specs []bank.DenomSpec
	for _, v := range []uint64{1, dear} {
		specs = append(specs, bank.DenomSpec{Value: ecash.Amount{Currency: "EUR", Value: v}, Cipher: cipher})
	}
	keys, err := bank.GenerateKeys(bank.KeyConfig{Currency: "EUR", Denoms: specs}, e.now.Add(-time.Hour), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		for i := range keys.Denoms {
			keys.Denoms[i].Private = wrap(keys.Denoms[i].Private)
		}
	}
	// The store judges a commit's NotAfter by the bank's clock, as it
	// does in production (both the process's).
	if e.s, err = pebblestore.Open("bank", pebblestore.Options{FS: vfs.NewMem(), Now: func() time.Time { return e.now }}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.s.Close() })
	e.keys = keys
	e.b = bank.New(e.s, keys, func() time.Time { return e.now }, nil)
	e.b.SetKeyFileEditor((&keyFile{keys}).edit)
	if err := e.b.PublishKeySet(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, d := range keys.Denoms {
		if d.Value.Value == 1 {
			e.cheap = d
		} else {
			e.dear = d
		}
	}
	e.seed = make([]byte, 32)
	rand.Read(e.seed)
	if e.acctKey, err = ecash.DeriveAccountKey(e.seed); err != nil {
		t.Fatal(err)
	}
	if e.acct, err = e.b.OpenAccount(t.Context(), "customer", e.acctKey.Public().(ed25519.PublicKey), false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.Credit(t.Context(), e.acct, ecash.Amount{Currency: "EUR", Value: credit}, "", ""); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *recoupEnv) balance() int64 {
	e.t.Helper()
	a, err := e.s.Account(e.t.Context(), e.acct)
	if err != nil {
		e.t.Fatal(err)
	}
	return a.Balance
}

// revokeDear revokes the dear denomination and returns it as served now.
func (e *recoupEnv) revokeDear() ecash.Denomination {
	e.t.Helper()
	if _, err := e.b.RevokeDenomination(e.t.Context(), e.dear.ID.String()); err != nil {
		e.t.Fatal(err)
	}
	ks, _ := e.b.KeySet()
	d, err := ks.Denomination(e.dear.ID)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// planchet blinds planchet index of the wallet seed for d, its first
// round answered by key.
func (e *recoupEnv) planchet(index uint64, d ecash.Denomination, key ecash.DenomPrivateKey) (ecash.Planchet, ecash.PlanchetSecret, ecash.BlindState) {
	e.t.Helper()
	ps, err := ecash.DerivePlanchet(e.seed, index)
	if err != nil {
		e.t.Fatal(err)
	}
	var prepared []byte
	if r := ps.PrepareRequest(d); r != nil {
		if prepared, err = key.Prepare(r); err != nil {
			e.t.Fatal(err)
		}
	}
	p, st, err := ps.Blind(d, prepared)
	if err != nil {
		e.t.Fatal(err)
	}
	return p, ps, st
}

// outputs makes n planchets of the cheap denomination from index on.
func (e *recoupEnv) outputs(index uint64, n int) []ecash.Planchet {
	out := make([]ecash.Planchet, n)
	for i := range out {
		out[i], _, _ = e.planchet(index+uint64(i), e.cheap.Denomination, e.cheap.Private)
	}
	return out
}

// withdraw withdraws the planchets from the account.
func (e *recoupEnv) withdraw(ps []ecash.Planchet) [][]byte {
	e.t.Helper()
	ks, _ := e.b.KeySet()
	w := &ecash.WithdrawRequest{Account: e.acct, CreatedAt: e.now, Planchets: ps}
	rand.Read(w.Nonce[:])
	amount, err := ks.WithdrawAmount(w)
	if err != nil {
		e.t.Fatal(err)
	}
	sigs, err := e.b.Withdraw(e.t.Context(), w.Body(), ecash.SignWithdraw(e.acctKey, w, amount))
	if err != nil {
		e.t.Fatal(err)
	}
	return sigs
}

// coin withdraws planchet index as a coin of d.
func (e *recoupEnv) coin(index uint64, d bank.DenomKey) (ecash.Coin, ecash.PlanchetSecret) {
	e.t.Helper()
	p, ps, st := e.planchet(index, d.Denomination, d.Private)
	sig, err := st.Unblind(e.withdraw([]ecash.Planchet{p})[0])
	if err != nil {
		e.t.Fatal(err)
	}
	return ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig}, ps
}

// swap swaps coins of the given values for outputs.
func (e *recoupEnv) swap(coins []ecash.Coin, keys []ed25519.PrivateKey, values []ecash.Amount, outs []ecash.Planchet) ([][]byte, error) {
	e.t.Helper()
	req, err := ecash.NewSwapRequest(coins, keys, values, outs, e.now)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.b.Swap(e.t.Context(), req.Body())
}

// TestRecoupRefusesCoinIssuedUnderAnotherDenomination: whoever holds the
// key of a revoked denomination (it leaked) forges a coin of it from a
// planchet whose blinded message they had the bank sign as a coin of the
// cheapest denomination, by a withdrawal or as a swap's output. The issued
// index knows that blinded message, but its recorded signature is not the
// revoked key's: the recoup is refused (ErrRecoupUnknown) and neither
// credits the revoked value nor re-issues it. An honest coin of the
// revoked denomination, withdrawn before the revocation, is still
// recouped.
func TestRecoupRefusesCoinIssuedUnderAnotherDenomination(t *testing.T) {
	for _, cipher := range []ecash.Cipher{ecash.CipherCS, ecash.CipherRSA} {
		for _, via := range []string{"withdrawal", "swap"} {
			t.Run(cipher.String()+"/"+via, func(t *testing.T) {
				const dearValue = 4
				e := newRecoupEnv(t, cipher, dearValue, 2*dearValue, nil)
				ctx := t.Context()
				honest, honestSecret := e.coin(0, e.dear)
				dear := e.revokeDear()
				leaked := e.dear.Private

				// The forged coin: blinded for the revoked key, signed with
				// it. Its blinded message must also be a well-formed
				// planchet of the cheap key (RSA: below its modulus).
				var forged ecash.Coin
				var secret ecash.PlanchetSecret
				var blinded []byte
				for i := uint64(100); ; i++ {
					p, ps, st := e.planchet(i, dear, leaked)
					if _, err := e.cheap.Private.LockKey(p.Blinded); err != nil {
						continue
					}
					bs, err := leaked.BlindSign(p.Blinded)
					if err != nil {
						t.Fatal(err)
					}
					sig, err := st.Unblind(bs)
					if err != nil {
						t.Fatal(err)
					}
					forged, secret, blinded = ecash.Coin{Denom: dear.ID, Pub: ps.CoinPub(), Sig: sig}, ps, p.Blinded
					break
				}
				asCheap := []ecash.Planchet{{Denom: e.cheap.ID, Blinded: blinded}}
				var outs []ecash.Planchet
				switch via {
				case "withdrawal":
					e.withdraw(asCheap)
				case "swap":
					c, ps := e.coin(1, e.cheap)
					if _, err := e.swap([]ecash.Coin{c}, []ed25519.PrivateKey{ps.CoinKey}, []ecash.Amount{e.cheap.Value}, asCheap); err != nil {
						t.Fatal(err)
					}
					outs = e.outputs(200, dearValue)
				}
				before := e.balance()
				r, err := e.b.Recoup(ctx, ecash.NewRecoupRequest(forged, secret.CoinKey, dear.Value, secret.BlindSeed, outs, e.now).Encode())
				if !errors.Is(err, bank.ErrRecoupUnknown) {
					t.Fatalf("recoup of a forged coin whose blinded message was issued as %s: %v (%+v), want ErrRecoupUnknown", e.cheap.Value, err, r)
				}
				if after := e.balance(); after != before {
					t.Fatalf("the refused recoup moved the balance from %d to %d", before, after)
				}

				// The honest coin of the revoked denomination.
				if _, err := e.b.Recoup(ctx, ecash.NewRecoupRequest(honest, honestSecret.CoinKey, dear.Value, honestSecret.BlindSeed, nil, e.now).Encode()); err != nil {
					t.Fatalf("recoup of an honest withdrawn coin: %v", err)
				}
				if after := e.balance(); after != before+dearValue {
					t.Fatalf("the honest recoup left the balance at %d, want %d", after, before+dearValue)
				}
			})
		}
	}
}
