package ecash

import (
	"bytes"
	"errors"
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
