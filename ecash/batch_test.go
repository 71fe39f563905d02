package ecash

// Tests of batch verification. In package ecash so that they can craft the
// signatures a hostile wallet could: ones off by a point of small order,
// which the one-by-one and the batch rules must treat alike.

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"filippo.io/edwards25519"
)

// detRand is a deterministic stream for the batch weights in tests (a real
// caller passes crypto/rand).
func detRand(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return rand.NewChaCha8(s)
}

type batchFixture struct {
	perms []DepositPermission
	keys  []DenomPublicKey
	// coinKeys and csKeys let a test re-sign what it changes.
	coinKeys []ed25519.PrivateKey
	csKeys   map[DenomPublicKey]*CSPrivateKey
}

// newBatchFixture builds n coins and their deposit permissions: CS coins
// under two denomination keys and, with rsa set, every third coin RSA.
func newBatchFixture(tb testing.TB, n int, rsa bool) *batchFixture {
	tb.Helper()
	rnd := detRand(1)
	var cs [2]*CSPrivateKey
	for i := range cs {
		k, err := GenerateCSKey(rnd)
		if err != nil {
			tb.Fatal(err)
		}
		cs[i] = k
	}
	var rsaKey DenomPrivateKey
	if rsa {
		sk, _, _ := rfc9474Key(tb)
		k, err := newRSAPrivate(sk)
		if err != nil {
			tb.Fatal(err)
		}
		rsaKey = k
	}
	f := &batchFixture{csKeys: map[DenomPublicKey]*CSPrivateKey{}}
	for i := range n {
		var sk DenomPrivateKey = cs[i%2]
		if rsa && i%3 == 2 {
			sk = rsaKey
		}
		if c, ok := sk.(*CSPrivateKey); ok {
			f.csKeys[sk.Public()] = c
		}
		ps, err := DerivePlanchet(bytes.Repeat([]byte{9}, 32), uint64(i))
		if err != nil {
			tb.Fatal(err)
		}
		d := Denomination{ID: HashOf(sk.Public().Bytes()), Key: sk.Public(), Value: MustParseAmount("EUR:1")}
		pl, st, err := ps.Blind(d, prepareFor(tb, sk, ps))
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
		dp := DepositPermission{
			Coin: Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig}, PaymentHash: HashOf([]byte("order")),
			MerchantAccount: 7, Value: d.Value, Timestamp: time.UnixMilli(1_700_000_000_000),
		}
		dp.CoinSig = ed25519.Sign(ps.CoinKey, dp.Body())
		f.perms = append(f.perms, dp)
		f.keys = append(f.keys, sk.Public())
		f.coinKeys = append(f.coinKeys, ps.CoinKey)
	}
	return f
}

