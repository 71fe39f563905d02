package ecash

import (
	"crypto/rsa"
	"crypto/subtle"
	"errors"

	"filippo.io/bigmod"
)

// rsaCRT is a two-prime RSA private key prepared for the bank's blind
// signing (RFC 9474 BlindSign, s = m^d mod N) through the Chinese Remainder
// Theorem: m^dP mod p and m^dQ mod q, recombined with Garner's formula. The
// arithmetic is filippo.io/bigmod, the standard library's constant-time
// crypto/rsa arithmetic re-exported: nothing about p, q, dP, dQ or qInv
// reaches a branch or a memory address, only their sizes. (circl's signer
// computes m^d mod N with math/big, blinded, about three times as slowly.)
//
// Every result is raised to e and compared with the input before it is
// returned: a fault in one half of a CRT computation yields a value that
// reveals a factor of N to whoever receives it (Boneh, DeMillo and Lipton,
// 1997), so a result that does not verify is never released.
//
// The values are derived from N, e, d, p and q when the key is loaded; the
// stored form (PKCS#8) is unchanged. An rsaCRT is read-only after
// newRSACRT, so one may serve many goroutines.
type rsaCRT struct {
	n, p, q *bigmod.Modulus
	e       uint
	dP, dQ  []byte      // d mod (p−1), d mod (q−1), big-endian
	qInv    *bigmod.Nat // q⁻¹ mod p
	qN      *bigmod.Nat // q as an element of Z_N, for the recombination
}

// errRSAFault is returned when a computed signature does not verify: a
// hardware or memory fault, or a corrupted key. It is not the peer's doing
// (the bank reports it as an internal error).
var errRSAFault = errors.New("ecash: RSA signature failed its check; not released")

// newRSACRT prepares sk for CRT signing. Keys with other than two primes
// (deprecated multi-prime keys, which PKCS#8 can hold) are refused; the
// caller signs those without the CRT.
func newRSACRT(sk *rsa.PrivateKey) (*rsaCRT, error) {
	if len(sk.Primes) != 2 || sk.E <= 1 || sk.D == nil {
		return nil, errors.New("ecash: RSA key is not a two-prime key")
	}
	bad := errors.New("ecash: inconsistent RSA private key")
	n, err := bigmod.NewModulus(sk.N.Bytes())
	if err != nil {
		return nil, bad
	}
	pb, qb := sk.Primes[0].Bytes(), sk.Primes[1].Bytes()
	p, err := bigmod.NewModulus(pb)
	if err != nil {
		return nil, bad
	}
	q, err := bigmod.NewModulus(qb)
	if err != nil {
		return nil, bad
	}
	// Exp needs odd moduli; a prime other than 2 is odd.
	if p.Nat().IsOdd() != 1 || q.Nat().IsOdd() != 1 {
		return nil, bad
	}
	// p·q = N (and p, q < N), p ≠ q.
	pN, err := bigmod.NewNat().SetBytes(pb, n)
	if err != nil {
		return nil, bad
	}
	qN, err := bigmod.NewNat().SetBytes(qb, n)
	if err != nil {
		return nil, bad
	}
	if pN.Mul(qN, n).IsZero() != 1 || subtle.ConstantTimeCompare(pb, qb) == 1 {
		return nil, bad
	}
	d, err := bigmod.NewNat().SetBytes(sk.D.Bytes(), n)
	if err != nil {
		return nil, bad
	}
	pMinus1, err := bigmod.NewModulus(p.Nat().SubOne(p).Bytes(p))
	if err != nil {
		return nil, bad
	}
	qMinus1, err := bigmod.NewModulus(q.Nat().SubOne(q).Bytes(q))
	if err != nil {
		return nil, bad
	}
	// qInv = q^(p−2) mod p (Fermat; p is prime), in constant time.
	qInv := bigmod.NewNat().Mod(q.Nat(), p)
	qInv.Exp(qInv, p.Nat().SubOne(p).SubOne(p).Bytes(p), p)
	return &rsaCRT{
		n: n, p: p, q: q,
		e:    uint(sk.E),
		dP:   bigmod.NewNat().Mod(d, pMinus1).Bytes(pMinus1),
		dQ:   bigmod.NewNat().Mod(d, qMinus1).Bytes(qMinus1),
		qInv: qInv,
		qN:   qN,
	}, nil
}

// errRSATooLarge is returned for a blinded message that is not below N.
var errRSATooLarge = errors.New("blinded message is not below the modulus")

// sign returns blinded^d mod N as len(N) bytes. The caller has checked that
// len(blinded) is the modulus size; sign refuses blinded ≥ N.
func (k *rsaCRT) sign(blinded []byte) ([]byte, error) {
	c, err := bigmod.NewNat().SetBytes(blinded, k.n)
	if err != nil {
		return nil, errRSATooLarge
	}
	t := bigmod.NewNat()
	m1 := bigmod.NewNat().Exp(t.Mod(c, k.p), k.dP, k.p) // c^dP mod p
	m2 := bigmod.NewNat().Exp(t.Mod(c, k.q), k.dQ, k.q) // c^dQ mod q
	// Garner: s = m2 + q·((m1 − m2)·qInv mod p), which is below N.
	m1.Sub(t.Mod(m2, k.p), k.p)
	m1.Mul(k.qInv, k.p)
	s := m1.ExpandFor(k.n).Mul(k.qN, k.n)
	s.Add(m2.ExpandFor(k.n), k.n)
	// The fault check: s^e must give back c.
	if bigmod.NewNat().ExpShortVarTime(s, k.e, k.n).Equal(c) != 1 {
		return nil, errRSAFault
	}
	return s.Bytes(k.n), nil
}
