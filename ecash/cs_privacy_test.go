package ecash

// Tests of what a bank can learn from a CS withdrawal: nothing that links
// the coin to it (unlinkability), whatever R values it sends.

import (
	"bytes"
	"errors"
	"math/big"
	"testing"

	"filippo.io/edwards25519"
)

// TestCSTaggedR: a bank may add a point T of small order to R_b, hoping to
// find T again at deposit in the coin's R'_b = R_b + alpha_b·G + beta_b·X,
// which Verify's cofactored rule accepts. Blinding takes such R values
// (ParseCSRValues checks no subgroup) and Finalize refuses the answer, for
// each of the seven T. A tag in the clause the bank does not choose never
// reaches the coin.
func TestCSTaggedR(t *testing.T) {
	sk, err := GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	pk := sk.PublicKey()
	msg := bytes.Repeat([]byte{9}, 32)
	for i, T := range csTorsion(t)[1:] {
		blindSeed := [32]byte{byte(i)}
		nonce := CSWithdrawNonce(blindSeed)
		b := sk.chooseB(&nonce)
		for _, tagged := range []uint8{b, 1 - b} {
			r := sk.DeriveR(nonce)
			R, err := new(edwards25519.Point).SetBytes(r[tagged][:])
			if err != nil {
				t.Fatal(err)
			}
			copy(r[tagged][:], R.Add(R, T).Bytes())
			blinded, state, err := pk.Blind(blindSeed, r.Bytes(), msg)
			if err != nil {
				t.Fatalf("T%d in R%d: blinding refused: %v", i+1, tagged, err)
			}
			m, err := ParseCSBlindedMessage(blinded)
			if err != nil {
				t.Fatal(err)
			}
			bs, err := sk.SignBlinded(m)
			if err != nil {
				t.Fatal(err)
			}
			st := state.(*CSBlindState)
			sig, err := st.Finalize(bs)
			if tagged != b {
				if err != nil {
					t.Errorf("T%d in the unchosen R%d: %v", i+1, tagged, err)
				} else if _, err := csPrimeOrderPoint(sig.R[:]); err != nil {
					t.Errorf("T%d in the unchosen R%d: the coin's R': %v", i+1, tagged, err)
				}
				continue
			}
			if !errors.Is(err, ErrBadSignature) {
				t.Errorf("T%d in the chosen R%d: Finalize = %v, want ErrBadSignature", i+1, b, err)
			}
			// The coin Finalize refused: tagged, and valid by the cofactored
			// rule, so only Finalize's exact equation keeps it out.
			s, err := new(edwards25519.Scalar).SetCanonicalBytes(bs.S[:])
			if err != nil {
				t.Fatal(err)
			}
			coin := CSSignature{R: st.rBlind[b]}
			copy(coin.S[:], s.Add(s, &st.alpha[b]).Bytes())
			if err := pk.verify(msg, &coin); err != nil {
				t.Errorf("T%d in R%d: the tagged coin fails the cofactored rule: %v", i+1, b, err)
			}
			if _, err := csPrimeOrderPoint(coin.R[:]); err == nil {
				t.Errorf("T%d in R%d: the coin's R' carries no tag", i+1, b)
			}
		}
	}
}

// TestCSBlindingScalarsUniform: a clamped 32-byte value reduced mod L lies in
// S = {2^254 + 8k mod L : k < 2^251}, half of the scalars, and a bank can
// test alpha_b = s' − s and beta_b = c_b − c' for membership in it, for
// every pair of a withdrawal it answered and a coin deposited: with clamped
// secrets the true pair always passes and a quarter of the others do.
// blindbank's secrets must fall in S about half the time, as any uniform
// scalar does; the inputs are fixed, so the count is too.
func TestCSBlindingScalarsUniform(t *testing.T) {
	L, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	two254, two251 := new(big.Int).Lsh(big.NewInt(1), 254), new(big.Int).Lsh(big.NewInt(1), 251)
	inv8 := new(big.Int).ModInverse(big.NewInt(8), L)
	inS := func(s *edwards25519.Scalar) bool {
		le := s.Bytes()
		for i, j := 0, len(le)-1; i < j; i, j = i+1, j-1 {
			le[i], le[j] = le[j], le[i]
		}
		k := new(big.Int).Sub(new(big.Int).SetBytes(le), two254)
		k.Mul(k, inv8).Mod(k, L)
		return k.Cmp(two251) < 0
	}
	// The membership test itself: every clamped value is in S.
	for i := range 64 {
		var c edwards25519.Scalar
		csClampScalar(&c, bytes.Repeat([]byte{byte(i*37 + 1)}, 32))
		if !inS(&c) {
			t.Fatalf("clamped value %d not in S: the test is wrong", i)
		}
	}
	const n = 1024
	in := 0
	for i := range n {
		bseed := [32]byte{byte(i), byte(i >> 8)}
		alpha, beta := csBlindingSecrets(&bseed)
		for j := range 2 {
			for _, s := range []*edwards25519.Scalar{&alpha[j], &beta[j]} {
				if inS(s) {
					in++
				}
			}
		}
	}
	if frac := float64(in) / (4 * n); frac < 0.45 || frac > 0.55 {
		t.Errorf("%.3f of the blinding scalars in the clamped set S, want about 0.5 (clamped: 1)", frac)
	}
}

