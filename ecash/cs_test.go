package ecash_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/edwards25519"

	"github.com/blindbank/blindbank/ecash"
)

// Property tests of the Clause Blind Schnorr cipher through its public API.
// The known-answer tests (GNU Taler's vector, every intermediate value) and
// the negative vectors are in cs_vectors_test.go.

// csWithdraw runs both rounds for one planchet with honest parties.
func csWithdraw(tb testing.TB, sk *ecash.CSPrivateKey, seed [32]byte, msg []byte) (ecash.CSBlindedMessage, ecash.CSBlindSignature, ecash.CSSignature) {
	tb.Helper()
	nonce := ecash.CSWithdrawNonce(seed)
	r := sk.DeriveR(nonce)
	m, st, err := sk.PublicKey().BlindWithR(seed, r, msg)
	if err != nil {
		tb.Fatal(err)
	}
	if m.Nonce != nonce {
		tb.Fatal("blinded message carries another nonce")
	}
	bs, err := sk.SignBlinded(m)
	if err != nil {
		tb.Fatal(err)
	}
	sig, err := st.Finalize(bs)
	if err != nil {
		tb.Fatal(err)
	}
	return m, bs, sig
}

func randomBytes(tb testing.TB, n int) []byte {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return b
}

func TestCSRoundTrip(t *testing.T) {
	var clauses [2]int
	for i := range 200 {
		sk, err := ecash.GenerateCSKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		// Keys survive their encodings.
		sk2, err := ecash.ParseCSPrivateKey(sk.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		pk, err := ecash.ParseCSPublicKey(sk.PublicKey().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sk2.PublicKey().Bytes(), pk.Bytes()) || pk.Cipher() != ecash.CipherCS {
			t.Fatal("key encodings do not round-trip")
		}
		seed := [32]byte(randomBytes(t, 32))
		msg := randomBytes(t, i%97) // includes the empty message
		m, bs, sig := csWithdraw(t, sk, seed, msg)
		clauses[bs.B]++
		if err := pk.Verify(msg, sig.Bytes()); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		// The byte-level methods (DenomPrivateKey.BlindSign and
		// BlindState.Unblind shapes) give the same results.
		bsBytes, err := sk2.BlindSign(m.Bytes())
		if err != nil || !bytes.Equal(bsBytes, bs.Bytes()) {
			t.Fatalf("BlindSign = %x, %v; want %x", bsBytes, err, bs.Bytes())
		}
		_, st, err := pk.BlindWithR(seed, sk2.DeriveR(m.Nonce), msg)
		if err != nil {
			t.Fatal(err)
		}
		sigBytes, err := st.Unblind(bsBytes)
		if err != nil || !bytes.Equal(sigBytes, sig.Bytes()) {
			t.Fatalf("Unblind = %x, %v; want %x", sigBytes, err, sig.Bytes())
		}
		// Every encoding round-trips through its decoder.
		if got, err := ecash.ParseCSSignature(sig.Bytes()); err != nil || got != sig {
			t.Fatalf("signature: %v", err)
		}
		if got, err := ecash.ParseCSBlindedMessage(m.Bytes()); err != nil || got != m {
			t.Fatalf("blinded message: %v", err)
		}
		if got, err := ecash.ParseCSBlindSignature(bs.Bytes()); err != nil || got != bs {
			t.Fatalf("blind signature: %v", err)
		}
		r := sk.DeriveR(m.Nonce)
		if got, err := ecash.ParseCSRValues(r.Bytes()); err != nil || got != r {
			t.Fatalf("R values: %v", err)
		}
	}
	if clauses[0] == 0 || clauses[1] == 0 {
		t.Errorf("clauses chosen %v: both must occur", clauses)
	}
}

// TestCSPlanchet withdraws CS coins for the project's planchets: the nonce
// and the blinding come from the planchet's blind seed, the message is the
// coin public key, and everything is deterministic, so a wallet that
// crashed can redo the withdraw and the bank answers the same.
func TestCSPlanchet(t *testing.T) {
	sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	nonces := map[ecash.CSNonce]bool{}
	for i := range uint64(16) {
		ps, err := ecash.DerivePlanchet(seed(6), i)
		if err != nil {
			t.Fatal(err)
		}
		m1, bs1, sig1 := csWithdraw(t, sk, ps.BlindSeed, ps.CoinPub())
		m2, bs2, sig2 := csWithdraw(t, sk, ps.BlindSeed, ps.CoinPub())
		if m1 != m2 || bs1 != bs2 || sig1 != sig2 {
			t.Fatalf("planchet %d: a repeated withdraw differs", i)
		}
		if err := sk.PublicKey().Verify(ps.CoinPub(), sig1.Bytes()); err != nil {
			t.Fatal(err)
		}
		if nonces[m1.Nonce] {
			t.Fatalf("planchet %d repeats a nonce", i)
		}
		nonces[m1.Nonce] = true
		coin := ecash.Coin{Pub: ps.CoinPub(), Sig: sig1.Bytes()}
		if dec, err := ecash.DecodeCoin(coin.Encode()); err != nil || !bytes.Equal(dec.Sig, coin.Sig) {
			t.Fatalf("a CS coin does not survive the coin encoding: %v", err)
		}
	}
}

func TestCSTampering(t *testing.T) {
	sk, err := ecash.GenerateCSKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ecash.GenerateCSKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk := sk.PublicKey()
	seed := [32]byte(randomBytes(t, 32))
	msg := []byte("coin public key, or any message")
	nonce := ecash.CSWithdrawNonce(seed)
	m, st, err := pk.BlindWithR(seed, sk.DeriveR(nonce), msg)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := sk.SignBlinded(m)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := st.Finalize(bs)
	if err != nil {
		t.Fatal(err)
	}
	sigBytes := sig.Bytes()

	t.Run("signature bits", func(t *testing.T) {
		for i := range len(sigBytes) * 8 {
			bad := bytes.Clone(sigBytes)
			bad[i/8] ^= 1 << (i % 8)
			if err := pk.Verify(msg, bad); !errors.Is(err, ecash.ErrBadSignature) {
				t.Fatalf("bit %d flipped: %v", i, err)
			}
		}
	})
	t.Run("message", func(t *testing.T) {
		if err := pk.Verify(append(bytes.Clone(msg), 0), sigBytes); !errors.Is(err, ecash.ErrBadSignature) {
			t.Fatalf("longer message: %v", err)
		}
		if err := pk.Verify(flip(msg, 3), sigBytes); !errors.Is(err, ecash.ErrBadSignature) {
			t.Fatalf("flipped message: %v", err)
		}
	})
	t.Run("key", func(t *testing.T) {
		if err := other.PublicKey().Verify(msg, sigBytes); !errors.Is(err, ecash.ErrBadSignature) {
			t.Fatalf("other key: %v", err)
		}
	})
	t.Run("blind signature s", func(t *testing.T) {
		for i := range 32 * 8 {
			bad := bs
			bad.S[i/8] ^= 1 << (i % 8)
			if _, err := st.Finalize(bad); !errors.Is(err, ecash.ErrBadSignature) {
				t.Fatalf("s bit %d flipped: %v", i, err)
			}
		}
	})
	t.Run("other clause", func(t *testing.T) {
		bad := bs
		bad.B ^= 1
		if _, err := st.Finalize(bad); !errors.Is(err, ecash.ErrBadSignature) {
			t.Fatalf("b flipped: %v", err)
		}
		bad.B = 2
		if _, err := st.Finalize(bad); !errors.Is(err, ecash.ErrBadSignature) {
			t.Fatalf("b = 2: %v", err)
		}
	})
	t.Run("challenge", func(t *testing.T) {
		// The bank answers a challenge changed in transit; the wallet notices.
		for i := range 2 {
			bad := m
			bad.C[i][0] ^= 1
			bbs, err := sk.SignBlinded(bad)
			if err != nil {
				t.Fatal(err)
			}
			if bbs.B != uint8(i) {
				continue // the untouched clause was answered: still valid
			}
			if _, err := st.Finalize(bbs); !errors.Is(err, ecash.ErrBadSignature) {
				t.Fatalf("c%d tampered: %v", i, err)
			}
		}
	})
	t.Run("signer key", func(t *testing.T) {
		obs, err := other.SignBlinded(m)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Finalize(obs); !errors.Is(err, ecash.ErrBadSignature) {
			t.Fatalf("answer under another key: %v", err)
		}
	})
	t.Run("R values refused", func(t *testing.T) {
		// The identity and a point of order 2 (y = -1). Points of mixed
		// order pass here and are caught by Finalize (TestCSTaggedR).
		order2, _ := hex.DecodeString("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
		good := sk.DeriveR(nonce)
		for name, p := range map[string][]byte{
			"identity": edwards25519.NewIdentityPoint().Bytes(),
			"order 2":  order2,
		} {
			for i := range 2 {
				bad := good
				copy(bad[i][:], p)
				if _, st, err := pk.BlindWithR(seed, bad, msg); !errors.Is(err, ecash.ErrMalformed) || st != nil {
					t.Errorf("R%d = %s: %v", i, name, err)
				}
			}
		}
	})
	t.Run("R values", func(t *testing.T) {
		// R values for another nonce: blinding succeeds, the answer for the
		// real nonce does not unblind.
		_, st2, err := pk.BlindWithR(seed, sk.DeriveR(ecash.CSNonce{1}), msg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st2.Finalize(bs); !errors.Is(err, ecash.ErrBadSignature) {
			t.Fatalf("wrong R values: %v", err)
		}
	})
}

// TestCSSameChallengeSameAnswer: the signer is deterministic, so answering
// the same (nonce, c0, c1) again reveals nothing new. This is what makes a
// retried withdraw safe to answer.
func TestCSSameChallengeSameAnswer(t *testing.T) {
	sk, err := ecash.GenerateCSKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	reloaded, err := ecash.ParseCSPrivateKey(sk.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	m, bs, _ := csWithdraw(t, sk, [32]byte(randomBytes(t, 32)), []byte("m"))
	for range 3 {
		again, err := reloaded.SignBlinded(m)
		if err != nil || again != bs {
			t.Fatalf("second answer %x, %v; first %x", again.Bytes(), err, bs.Bytes())
		}
		if sk.DeriveR(m.Nonce) != reloaded.DeriveR(m.Nonce) {
			t.Fatal("DeriveR is not a function of the key and nonce")
		}
	}
}

// TestCSNonceReuseLeaksKey shows why the bank must lock each nonce to the
// first challenge pair it answers. The answers to two different challenge
// pairs under the same nonce use the same r_b (r is a function of key and
// nonce) and the same clause b (also a function of key and nonce):
//
//	s  = r_b + c_b·x,  s~ = r_b + c~_b·x   =>   x = (s - s~) / (c_b - c~_b)
//
// A client can therefore extract the denomination private key with two
// requests and then mint coins at will. The two requests need not even be
// "malicious": the same nonce with a different coin key (or different
// blinding) is enough.
func TestCSNonceReuseLeaksKey(t *testing.T) {
	sk, err := ecash.GenerateCSKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pk := sk.PublicKey()
	seed := [32]byte(randomBytes(t, 32))
	r := sk.DeriveR(ecash.CSWithdrawNonce(seed))

	// Two honest-looking blindings of two different coin keys, same nonce.
	m1, _, err := pk.BlindWithR(seed, r, []byte("coin key one"))
	if err != nil {
		t.Fatal(err)
	}
	m2, _, err := pk.BlindWithR(seed, r, []byte("coin key two"))
	if err != nil {
		t.Fatal(err)
	}
	if m1.Nonce != m2.Nonce || m1.C == m2.C {
		t.Fatal("want one nonce, two challenge pairs")
	}
	a1, err := sk.SignBlinded(m1)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := sk.SignBlinded(m2)
	if err != nil {
		t.Fatal(err)
	}
	if a1.B != a2.B {
		t.Fatal("the clause depends only on key and nonce; it cannot differ")
	}
	sc := func(b [32]byte) *edwards25519.Scalar {
		s, err := new(edwards25519.Scalar).SetCanonicalBytes(b[:])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	num := new(edwards25519.Scalar).Subtract(sc(a1.S), sc(a2.S))
	den := new(edwards25519.Scalar).Subtract(sc(m1.C[a1.B]), sc(m2.C[a1.B]))
	x := new(edwards25519.Scalar).Multiply(num, new(edwards25519.Scalar).Invert(den))

	stolen, err := ecash.ParseCSPrivateKey(x.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stolen.Bytes(), sk.Bytes()) || !bytes.Equal(stolen.PublicKey().Bytes(), pk.Bytes()) {
		t.Fatal("the algebra above did not recover the key")
	}
	// With the key, the client signs coins the bank never saw.
	_, _, forged := csWithdraw(t, stolen, [32]byte(randomBytes(t, 32)), []byte("counterfeit coin"))
	if err := pk.Verify([]byte("counterfeit coin"), forged.Bytes()); err != nil {
		t.Fatalf("forged coin rejected: %v", err)
	}
}

// csFuzzSeeds returns the positive and negative encodings of
// testdata/ecash/cs-vectors.json for one decoder.
func csFuzzSeeds(f *testing.F, field, decoder string) [][]byte {
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "ecash", "cs-vectors.json"))
	if err != nil {
		f.Fatal(err)
	}
	var file struct {
		Vectors  []map[string]string `json:"vectors"`
		Negative []struct {
			Decoder  string `json:"decoder"`
			Encoding string `json:"encoding"`
		} `json:"negative"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	for _, v := range file.Vectors {
		b, err := hex.DecodeString(v[field])
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	for _, n := range file.Negative {
		if n.Decoder == decoder {
			b, err := hex.DecodeString(n.Encoding)
			if err != nil {
				f.Fatal(err)
			}
			seeds = append(seeds, b)
		}
	}
	if len(seeds) == 0 {
		f.Fatalf("no seeds for %s", decoder)
	}
	return seeds
}

// checkCSDecode holds a decoder to the package's decoder rules: no panic
// (the fuzzer catches that), success re-encodes to the input, failure
// returns the zero value and an error wrapping the sentinel.
func checkCSDecode[T comparable](t *testing.T, in []byte, got T, enc func(T) []byte, err, sentinel error) {
	t.Helper()
	var zero T
	if err != nil {
		if got != zero {
			t.Fatalf("failed decode returned %v", got)
		}
		if !errors.Is(err, sentinel) {
			t.Fatalf("error %v does not wrap %v", err, sentinel)
		}
		return
	}
	if out := enc(got); !bytes.Equal(out, in) {
		t.Fatalf("decoded %x re-encodes to %x", in, out)
	}
}

func FuzzCSPublicKey(f *testing.F) {
	for _, s := range csFuzzSeeds(f, "public_key", "public-key") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pk, err := ecash.ParseCSPublicKey(b)
		checkCSDecode(t, b, pk, (*ecash.CSPublicKey).Bytes, err, ecash.ErrBadKey)
	})
}

func FuzzCSPrivateKey(f *testing.F) {
	for _, s := range csFuzzSeeds(f, "private_key", "private-key") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, err := ecash.ParseCSPrivateKey(b)
		checkCSDecode(t, b, sk, (*ecash.CSPrivateKey).Bytes, err, ecash.ErrBadKey)
		if err == nil {
			if _, err := ecash.ParseCSPublicKey(sk.PublicKey().Bytes()); err != nil {
				t.Fatalf("public key of a valid private key refused: %v", err)
			}
		}
	})
}

func FuzzCSRValues(f *testing.F) {
	for _, s := range csFuzzSeeds(f, "r_values", "r-values") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ecash.ParseCSRValues(b)
		checkCSDecode(t, b, r, ecash.CSRValues.Bytes, err, ecash.ErrMalformed)
	})
}

func FuzzCSBlindedMessage(f *testing.F) {
	for _, s := range csFuzzSeeds(f, "blinded_message", "blinded-message") {
		f.Add(s)
	}
	sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ecash.ParseCSBlindedMessage(b)
		checkCSDecode(t, b, m, ecash.CSBlindedMessage.Bytes, err, ecash.ErrMalformed)
		// The signer accepts exactly what the decoder accepts, and its
		// answer is itself well-formed.
		ans, serr := sk.BlindSign(b)
		if (err == nil) != (serr == nil) {
			t.Fatalf("decoder says %v, signer says %v", err, serr)
		}
		if serr == nil {
			if _, err := ecash.ParseCSBlindSignature(ans); err != nil {
				t.Fatalf("signer's answer refused: %v", err)
			}
		}
	})
}

func FuzzCSBlindSignature(f *testing.F) {
	for _, s := range csFuzzSeeds(f, "blind_signature", "blind-signature") {
		f.Add(s)
	}
	sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		f.Fatal(err)
	}
	ps, err := ecash.DerivePlanchet(bytes.Repeat([]byte{6}, 32), 0)
	if err != nil {
		f.Fatal(err)
	}
	_, st, err := sk.PublicKey().BlindWithR(ps.BlindSeed, sk.DeriveR(ecash.CSWithdrawNonce(ps.BlindSeed)), ps.CoinPub())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		bs, err := ecash.ParseCSBlindSignature(b)
		checkCSDecode(t, b, bs, ecash.CSBlindSignature.Bytes, err, ecash.ErrMalformed)
		sig, uerr := st.Unblind(b)
		if uerr != nil {
			if sig != nil || !errors.Is(uerr, ecash.ErrBadSignature) {
				t.Fatalf("Unblind failed with %x, %v", sig, uerr)
			}
			return
		}
		if err != nil {
			t.Fatal("Unblind accepted what the decoder refuses")
		}
		if err := sk.PublicKey().Verify(ps.CoinPub(), sig); err != nil {
			t.Fatalf("Unblind returned a signature that does not verify: %v", err)
		}
	})
}

func FuzzCSSignature(f *testing.F) {
	for _, s := range csFuzzSeeds(f, "signature", "signature") {
		f.Add(s)
	}
	sk, err := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		f.Fatal(err)
	}
	ps, err := ecash.DerivePlanchet(bytes.Repeat([]byte{6}, 32), 0)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sig, err := ecash.ParseCSSignature(b)
		checkCSDecode(t, b, sig, ecash.CSSignature.Bytes, err, ecash.ErrMalformed)
		verr := sk.PublicKey().Verify(ps.CoinPub(), b)
		if verr != nil && !errors.Is(verr, ecash.ErrBadSignature) {
			t.Fatalf("Verify error %v does not wrap ErrBadSignature", verr)
		}
		if verr == nil && err != nil {
			t.Fatal("Verify accepted what the decoder refuses")
		}
	})
}

// A CS withdraw of one coin: two rounds between wallet and bank.
func Example_clauseBlindSchnorr() {
	// Bank: a denomination key (use crypto/rand.Reader in production).
	bank, _ := ecash.GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	denom, _ := ecash.ParseCSPublicKey(bank.PublicKey().Bytes()) // from the key set

	// Wallet: a planchet from its seed.
	ps, _ := ecash.DerivePlanchet(bytes.Repeat([]byte{6}, 32), 0)

	// Round 1: the wallet sends the planchet's nonce, the bank answers R0, R1.
	nonce := ecash.CSWithdrawNonce(ps.BlindSeed)
	r := bank.DeriveR(nonce)

	// Round 2: the wallet blinds its coin key and sends c0 || c1 || nonce;
	// the bank locks the nonce to these challenges, then signs.
	blinded, state, err := denom.BlindWithR(ps.BlindSeed, r, ps.CoinPub())
	if err != nil {
		panic(err)
	}
	answer, err := bank.BlindSign(blinded.Bytes())
	if err != nil {
		panic(err)
	}

	// The wallet unblinds (and verifies) the coin signature.
	sig, err := state.Unblind(answer)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(blinded.Bytes()), len(answer), len(sig), denom.Verify(ps.CoinPub(), sig) == nil)
	// Output: 96 33 64 true
}
