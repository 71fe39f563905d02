package ecash

// Batch verification of coins and their permissions.
//
// A bank verifies two signatures for every coin it takes in: its own blind
// signature on the coin (CS or RSA) and the coin key's Ed25519 signature on
// the deposit, swap, credit or recoup permission. Checked one by one, each
// costs a double-scalar multiplication. VerifyPermissions checks a whole
// request's CS signatures and permissions with one multi-scalar
// multiplication, weighted by random 128-bit scalars z_i (the method of
// Bernstein et al., "High-speed high-security signatures", §5):
//
//	[8]( (Σ z_i·s_i)·G − Σ z_i·R_i − Σ (z_i·k_i)·A_i          permissions
//	     + (Σ z_j·s'_j)·G − Σ z_j·R'_j − Σ_X (Σ z_j·c'_j)·X )  CS coins
//	= 0
//
// The CS terms of one denomination share its key X, so a CS coin adds one
// point to the sum, a permission two.
//
// Batching is sound only if it accepts exactly what verifying one by one
// accepts, whoever crafted the signatures. With cofactorless equations it
// would not: a signature whose R is off by a point T of small order fails
// alone but passes a batch whenever z_i·T = 0, half the time for T of order
// two. Both rules are therefore cofactored, alone and in a batch:
//
//   - a permission verifies under ZIP-215 (the rules of Zcash and
//     ed25519consensus: R any encoding of a point, s canonical,
//     [8](s·G − R − k·A) = 0), and its coin key must be a canonical
//     encoding of a point not of small order (CheckEd25519Key);
//   - a CS signature verifies if R' is a canonical encoding of a point not
//     of small order, s' is canonical and [8](s'·G − c'·X − R') = 0.
//
// Every signature the stricter cofactorless equations accept passes these
// too (the single checks try them first, as the faster path); the ones only
// these accept differ by a point of small order, which a signer can only
// add to a signature it could make anyway. A batch that fails says nothing
// about which item failed: callers verify one by one then.
//
// Even one coin is cheaper to check as a batch of its two signatures (one
// multi-scalar multiplication instead of two double ones); from about eight
// coins on, a batch costs under half of checking one by one
// (BenchmarkVerifyPermissions).

import (
	"crypto/ed25519"
	"crypto/sha512"
	"fmt"
	"io"

	"filippo.io/edwards25519"
)

// VerifyPermissions reports whether every permission in perms verifies
// (DepositPermission.Verify) and every coin in them carries a valid
// signature under keys[i] (Coin.Verify), checking the CS signatures and all
// permissions in one batch (see above) and RSA signatures one by one. rnd
// supplies the batch's random weights: it must be a cryptographic source
// the signers cannot predict. False says only that something failed (or
// that rnd did): verify one by one to learn what.
func VerifyPermissions(rnd io.Reader, perms []DepositPermission, keys []DenomPublicKey) bool {
	if len(perms) == 0 || len(perms) != len(keys) {
		return false
	}
	b := batch{}
	for i := range perms {
		dp := &perms[i]
		if len(dp.Coin.Pub) != ed25519.PublicKeySize {
			return false
		}
		switch k := keys[i].(type) {
		case *CSPublicKey:
			if !b.addCS(k, dp.Coin.Pub, dp.Coin.Sig) {
				return false
			}
		default:
			if keys[i] == nil || keys[i].Verify(dp.Coin.Pub, dp.Coin.Sig) != nil {
				return false
			}
		}
		if !b.addEd25519(dp.Coin.Pub, dp.Body(), dp.CoinSig) {
			return false
		}
	}
	return b.verify(rnd)
}

// batch accumulates the terms of the batch equation, before the random
// weights: each signature's s (G's coefficient), its R, and its challenge
// with the point it multiplies.
type batch struct {
	s      []edwards25519.Scalar // per signature
	r      []*edwards25519.Point // per signature
	k      []edwards25519.Scalar // per signature: the challenge k_i or c'_j
	kPoint []int                 // per signature: index of its A_i or X in points
	points []*edwards25519.Point // the A_i and the distinct X
	xIndex map[*CSPublicKey]int  // X -> index in points
}

