package ecash_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// Shared fixtures. RSA key generation is the slow part of this package's
// tests, so every test binary generates its keys once.

var (
	rsaOnce sync.Once
	rsaKeys [2]ecash.DenomPrivateKey
	rsaErr  error
)

// testRSAKey returns one of two 2048-bit denomination keys (i is 0 or 1),
// generated once per test binary.
func testRSAKey(tb testing.TB, i int) ecash.DenomPrivateKey {
	tb.Helper()
	rsaOnce.Do(func() {
		var wg sync.WaitGroup
		var errs [2]error
		for j := range rsaKeys {
			wg.Go(func() {
				rsaKeys[j], errs[j] = ecash.RSAScheme{}.GenerateKey(rand.Reader, 2048)
			})
		}
		wg.Wait()
		rsaErr = errors.Join(errs[:]...)
	})
	if rsaErr != nil {
		tb.Fatal(rsaErr)
	}
	return rsaKeys[i]
}

// seed returns 32 bytes all equal to b: readable fixed seeds.
func seed(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func edKey(b byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(seed(b)) }

func edPub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func x25519Key(tb testing.TB, b byte) *ecdh.PrivateKey {
	tb.Helper()
	k, err := ecdh.X25519().NewPrivateKey(seed(b))
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// Fixed clock for tests: all times are arguments in ecash.
var (
	t0        = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	t0Millis  = t0.Add(678 * time.Millisecond)
	eur5      = ecash.MustParseAmount("EUR:5")
	eur10     = ecash.MustParseAmount("EUR:10")
	testOrder = "order-0001"
)

// world is a complete small bank: a key set with two denominations, a wallet
// with two coins, a payment request and a payment.
type world struct {
	master, signing, merchant, account ed25519.PrivateKey
	hpke                               *ecdh.PrivateKey
	denomKeys                          []ecash.DenomPrivateKey
	ks                                 *ecash.KeySet
	secrets                            []ecash.PlanchetSecret
	coins                              []ecash.Coin
	req                                *ecash.PaymentRequest
	pay                                *ecash.Payment
}

func newKeySet(tb testing.TB, master, signing ed25519.PrivateKey, hpke *ecdh.PrivateKey, keys []ecash.DenomPrivateKey, values []ecash.Amount) *ecash.KeySet {
	tb.Helper()
	ks := &ecash.KeySet{
		Currency:   "EUR",
		MasterPub:  edPub(master),
		SigningPub: edPub(signing),
		HPKEPub:    hpke.PublicKey().Bytes(),
		IssuedAt:   t0,
	}
	for i, k := range keys {
		ks.Denominations = append(ks.Denominations, ecash.Denomination{
			ID:            ecash.DenominationID(values[i], k.Public()),
			Value:         values[i],
			Key:           k.Public(),
			WithdrawStart: t0,
			WithdrawEnd:   t0.Add(365 * 24 * time.Hour),
			DepositEnd:    t0.Add(3 * 365 * 24 * time.Hour),
		})
	}
	ks.Sign(master)
	return ks
}

// withdrawCoin runs the blind-signature protocol for planchet ps.
func withdrawCoin(tb testing.TB, ps ecash.PlanchetSecret, d ecash.Denomination, sk ecash.DenomPrivateKey) ecash.Coin {
	tb.Helper()
	pl, st, err := ps.Blind(d, nil)
	if err != nil {
		tb.Fatal(err)
	}
	bs, err := sk.BlindSign(pl.Blinded)
	if err != nil {
		tb.Fatal(err)
	}
	sig, err := st.Unblind(bs)
	if err != nil {
		tb.Fatal(err)
	}
	return ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig}
}

var (
	worldOnce sync.Once
	worldVal  *world
)

// newWorld builds the shared world once; tests must not mutate it (use the
// clone helpers).
func newWorld(tb testing.TB) *world {
	tb.Helper()
	k0, k1 := testRSAKey(tb, 0), testRSAKey(tb, 1)
	worldOnce.Do(func() {
		w := &world{
			master: edKey(1), signing: edKey(2), merchant: edKey(3), account: edKey(4),
			hpke:      x25519Key(tb, 5),
			denomKeys: []ecash.DenomPrivateKey{k0, k1},
		}
		w.ks = newKeySet(tb, w.master, w.signing, w.hpke, w.denomKeys, []ecash.Amount{eur5, ecash.MustParseAmount("EUR:2")})
		for i := range 2 {
			ps, err := ecash.DerivePlanchet(seed(6), uint64(i))
			if err != nil {
				tb.Fatal(err)
			}
			w.secrets = append(w.secrets, ps)
			w.coins = append(w.coins, withdrawCoin(tb, ps, w.ks.Denominations[0], k0))
		}
		w.req = &ecash.PaymentRequest{
			BankID:          w.ks.BankID(),
			MerchantAccount: 7,
			MerchantPub:     edPub(w.merchant),
			OrderID:         testOrder,
			Amount:          eur10,
			SummaryHash:     ecash.HashOf([]byte("2 x coffee")),
			CreatedAt:       t0Millis,
			ExpiresAt:       t0Millis.Add(15 * time.Minute),
		}
		pay, err := ecash.NewPayment(w.req, w.coins,
			[]ed25519.PrivateKey{w.secrets[0].CoinKey, w.secrets[1].CoinKey},
			[]ecash.Amount{eur5, eur5}, t0Millis.Add(time.Minute))
		if err != nil {
			tb.Fatal(err)
		}
		w.pay = pay
		worldVal = w
	})
	if worldVal == nil {
		tb.Fatal("world fixture failed")
	}
	return worldVal
}

// receipt returns a fresh signed receipt for the world's payment.
func (w *world) receipt() *ecash.DepositReceipt {
	r := &ecash.DepositReceipt{
		PaymentHash:     w.req.Hash(),
		MerchantAccount: w.req.MerchantAccount,
		Total:           w.req.Amount,
		Coins:           []ecash.Hash{w.coins[0].ID(), w.coins[1].ID()},
		DepositedAt:     t0Millis.Add(2 * time.Minute),
		SignerPub:       edPub(w.signing),
	}
	r.Sig = ecash.SignBody(w.signing, r.Body())
	return r
}

// proof returns a fresh signed double-spend proof for the world's first coin.
func (w *world) proof() *ecash.DoubleSpendProof {
	p := &ecash.DoubleSpendProof{
		Earlier:    clonePermission(w.pay.Permissions[0]),
		DetectedAt: t0Millis.Add(time.Hour),
		SignerPub:  edPub(w.signing),
	}
	p.BankSig = ecash.SignBody(w.signing, p.Body())
	return p
}

func (w *world) withdrawRequest() *ecash.WithdrawRequest {
	wr := &ecash.WithdrawRequest{Account: 42, CreatedAt: t0Millis}
	copy(wr.Nonce[:], "nonce-0123456789")
	for _, ps := range w.secrets {
		pl, _, err := ps.Blind(w.ks.Denominations[0], nil)
		if err != nil {
			panic(err)
		}
		wr.Planchets = append(wr.Planchets, pl)
	}
	return wr
}

func clonePermission(dp ecash.DepositPermission) ecash.DepositPermission {
	dp.Coin = cloneCoin(dp.Coin)
	dp.CoinSig = bytes.Clone(dp.CoinSig)
	return dp
}

func cloneCoin(c ecash.Coin) ecash.Coin {
	c.Pub = bytes.Clone(c.Pub)
	c.Sig = bytes.Clone(c.Sig)
	return c
}

func cloneRequest(r *ecash.PaymentRequest) *ecash.PaymentRequest {
	c := *r
	c.MerchantPub = bytes.Clone(r.MerchantPub)
	return &c
}

// flip returns a copy of b with bit 0 of byte i inverted.
func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// isZero reports whether v is the zero value of its type (nil pointers and
// slices included): decoders must return nothing partial on failure.
func isZero(v any) bool {
	if v == nil {
		return true
	}
	return reflect.ValueOf(v).IsZero()
}