// prepareFor runs a CS planchet's first round; nil for RSA.
func prepareFor(tb testing.TB, sk DenomPrivateKey, ps PlanchetSecret) []byte {
	tb.Helper()
	req := sk.Public().PrepareRequest(ps.BlindSeed)
	if req == nil {
		return nil
	}
	r, err := sk.Prepare(req)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// singles is the one-by-one verdict on the fixture.
func (f *batchFixture) singles() bool {
	for i := range f.perms {
		if f.perms[i].Coin.Verify(f.keys[i]) != nil || f.perms[i].Verify() != nil {
			return false
		}
	}
	return true
}

func TestVerifyPermissionsAcceptsValid(t *testing.T) {
	for _, n := range []int{1, 2, 4, 9, 40} {
		for _, rsa := range []bool{false, true} {
			f := newBatchFixture(t, n, rsa)
			if !f.singles() {
				t.Fatalf("n=%d rsa=%v: the fixture does not verify one by one", n, rsa)
			}
			if !VerifyPermissions(detRand(uint64(n)), f.perms, f.keys) {
				t.Errorf("n=%d rsa=%v: batch refuses valid coins and permissions", n, rsa)
			}
		}
	}
}

func TestVerifyPermissionsRejectsEachCorruption(t *testing.T) {
	const n = 7
	base := newBatchFixture(t, n, true)
	corruptions := map[string]func(f *batchFixture, i int){
		"coin signature": func(f *batchFixture, i int) {
			f.perms[i].Coin.Sig = bytes.Clone(f.perms[i].Coin.Sig)
			f.perms[i].Coin.Sig[len(f.perms[i].Coin.Sig)-5] ^= 1
		},
		"coin signature R": func(f *batchFixture, i int) {
			f.perms[i].Coin.Sig = bytes.Clone(f.perms[i].Coin.Sig)
			f.perms[i].Coin.Sig[3] ^= 4
		},
		"permission signature s": func(f *batchFixture, i int) {
			f.perms[i].CoinSig = bytes.Clone(f.perms[i].CoinSig)
			f.perms[i].CoinSig[40] ^= 1
		},
		"permission signature R": func(f *batchFixture, i int) {
			f.perms[i].CoinSig = bytes.Clone(f.perms[i].CoinSig)
			f.perms[i].CoinSig[0] ^= 1
		},
		"signed value": func(f *batchFixture, i int) { f.perms[i].Value = MustParseAmount("EUR:2") },
		"merchant":     func(f *batchFixture, i int) { f.perms[i].MerchantAccount++ },
		"denomination key": func(f *batchFixture, i int) {
			f.keys[i] = f.keys[(i+1)%n]
		},
		"coin key": func(f *batchFixture, i int) {
			// Another coin's key, with a valid permission under it: the
			// bank's signature no longer covers the key.
			j := (i + 1) % n
			f.perms[i].Coin.Pub = f.perms[j].Coin.Pub
			f.perms[i].CoinSig = ed25519.Sign(f.coinKeys[j], f.perms[i].Body())
		},
	}
	for name, corrupt := range corruptions {
		for i := range n {
			f := &batchFixture{perms: append([]DepositPermission(nil), base.perms...), keys: append([]DenomPublicKey(nil), base.keys...), coinKeys: base.coinKeys}
			corrupt(f, i)
			if f.singles() {
				continue // e.g. swapping between keys of one RSA coin: no change
			}
			if VerifyPermissions(detRand(uint64(i)), f.perms, f.keys) {
				t.Errorf("%s of coin %d: batch accepts what one-by-one refuses", name, i)
			}
		}
	}
}

func TestVerifyPermissionsBadInput(t *testing.T) {
	f := newBatchFixture(t, 3, false)
	if VerifyPermissions(detRand(0), nil, nil) {
		t.Error("empty batch accepted")
	}
	if VerifyPermissions(detRand(0), f.perms, f.keys[:2]) {
		t.Error("batch with a missing key accepted")
	}
	if VerifyPermissions(detRand(0), f.perms, []DenomPublicKey{f.keys[0], nil, f.keys[2]}) {
		t.Error("batch with a nil key accepted")
	}
	if VerifyPermissions(failingReader{}, f.perms, f.keys) {
		t.Error("batch accepted without random weights")
	}
	short := append([]DepositPermission(nil), f.perms...)
	short[1].CoinSig = short[1].CoinSig[:63]
	short[2].Coin.Pub = short[2].Coin.Pub[:31]
	if VerifyPermissions(detRand(0), short, f.keys) {
		t.Error("batch with truncated fields accepted")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

// torsion8 is a point of order 8 (the encoding ZIP-215's test cases use).
func torsion8(tb testing.TB) *edwards25519.Point {
	tb.Helper()
	b, _ := hex.DecodeString("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// torsionCS signs msg under k with R' = r·G + T for T of small order: what a
// wallet gets by adding T while blinding. The cofactorless equation refuses
// it; the rule accepts it.
func torsionCS(k *CSPrivateKey, msg []byte, t *edwards25519.Point) []byte {
	r := new(edwards25519.Scalar)
	r.SetUniformBytes(bytes.Repeat([]byte{42}, 64))
	R := new(edwards25519.Point).ScalarBaseMult(r)
	R.Add(R, t)
	var sig CSSignature
	copy(sig.R[:], R.Bytes())
	ph := csPrehash(&sig.R, msg)
	c := csFDH(&ph, &k.pub)
	copy(sig.S[:], new(edwards25519.Scalar).MultiplyAdd(c, &k.x, r).Bytes())
	return sig.Bytes()
}

// torsionEd25519 signs msg with the Ed25519 key priv but with R = r·G + T.
func torsionEd25519(priv ed25519.PrivateKey, msg []byte, t *edwards25519.Point) []byte {
	h := sha512.Sum512(priv.Seed())
	a, _ := new(edwards25519.Scalar).SetBytesWithClamping(h[:32])
	r := new(edwards25519.Scalar)
	r.SetUniformBytes(bytes.Repeat([]byte{7}, 64))
	R := new(edwards25519.Point).ScalarBaseMult(r)
	R.Add(R, t)
	pub := priv.Public().(ed25519.PublicKey)
	k := ed25519Challenge(R.Bytes(), pub, msg)
	return append(R.Bytes(), new(edwards25519.Scalar).MultiplyAdd(k, a, r).Bytes()...)
}

// TestTorsionAgreement holds the one-by-one and batch rules to the same
// verdict on signatures off by points of small order, for every such point:
// accepted when the equation holds up to the point (and then only through
// the cofactored path), refused when the point was added after signing.
func TestTorsionAgreement(t *testing.T) {
	t8 := torsion8(t)
	tp := edwards25519.NewIdentityPoint()
	for order := range 8 {
		tp.Add(tp, t8) // (order+1)·T8: every point of small order but the identity, then the identity
		name := fmt.Sprintf("%d·T8", order+1)

		f := newBatchFixture(t, 6, false)
		cs := f.csKeys[f.keys[0]]
		f.perms[0].Coin.Sig = torsionCS(cs, f.perms[0].Coin.Pub, tp)
		f.perms[1].CoinSig = torsionEd25519(f.coinKeys[1], f.perms[1].Body(), tp)
		if order < 7 {
			// Not the identity: the strict equations refuse both.
			if ed25519.Verify(f.perms[1].Coin.Pub, f.perms[1].Body(), f.perms[1].CoinSig) {
				t.Fatalf("%s: crypto/ed25519 accepts a torsioned R", name)
			}
		}
		if err := f.perms[0].Coin.Verify(f.keys[0]); err != nil {
			t.Errorf("%s: CS signature with torsion in R' refused alone: %v", name, err)
		}
		if err := f.perms[1].Verify(); err != nil {
			t.Errorf("%s: permission with torsion in R refused alone: %v", name, err)
		}
		for seed := range uint64(16) {
			if !VerifyPermissions(detRand(seed), f.perms, f.keys) {
				t.Errorf("%s: batch refuses what one-by-one accepts (seed %d)", name, seed)
			}
		}

		// The point added after signing: the challenge no longer matches.
		g := newBatchFixture(t, 6, false)
		addTorsion := func(sig []byte) []byte {
			R, err := new(edwards25519.Point).SetBytes(sig[:32])
			if err != nil {
				t.Fatal(err)
			}
			return append(R.Add(R, tp).Bytes(), sig[32:]...)
		}
		if order == 7 {
			continue // adding the identity changes nothing
		}
		g.perms[2].Coin.Sig = addTorsion(g.perms[2].Coin.Sig)
		g.perms[3].CoinSig = addTorsion(g.perms[3].CoinSig)
		if g.perms[2].Coin.Verify(g.keys[2]) == nil || g.perms[3].Verify() == nil {
			t.Errorf("%s: a signature with torsion added after signing verifies alone", name)
		}
		for seed := range uint64(16) {
			if VerifyPermissions(detRand(seed), g.perms, g.keys) {
				t.Errorf("%s: batch accepts a signature with torsion added after signing (seed %d)", name, seed)
			}
		}
	}
}

// smallOrderEncodings are the 14 encodings of points of small order that
// ZIP-215's test cases combine: the 8 points' canonical encodings and 6
// non-canonical ones.
func smallOrderEncodings(tb testing.TB) [][]byte {
	tb.Helper()
	var out [][]byte
	t8, p := torsion8(tb), edwards25519.NewIdentityPoint()
	for range 8 {
		out = append(out, p.Bytes())
		p = new(edwards25519.Point).Add(p, t8)
	}
	for _, h := range []string{
		"0100000000000000000000000000000000000000000000000000000000000080", // identity, x sign set
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // order 2, x sign set
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p: order 4
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = p, x sign set
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f", // y = p+1: identity
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", // y = p+1, x sign set
	} {
		b, _ := hex.DecodeString(h)
		if _, err := new(edwards25519.Point).SetBytes(b); err != nil {
			tb.Fatalf("%s does not decode: %v", h, err)
		}
		out = append(out, b)
	}
	return out
}

// TestZIP215Cases checks the cofactored equation against ZIP-215's 196
// cases (every small-order A and R, s = 0, message "Zcash"), all of which
// ZIP-215 accepts; the permission rule then refuses every one of them for
// its small-order key.
func TestZIP215Cases(t *testing.T) {
	enc := smallOrderEncodings(t)
	sig := make([]byte, 64)
	for _, a := range enc {
		for _, r := range enc {
			copy(sig, r)
			pa, err := new(edwards25519.Point).SetBytes(a)
			if err != nil {
				t.Fatal(err)
			}
			if !verifyZIP215(pa, a, []byte("Zcash"), sig) {
				t.Errorf("ZIP-215 case A=%x R=%x refused", a, r)
			}
			if verifyPermissionSig(a, []byte("Zcash"), sig) == nil {
				t.Errorf("permission under the small-order key %x accepted", a)
			}
			var b batch
			if b.addEd25519(a, []byte("Zcash"), sig) {
				t.Errorf("batch takes a permission under the small-order key %x", a)
			}
		}
	}
}

// TestBatchMatchesSingles draws random sets of valid and corrupted items
// and compares the batch's verdict with the one-by-one verdict.
func TestBatchMatchesSingles(t *testing.T) {
	base := newBatchFixture(t, 10, true)
	t8 := torsion8(t)
	rng := rand.New(rand.NewPCG(1, 2))
	verdicts := map[bool]int{}
	for trial := range 200 {
		f := &batchFixture{perms: append([]DepositPermission(nil), base.perms...), keys: append([]DenomPublicKey(nil), base.keys...)}
		n := 1 + rng.IntN(len(f.perms))
		f.perms, f.keys = f.perms[:n], f.keys[:n]
		for i := range n {
			switch rng.IntN(8) {
			case 0:
				f.perms[i].CoinSig = bytes.Clone(f.perms[i].CoinSig)
				f.perms[i].CoinSig[rng.IntN(64)] ^= byte(1 << rng.IntN(8))
			case 1:
				f.perms[i].Coin.Sig = bytes.Clone(f.perms[i].Coin.Sig)
				f.perms[i].Coin.Sig[rng.IntN(len(f.perms[i].Coin.Sig))] ^= byte(1 << rng.IntN(8))
			case 2:
				f.perms[i].CoinSig = torsionEd25519(base.coinKeys[i], f.perms[i].Body(), t8)
			case 3:
				if cs, ok := base.csKeys[f.keys[i]]; ok {
					f.perms[i].Coin.Sig = torsionCS(cs, f.perms[i].Coin.Pub, t8)
				}
			}
		}
		if got, want := VerifyPermissions(detRand(uint64(trial)), f.perms, f.keys), f.singles(); got != want {
			t.Fatalf("trial %d (%d coins): batch says %v, one by one %v", trial, n, got, want)
		}
		verdicts[f.singles()]++
	}
	if verdicts[true] < 10 || verdicts[false] < 10 {
		t.Errorf("trials too one-sided to compare: %v", verdicts)
	}
}

// BenchmarkVerifyPermissions compares a batch with one-by-one verification
// of CS coins and their permissions.
func BenchmarkVerifyPermissions(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8, 64} {
		f := newBatchFixture(b, n, false)
		rnd := detRand(0)
		b.Run(fmt.Sprintf("batch/%d", n), func(b *testing.B) {
			for b.Loop() {
				if !VerifyPermissions(rnd, f.perms, f.keys) {
					b.Fatal("refused")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N*n), "µs/coin")
		})
		b.Run(fmt.Sprintf("single/%d", n), func(b *testing.B) {
			for b.Loop() {
				if !f.singles() {
					b.Fatal("refused")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N*n), "µs/coin")
		})
	}
}

// FuzzVerifyPermissions feeds hostile coin and permission signatures (and
// coin keys) to the batch: it must not panic, and must agree with
// verifying one by one.
func FuzzVerifyPermissions(f *testing.F) {
	base := newBatchFixture(f, 3, true) // coin 2 is RSA
	t8 := torsion8(f)
	f.Add(uint8(0), base.perms[0].CoinSig)
	f.Add(uint8(4), base.perms[1].Coin.Sig)         // coin 1's coin signature
	f.Add(uint8(8), []byte(base.perms[2].Coin.Pub)) // coin 2's key
	f.Add(uint8(0), torsionEd25519(base.coinKeys[0], base.perms[0].Body(), t8))
	f.Add(uint8(4), torsionCS(base.csKeys[base.keys[1]], base.perms[1].Coin.Pub, t8))
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		fx := &batchFixture{perms: append([]DepositPermission(nil), base.perms...), keys: base.keys}
		dp := &fx.perms[int(which)%3] // which: the coin, then the field
		switch which / 3 % 3 {
		case 0:
			dp.CoinSig = b
		case 1:
			dp.Coin.Sig = b
		case 2:
			dp.Coin.Pub = b
		}
		if got, want := VerifyPermissions(detRand(uint64(which)), fx.perms, fx.keys), fx.singles(); got != want {
			t.Fatalf("batch says %v, one by one %v", got, want)
		}
	})
}

// TestSmallOrderRAndMixedOrderKeys covers what ZIP-215 accepts beyond the
// cofactorless rule under keys the permission rule allows: R itself of
// small order, in each of its 14 encodings (s = k·a), and a coin key with a
// small-order component (A = a·G + T). One by one and in a batch, all are
// accepted alike.
func TestSmallOrderRAndMixedOrderKeys(t *testing.T) {
	base := newBatchFixture(t, 3, false)
	priv := base.coinKeys[1]
	h := sha512.Sum512(priv.Seed())
	a, _ := new(edwards25519.Scalar).SetBytesWithClamping(h[:32])
	for _, r := range smallOrderEncodings(t) {
		f := &batchFixture{perms: append([]DepositPermission(nil), base.perms...), keys: base.keys}
		dp := &f.perms[1]
		k := ed25519Challenge(r, dp.Coin.Pub, dp.Body())
		dp.CoinSig = append(bytes.Clone(r), new(edwards25519.Scalar).Multiply(k, a).Bytes()...)
		if err := dp.Verify(); err != nil {
			t.Errorf("R = %x (small order), s = k·a: refused alone: %v", r, err)
		}
		if !VerifyPermissions(detRand(1), f.perms, f.keys) {
			t.Errorf("R = %x (small order), s = k·a: refused in a batch", r)
		}
	}

	// A mixed-order coin key, as a wallet could choose for itself; the
	// bank's CS signature covers it as it covers any key.
	cs := base.csKeys[base.keys[0]]
	A := new(edwards25519.Point).ScalarBaseMult(a)
	A.Add(A, torsion8(t))
	pub := A.Bytes()
	if err := CheckEd25519Key(pub); err != nil {
		t.Fatalf("mixed-order key refused: %v", err)
	}
	f := &batchFixture{perms: append([]DepositPermission(nil), base.perms...), keys: base.keys}
	dp := &f.perms[0]
	dp.Coin.Pub = pub
	dp.Coin.Sig = torsionCS(cs, pub, edwards25519.NewIdentityPoint())
	r := new(edwards25519.Scalar)
	r.SetUniformBytes(bytes.Repeat([]byte{11}, 64))
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	k := ed25519Challenge(R, pub, dp.Body())
	dp.CoinSig = append(R, new(edwards25519.Scalar).MultiplyAdd(k, a, r).Bytes()...)
	single := f.singles()
	for seed := range uint64(8) {
		if got := VerifyPermissions(detRand(seed), f.perms, f.keys); got != single || !got {
			t.Errorf("mixed-order coin key: batch %v, one by one %v; want both true", got, single)
		}
	}
}

// TestCanonicalY compares canonicalY with the arithmetic definition (the
// low 255 bits, little-endian, below 2^255 - 19) on the encodings at the
// boundary and on random ones.
func TestCanonicalY(t *testing.T) {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	ref := func(b []byte) bool {
		be := make([]byte, 32)
		for i := range 32 {
			be[31-i] = b[i]
		}
		be[0] &= 0x7f
		return new(big.Int).SetBytes(be).Cmp(p) < 0
	}
	check := func(b []byte) {
		if got, want := canonicalY(b), ref(b); got != want {
			t.Errorf("canonicalY(%x) = %v, want %v", b, got, want)
		}
	}
	for d := int64(-40); d < 40; d++ { // around p, both sign bits
		y := new(big.Int).Add(p, big.NewInt(d))
		be := y.FillBytes(make([]byte, 32))
		le := make([]byte, 32)
		for i := range 32 {
			le[i] = be[31-i]
		}
		check(le)
		le[31] |= 0x80
		check(le)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if rng.IntN(2) == 0 { // near the top: mostly 0xff bytes
			for i := 1; i < 31; i++ {
				b[i] = 0xff
			}
			b[31] |= 0x7f
		}
		check(b)
	}
}
