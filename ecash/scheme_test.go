package ecash_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"math/big"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

func TestCipher(t *testing.T) {
	if ecash.CipherRSA.String() != "rsa" || ecash.Cipher(9).String() != "cipher(9)" {
		t.Error("Cipher.String")
	}
	s, err := ecash.SchemeFor(ecash.CipherRSA)
	if err != nil || s.Cipher() != ecash.CipherRSA {
		t.Fatalf("SchemeFor(rsa) = %v, %v", s, err)
	}
	if s, err := ecash.SchemeFor(0); !errors.Is(err, ecash.ErrUnknownCipher) || s != nil {
		t.Errorf("SchemeFor(0) = %v, %v", s, err)
	}
}

func TestRSABlindSignRoundTrip(t *testing.T) {
	t.Parallel()
	sk := testRSAKey(t, 0)
	pk := sk.Public()
	if pk.Cipher() != ecash.CipherRSA {
		t.Fatal("cipher")
	}
	ps, err := ecash.DerivePlanchet(seed(9), 0)
	if err != nil {
		t.Fatal(err)
	}
	d := ecash.Denomination{ID: ecash.DenominationID(eur5, pk), Value: eur5, Key: pk}

	pl, st, err := ps.Blind(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pl.Denom != d.ID || len(pl.Blinded) != 256 {
		t.Fatalf("planchet %x, %d bytes", pl.Denom, len(pl.Blinded))
	}
	// Blinding is a function of the planchet secret alone.
	pl2, st2, err := ps.Blind(d, nil)
	if err != nil || !bytes.Equal(pl.Blinded, pl2.Blinded) {
		t.Fatal("blinding is not deterministic")
	}
	// ... and differs between planchets.
	other, _ := ecash.DerivePlanchet(seed(9), 1)
	pl3, _, _ := other.Blind(d, nil)
	if bytes.Equal(pl.Blinded, pl3.Blinded) {
		t.Fatal("two planchets blind to the same bytes")
	}

	bs, err := sk.BlindSign(pl.Blinded)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := st.Unblind(bs)
	if err != nil {
		t.Fatal(err)
	}
	sig2, err := st2.Unblind(bs)
	if err != nil || !bytes.Equal(sig, sig2) {
		t.Fatal("unblinding with a recomputed state differs")
	}
	if len(sig) != 32+256 {
		t.Fatalf("coin signature of %d bytes", len(sig))
	}
	coin := ecash.Coin{Denom: d.ID, Pub: ps.CoinPub(), Sig: sig}
	if err := coin.Verify(pk); err != nil {
		t.Fatal(err)
	}

	// The coin signature is a standard RSA-PSS signature (SHA-384, salt 48)
	// over randomizer || coin public key.
	rsaPub := parseRSAPublic(t, pk.Bytes())
	msg := append(bytes.Clone(sig[:32]), coin.Pub...)
	h := sha512.Sum384(msg)
	if err := rsa.VerifyPSS(rsaPub, crypto.SHA384, h[:], sig[32:], &rsa.PSSOptions{SaltLength: 48, Hash: crypto.SHA384}); err != nil {
		t.Fatalf("rsa.VerifyPSS: %v", err)
	}

	// Key encodings round trip.
	pk2, err := ecash.RSAScheme{}.ParsePublicKey(pk.Bytes())
	if err != nil || !bytes.Equal(pk2.Bytes(), pk.Bytes()) {
		t.Fatalf("public key round trip: %v", err)
	}
	if err := coin.Verify(pk2); err != nil {
		t.Fatal(err)
	}
	sk2, err := ecash.RSAScheme{}.ParsePrivateKey(sk.Bytes())
	if err != nil || !bytes.Equal(sk2.Bytes(), sk.Bytes()) || !bytes.Equal(sk2.Public().Bytes(), pk.Bytes()) {
		t.Fatalf("private key round trip: %v", err)
	}
	bs2, err := sk2.BlindSign(pl.Blinded)
	if err != nil || !bytes.Equal(bs, bs2) {
		t.Fatal("RSA blind signing is not deterministic")
	}
}

func parseRSAPublic(tb testing.TB, der []byte) *rsa.PublicKey {
	tb.Helper()
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		tb.Fatal(err)
	}
	return k.(*rsa.PublicKey)
}

func TestRSARefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	coin := w.coins[0]
	pk := w.denomKeys[0].Public()
	otherPK := w.denomKeys[1].Public()

	bad := func(name string, c ecash.Coin, k ecash.DenomPublicKey, want error) {
		t.Helper()
		if err := c.Verify(k); !errors.Is(err, want) {
			t.Errorf("%s: Verify = %v, want %v", name, err, want)
		}
	}
	bad("wrong denomination key", coin, otherPK, ecash.ErrBadSignature)
	for _, i := range []int{0, 31, 32, 100, len(coin.Sig) - 1} {
		c := cloneCoin(coin)
		c.Sig = flip(c.Sig, i)
		bad("tampered signature", c, pk, ecash.ErrBadSignature)
	}
	c := cloneCoin(coin)
	c.Pub = flip(c.Pub, 0)
	bad("tampered coin key", c, pk, ecash.ErrBadSignature)
	c = cloneCoin(coin)
	c.Pub = c.Pub[:31]
	bad("short coin key", c, pk, ecash.ErrBadKey)
	c = cloneCoin(coin)
	c.Sig = c.Sig[:len(c.Sig)-1]
	bad("short signature", c, pk, ecash.ErrBadSignature)
	c = cloneCoin(coin)
	c.Sig = append(c.Sig, 0)
	bad("long signature", c, pk, ecash.ErrBadSignature)
	c = cloneCoin(coin)
	c.Sig = nil
	bad("no signature", c, pk, ecash.ErrBadSignature)
	// Another coin's signature does not transfer.
	c = cloneCoin(coin)
	c.Sig = w.coins[1].Sig
	bad("swapped signature", c, pk, ecash.ErrBadSignature)

	sk := w.denomKeys[0]
	for _, n := range []int{0, 1, 255, 257, 512} {
		if _, err := sk.BlindSign(make([]byte, n)); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("BlindSign of %d bytes: %v", n, err)
		}
	}
	// A blinded message >= N is refused too.
	if _, err := sk.BlindSign(bytes.Repeat([]byte{0xff}, 256)); !errors.Is(err, ecash.ErrMalformed) {
		t.Errorf("BlindSign of 0xff..ff: %v", err)
	}
	// LockKey (and LockKeyOf the public key, as a bank with a separate
	// signer checks) refuses the same, before anything is signed, and
	// locks nothing for RSA.
	for name, b := range map[string][]byte{"short": make([]byte, 255), "long": make([]byte, 257), "not below N": bytes.Repeat([]byte{0xff}, 256)} {
		if _, err := sk.LockKey(b); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("LockKey of a %s message: %v", name, err)
		}
		if _, err := ecash.LockKeyOf(pk, b); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("LockKeyOf of a %s message: %v", name, err)
		}
	}
	if lk, err := ecash.LockKeyOf(pk, append(make([]byte, 255), 1)); err != nil || lk != nil {
		t.Errorf("LockKeyOf a well-formed message: %x, %v", lk, err)
	}

	// Unblinding a wrong or malformed blind signature fails.
	ps, _ := ecash.DerivePlanchet(seed(9), 7)
	d := w.ks.Denominations[0]
	pl, st, err := ps.Blind(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	// pl.Blinded may exceed the other key's modulus, so the other key signs
	// a message with the top byte cleared.
	small := bytes.Clone(pl.Blinded)
	small[0] = 0
	wrongKeySig, err := w.denomKeys[1].BlindSign(small)
	if err != nil {
		t.Fatal(err)
	}
	otherPS, _ := ecash.DerivePlanchet(seed(9), 8)
	otherPl, _, _ := otherPS.Blind(d, nil)
	wrongMsgSig, err := sk.BlindSign(otherPl.Blinded)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"another key": wrongKeySig, "another message": wrongMsgSig} {
		if s, err := st.Unblind(b); !errors.Is(err, ecash.ErrBadSignature) || s != nil {
			t.Errorf("Unblind of a signature by %s: %v", name, err)
		}
	}
	good, _ := sk.BlindSign(pl.Blinded)
	for _, b := range [][]byte{nil, good[:255], append(bytes.Clone(good), 0), flip(good, 10)} {
		if s, err := st.Unblind(b); !errors.Is(err, ecash.ErrBadSignature) || s != nil {
			t.Errorf("Unblind of a bad signature (%d bytes): %v", len(b), err)
		}
	}
}

