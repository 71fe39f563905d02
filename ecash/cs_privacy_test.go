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