// TestCSBlindingBoundToKey: the wallet blinds one planchet under two keys
// (a refused withdrawal's indices reused for another value, restore's
// scan), and the bank chooses R. A bank that answers the planchet's nonce
// with the same R under both keys, and signs under the second with the
// first key's r (an answer Finalize accepts), keeps the first blinded
// message, which it never signed. Were the blinding the same under both
// keys, the coin's unblinding (alpha = s' − s, beta = c_b − c') would carry
// that message's challenge over, and the bank could tell the coin's
// withdrawal among all of them. The key in the blinding seed stops it: the
// same attack, run against a blinding seed without the key, links every
// coin, which shows the test's linker works.
func TestCSBlindingBoundToKey(t *testing.T) {
	sk1, err := GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{1}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	sk2, err := GenerateCSKey(bytes.NewReader(bytes.Repeat([]byte{2}, 64)))
	if err != nil {
		t.Fatal(err)
	}
	pk1, pk2 := sk1.PublicKey(), sk2.PublicKey()

	// The bank's answer under X2, made with key 1's r for the nonce.
	evilSign := func(m CSBlindedMessage) CSBlindSignature {
		var c edwards25519.Scalar
		b := sk2.chooseB(&m.Nonce)
		if _, err := c.SetCanonicalBytes(m.C[b][:]); err != nil {
			t.Fatal(err)
		}
		r := sk1.deriveR(csSaltWithdrawR, &m.Nonce)
		s := new(edwards25519.Scalar).MultiplyAdd(&c, &sk2.x, &r.r[b])
		out := CSBlindSignature{B: b}
		copy(out.S[:], s.Bytes())
		return out
	}
	// The blinding as it would be with the key left out of the seed.
	unkeyed := func(pk *CSPublicKey, blindSeed [32]byte, r CSRValues, msg []byte) (CSBlindedMessage, *CSBlindState, error) {
		R, err := r.points()
		if err != nil {
			return CSBlindedMessage{}, nil, err
		}
		bseed := [32]byte(csKDF(32, []byte(csSaltBSeed), blindSeed[:], r[0][:], r[1][:]))
		st := pk.blind(&bseed, CSWithdrawNonce(blindSeed), R, msg)
		return st.blinded, st, nil
	}
	keyed := func(pk *CSPublicKey, blindSeed [32]byte, r CSRValues, msg []byte) (CSBlindedMessage, *CSBlindState, error) {
		return pk.BlindWithR(blindSeed, r, msg)
	}

	type withdrawal struct {
		r       CSRValues
		refused CSBlindedMessage // under X1, never signed
		signed  CSBlindedMessage // under X2
		bs      CSBlindSignature
	}
	type coin struct {
		msg []byte
		sig CSSignature
	}
	// links reports whether the coin's unblinding, taken as from w,
	// predicts w's refused challenge.
	links := func(w withdrawal, c coin) bool {
		Rb, err := largeOrderPoint(w.r[w.bs.B][:])
		if err != nil {
			t.Fatal(err)
		}
		sp, err1 := new(edwards25519.Scalar).SetCanonicalBytes(c.sig.S[:])
		s, err2 := new(edwards25519.Scalar).SetCanonicalBytes(w.bs.S[:])
		cb, err3 := new(edwards25519.Scalar).SetCanonicalBytes(w.signed.C[w.bs.B][:])
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatal(err)
		}
		ph := csPrehash(&c.sig.R, c.msg)
		alpha := new(edwards25519.Scalar).Subtract(sp, s)
		beta := new(edwards25519.Scalar).Subtract(cb, csFDH(&ph, pk2))
		r1 := new(edwards25519.Point).ScalarBaseMult(alpha)
		r1.Add(r1, new(edwards25519.Point).ScalarMult(beta, &pk1.p))
		r1.Add(r1, Rb)
		enc := [32]byte(r1.Bytes())
		ph1 := csPrehash(&enc, c.msg)
		predicted := new(edwards25519.Scalar).Add(csFDH(&ph1, pk1), beta)
		return bytes.Equal(predicted.Bytes(), w.refused.C[w.bs.B][:])
	}

	const n = 8
	for _, tc := range []struct {
		name  string
		blind func(*CSPublicKey, [32]byte, CSRValues, []byte) (CSBlindedMessage, *CSBlindState, error)
		want  int // coins linked to their withdrawal
	}{
		{"key in the seed", keyed, 0},
		{"key left out (the linker works)", unkeyed, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ws []withdrawal
			var coins []coin
			for i := range n {
				blindSeed := [32]byte{0xaa, byte(i)}
				msg := bytes.Repeat([]byte{byte(0x40 + i)}, 32)
				R := sk1.DeriveR(CSWithdrawNonce(blindSeed)) // the same under both keys
				refused, _, err := tc.blind(pk1, blindSeed, R, msg)
				if err != nil {
					t.Fatal(err)
				}
				signed, st, err := tc.blind(pk2, blindSeed, R, msg)
				if err != nil {
					t.Fatal(err)
				}
				bs := evilSign(signed)
				sig, err := st.Finalize(bs)
				if err != nil {
					t.Fatalf("the wallet refused the bank's answer: %v", err)
				}
				ws = append(ws, withdrawal{R, refused, signed, bs})
				coins = append(coins, coin{msg, sig})
			}
			linked := 0
			for i, c := range coins {
				for j, w := range ws {
					if links(w, c) {
						if i != j {
							t.Errorf("coin %d linked to withdrawal %d", i, j)
						}
						linked++
					}
				}
			}
			if linked != tc.want {
				t.Errorf("%d of %d coins linked to their withdrawal, want %d", linked, n, tc.want)
			}
		})
	}
}