func TestRSAKeyRefusals(t *testing.T) {
	t.Parallel()
	s := ecash.RSAScheme{}
	for _, bits := range []int{1024, 2047, 2056 + 1, 8192} {
		if _, err := s.GenerateKey(rand.Reader, bits); !errors.Is(err, ecash.ErrBadKey) {
			t.Errorf("GenerateKey(%d): %v", bits, err)
		}
	}
	for _, b := range [][]byte{nil, {0x30, 0}, []byte("not a key")} {
		if k, err := s.ParsePublicKey(b); !errors.Is(err, ecash.ErrBadKey) || k != nil {
			t.Errorf("ParsePublicKey(%x): %v", b, err)
		}
		if k, err := s.ParsePrivateKey(b); !errors.Is(err, ecash.ErrBadKey) || k != nil {
			t.Errorf("ParsePrivateKey(%x): %v", b, err)
		}
	}
	// A small RSA key (built without GenerateKey's check) is refused on parse.
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&small.PublicKey)
	if _, err := s.ParsePublicKey(der); !errors.Is(err, ecash.ErrBadKey) {
		t.Errorf("1024-bit public key: %v", err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(small)
	if _, err := s.ParsePrivateKey(p8); !errors.Is(err, ecash.ErrBadKey) {
		t.Errorf("1024-bit private key: %v", err)
	}
	// A non-RSA key is refused.
	edDER, _ := x509.MarshalPKIXPublicKey(edPub(edKey(1)))
	if _, err := s.ParsePublicKey(edDER); !errors.Is(err, ecash.ErrBadKey) {
		t.Errorf("Ed25519 public key: %v", err)
	}
	edP8, _ := x509.MarshalPKCS8PrivateKey(edKey(1))
	if _, err := s.ParsePrivateKey(edP8); !errors.Is(err, ecash.ErrBadKey) {
		t.Errorf("Ed25519 private key: %v", err)
	}
	// Exponent other than 65537 is refused.
	pub := *parseRSAPublic(t, testRSAKey(t, 0).Public().Bytes())
	pub.E = 3
	e3, _ := x509.MarshalPKIXPublicKey(&pub)
	if _, err := s.ParsePublicKey(e3); !errors.Is(err, ecash.ErrBadKey) {
		t.Errorf("e=3 public key: %v", err)
	}
}

func TestDerivePlanchet(t *testing.T) {
	a, err := ecash.DerivePlanchet(seed(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := ecash.DerivePlanchet(seed(1), 0)
	if !a.CoinKey.Equal(a2.CoinKey) || a.BlindSeed != a2.BlindSeed {
		t.Fatal("not deterministic")
	}
	b, _ := ecash.DerivePlanchet(seed(1), 1)
	c, _ := ecash.DerivePlanchet(seed(2), 0)
	if a.CoinKey.Equal(b.CoinKey) || a.CoinKey.Equal(c.CoinKey) || a.BlindSeed == b.BlindSeed || a.BlindSeed == c.BlindSeed {
		t.Fatal("planchets collide")
	}
	if !bytes.Equal(a.CoinPub(), a.CoinKey[32:]) {
		t.Fatal("CoinPub is not the public half of CoinKey")
	}
	for _, n := range []int{0, 16, 31, 33, 64} {
		if _, err := ecash.DerivePlanchet(make([]byte, n), 0); !errors.Is(err, ecash.ErrBadKey) {
			t.Errorf("seed of %d bytes: %v", n, err)
		}
	}
	// The blinding stream is the ChaCha20 keystream: two readers agree and
	// reads of any size continue the same stream.
	key := []byte("a denomination key")
	r1, r2 := a.BlindingReader(key), a.BlindingReader(key)
	x := make([]byte, 100)
	y := make([]byte, 100)
	r1.Read(x)
	r2.Read(y[:7])
	r2.Read(y[7:])
	if !bytes.Equal(x, y) || bytes.Equal(x[:50], x[50:]) {
		t.Fatal("blinding stream")
	}
}

// TestRSACrossKeyUnlinkable: a planchet blinded under two RSA keys (a
// request refused, then sent again for another value; or a restore, which
// blinds each index under every key) must not let the bank, holding both
// private keys, link the spent coin to its withdrawal. With one blinding
// stream for every key it could: B1 = m·r^e1 never signed, B2 = m·r^e2
// signed; from the coin, m = σ^e2, then r = (B1/m)^d1 mod N1, and B2 =
// m·r^e2 mod N2 names the withdrawal. Each key now has its own stream.
func TestRSACrossKeyUnlinkable(t *testing.T) {
	sk1, sk2 := testRSAKey(t, 0), testRSAKey(t, 1)
	priv := func(sk ecash.DenomPrivateKey) *rsa.PrivateKey {
		k, err := x509.ParsePKCS8PrivateKey(sk.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		return k.(*rsa.PrivateKey)
	}
	k1, k2 := priv(sk1), priv(sk2)
	linked := 0
	for i := range uint64(8) {
		ps, err := ecash.DerivePlanchet(seed(3), i)
		if err != nil {
			t.Fatal(err)
		}
		d1 := ecash.Denomination{ID: ecash.DenominationID(eur5, sk1.Public()), Value: eur5, Key: sk1.Public()}
		d2 := ecash.Denomination{ID: ecash.DenominationID(eur5, sk2.Public()), Value: eur5, Key: sk2.Public()}
		p1, _, err := ps.Blind(d1, nil)
		if err != nil {
			t.Fatal(err)
		}
		p2, _, err := ps.Blind(d2, nil) // what withdrawCoin sends: blinding is deterministic
		if err != nil {
			t.Fatal(err)
		}
		coin := withdrawCoin(t, ps, d2, sk2)
		// The bank's attempt, from the coin (randomizer || σ) and B1.
		sigma := new(big.Int).SetBytes(coin.Sig[32:])
		m := new(big.Int).Exp(sigma, big.NewInt(int64(k2.E)), k2.N)
		mInv := new(big.Int).ModInverse(new(big.Int).Mod(m, k1.N), k1.N)
		if mInv == nil {
			continue
		}
		b1 := new(big.Int).SetBytes(p1.Blinded)
		r := new(big.Int).Exp(new(big.Int).Mod(new(big.Int).Mul(b1, mInv), k1.N), k1.D, k1.N)
		guess := new(big.Int).Exp(r, big.NewInt(int64(k2.E)), k2.N)
		guess.Mul(guess, m).Mod(guess, k2.N)
		if guess.Cmp(new(big.Int).SetBytes(p2.Blinded)) == 0 {
			linked++
		}
	}
	if linked > 0 {
		t.Fatalf("the bank links %d of 8 coins blinded under two keys to their withdrawals", linked)
	}
}
