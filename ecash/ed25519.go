package ecash

import (
	"crypto/ed25519"
	"crypto/subtle"
	"sync"

	"filippo.io/edwards25519"
)

// Ed25519 verification against a key met often, from a table of its
// multiples.
//
// crypto/ed25519 checks s·B − k·A = R with one double-scalar multiplication
// by a variable base, A decoded afresh each time. The bank checks the same
// few keys again and again (an account's, a merchant's), and so do the
// merchant and the wallet (the bank's signing key, a merchant's request
// key). For a key met often (edTables) verifyEd25519 builds the table of −A's
// multiples (fixedBase, about 30 KiB, 120–150 µs) and from then on sums
// s·B + k·(−A) from two tables: less than half the time of
// ed25519.Verify (docs/PERFORMANCE.md, "Ed25519 against a known key").
//
// The answer is ed25519.Verify's for every input: the same checks (a
// canonical s, a public key that decodes, the top bits of the signature),
// the same challenge, and the same point compared by its encoding with R's
// bytes, so the rule stays cofactorless and R must be canonical. Only the
// way the point is computed differs, which FuzzVerifyEd25519 and
// TestVerifyEd25519MatchesStdlib check against the library. Everything
// here is public (key, message, signature), so the sum runs in variable
// time.

// verifyEd25519 reports whether sig is pub's Ed25519 signature of msg,
// exactly as ed25519.Verify does (which panics on a key of the wrong length;
// this returns false).
func verifyEd25519(pub, msg, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	t := edTables.get([32]byte(pub), func() *fixedBase { return negTable(pub) })
	if t == nil {
		return ed25519.Verify(pub, msg, sig)
	}
	return verifyWithTable(t, pub, msg, sig)
}

// verifyWithTable is ed25519.Verify(pub, msg, sig) for pub of 32 bytes and
// sig of 64, with t the table of −A for pub's point A.
func verifyWithTable(t *fixedBase, pub, msg, sig []byte) bool {
	if sig[63]&224 != 0 {
		return false
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(sig[32:])
	if err != nil {
		return false
	}
	k := ed25519Challenge(sig[:32], pub, msg)
	var r edwards25519.Point
	sumVarTime(&r, baseTable(), s, t, k)
	return subtle.ConstantTimeCompare(r.Bytes(), sig[:32]) == 1
}

// baseTable is the table of the basepoint B's multiples, in the form of
// the keys' tables (the library keeps its own unexported).
var baseTable = sync.OnceValue(func() *fixedBase {
	return newFixedBase(edwards25519.NewGeneratorPoint())
})

// sumVarTime sets v = a·P + b·Q from the tables of P and Q, in time that
// depends on a and b: for public scalars only. It is fixedBase.mul for two
// tables at once, skipping zero digits and looking entries up directly.
func sumVarTime(v *edwards25519.Point, p *fixedBase, a *edwards25519.Scalar, q *fixedBase, b *edwards25519.Scalar) {
	da, db := signedRadix16(a), signedRadix16(b)
	// a·P + b·Q = Σ_i (da_2i·256^i·P + db_2i·256^i·Q) + 16·Σ_i (the odd digits)
	var sums [2]extended
	var e affineCached
	for parity := range sums {
		acc := &sums[parity]
		acc.identity()
		for i := range 32 {
			if p[i].lookupVarTime(&e, da[2*i+parity]) {
				acc.addAffine(&e)
			}
			if q[i].lookupVarTime(&e, db[2*i+parity]) {
				acc.addAffine(&e)
			}
		}
	}
	var even, odd edwards25519.Point
	sums[0].point(&even)
	sums[1].point(&odd)
	odd.MultByCofactor(&odd)
	odd.Double(&odd)
	v.Add(&even, &odd)
}

// lookupVarTime sets e to d·row for −8 ≤ d ≤ 8 and reports whether d is
// not zero (the identity, nothing to add), in time that depends on d.
func (row *fixedRow) lookupVarTime(e *affineCached, d int8) bool {
	switch {
	case d > 0:
		*e = row[d-1]
	case d < 0:
		// −(x, y) = (−x, y): swap y+x with y−x, negate 2d·x·y.
		r := &row[-d-1]
		e.yPlusX.Set(&r.yMinusX)
		e.yMinusX.Set(&r.yPlusX)
		e.t2d.Negate(&r.t2d)
	default:
		return false
	}
	return true
}

// edTables caches the tables of −A for the Ed25519 keys met often: a key
// gets one at its edAdmitAfter-th verification without one, and once 64
// keys have tables, one replaces another at most once every 64 misses. A
// key met once (a coin's, checked once in its life) costs no table, and
// when more keys take turns than the cache holds (a bank with many active
// accounts, or a peer naming keys of its own in status queries) a build,
// about three verifications' worth, comes at most once every 64
// verifications by the library: some 5% over the library's cost at worst.
var edTables = tableCache{max: maxEdTables, admitAfter: edAdmitAfter}

// negTable builds the table of −A for the key pub, or returns nil if pub
// does not decode (ed25519.Verify refuses every signature under it).
func negTable(pub []byte) *fixedBase {
	a, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil
	}
	return newFixedBase(a.Negate(a))
}

// maxEdTables bounds edTables (about 2 MiB); edAdmitAfter is its
// admission count; maxSeenKeys bounds the keys without a table whose
// misses a tableCache counts (about 40 bytes each).
const (
	maxEdTables  = 64
	edAdmitAfter = 8
	maxSeenKeys  = 4096
)