// addEd25519 adds a permission signature: ZIP-215 decoding of R and the
// key check of CheckEd25519Key on A.
func (b *batch) addEd25519(pub, msg, sig []byte) bool {
	if len(sig) != ed25519.SignatureSize {
		return false
	}
	a, err := largeOrderPoint(pub)
	if err != nil {
		return false
	}
	r, err := new(edwards25519.Point).SetBytes(sig[:32])
	if err != nil {
		return false
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	b.add(s, r, ed25519Challenge(sig[:32], pub, msg), a)
	return true
}

// addCS adds a CS coin signature on msg under k.
func (b *batch) addCS(k *CSPublicKey, msg, sigBytes []byte) bool {
	sig, r, s, err := parseCSSignature(sigBytes)
	if err != nil {
		return false
	}
	ph := csPrehash(&sig.R, msg)
	if b.xIndex == nil {
		b.xIndex = map[*CSPublicKey]int{}
	}
	i, ok := b.xIndex[k]
	if !ok {
		i = len(b.points)
		b.xIndex[k] = i
		b.points = append(b.points, &k.p)
	}
	b.s = append(b.s, *s)
	b.r = append(b.r, r)
	b.k = append(b.k, *csFDH(&ph, k))
	b.kPoint = append(b.kPoint, i)
	return true
}

func (b *batch) add(s *edwards25519.Scalar, r *edwards25519.Point, k *edwards25519.Scalar, a *edwards25519.Point) {
	b.s = append(b.s, *s)
	b.r = append(b.r, r)
	b.k = append(b.k, *k)
	b.kPoint = append(b.kPoint, len(b.points))
	b.points = append(b.points, a)
}

// verify weighs every signature with a random 128-bit z_i and checks the
// batch equation.
func (b *batch) verify(rnd io.Reader) bool {
	n := len(b.s)
	if n == 0 {
		return false
	}
	zs := make([]byte, 16*n)
	if _, err := io.ReadFull(rnd, zs); err != nil {
		return false
	}
	// Terms: G, then the R_i, then the A_i and X.
	scalars := make([]*edwards25519.Scalar, 1+n+len(b.points))
	points := make([]*edwards25519.Point, 0, len(scalars))
	for i := range scalars {
		scalars[i] = edwards25519.NewScalar()
	}
	points = append(points, edwards25519.NewGeneratorPoint())
	points = append(points, b.r...)
	points = append(points, b.points...)
	var buf [32]byte
	z := new(edwards25519.Scalar)
	for i := range n {
		copy(buf[:16], zs[16*i:])
		if _, err := z.SetCanonicalBytes(buf[:]); err != nil {
			return false // cannot happen: below 2^128
		}
		scalars[0].MultiplyAdd(z, &b.s[i], scalars[0])
		scalars[1+i].Negate(z)
		ka := scalars[1+n+b.kPoint[i]]
		ka.Subtract(ka, new(edwards25519.Scalar).Multiply(z, &b.k[i]))
	}
	clear(zs)
	check := new(edwards25519.Point).VarTimeMultiScalarMult(scalars, points)
	return check.MultByCofactor(check).Equal(edwards25519.NewIdentityPoint()) == 1
}

// ed25519Challenge is RFC 8032's k = SHA-512(R || A || msg) mod L.
func ed25519Challenge(r, pub, msg []byte) *edwards25519.Scalar {
	h := sha512.New()
	h.Write(r)
	h.Write(pub)
	h.Write(msg)
	var d [sha512.Size]byte
	k, err := new(edwards25519.Scalar).SetUniformBytes(h.Sum(d[:0]))
	if err != nil {
		panic("ecash: SetUniformBytes of a SHA-512 digest: " + err.Error()) // 64 bytes: cannot fail
	}
	return k
}

// verifyPermissionSig is the rule for one permission signature: the key
// check, then ZIP-215's equation.
func verifyPermissionSig(pub, body, sig []byte) error {
	a, err := largeOrderPoint(pub)
	if err != nil {
		return fmt.Errorf("%w: deposit permission under a bad coin key (%v)", ErrBadSignature, err)
	}
	if !verifyZIP215(a, pub, body, sig) {
		return fmt.Errorf("%w: deposit permission", ErrBadSignature)
	}
	return nil
}

// verifyZIP215 checks [8](s·G − R − k·A) = 0 for the key a (encoded as
// pub) with one double-scalar multiplication. An honest signature meets the
// cofactorless equation, s·G − k·A encoding to the received R bytes (the
// fast path); otherwise R is decoded as ZIP-215 says (any encoding of a
// point) and the cofactored equation checked.
func verifyZIP215(a *edwards25519.Point, pub, body, sig []byte) bool {
	if len(sig) != ed25519.SignatureSize {
		return false
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	k := ed25519Challenge(sig[:32], pub, body)
	lhs := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(k.Negate(k), a, s)
	if [32]byte(lhs.Bytes()) == [32]byte(sig[:32]) {
		return true
	}
	r, err := new(edwards25519.Point).SetBytes(sig[:32])
	if err != nil {
		return false
	}
	return lhs.Subtract(lhs, r).MultByCofactor(lhs).Equal(edwards25519.NewIdentityPoint()) == 1
}
