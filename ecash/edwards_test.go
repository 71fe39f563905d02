package ecash

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"testing"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// scalarFrom reduces 64 bytes to a scalar.
func scalarFrom(t testing.TB, b []byte) *edwards25519.Scalar {
	t.Helper()
	s, err := new(edwards25519.Scalar).SetUniformBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// edgeScalars are scalars whose signed digits reach the ends of their range
// and carry through every position: 0, 1, 8 (the first digit that carries),
// 0x88…8 (every digit carries), L−1, and 2^252 − 1.
func edgeScalars(t testing.TB) []*edwards25519.Scalar {
	t.Helper()
	small := func(v byte) *edwards25519.Scalar {
		var b [32]byte
		b[0] = v
		s, err := new(edwards25519.Scalar).SetCanonicalBytes(b[:])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	eights := bytes.Repeat([]byte{0x88}, 31)
	eights = append(eights, 0x08)
	s88, err := new(edwards25519.Scalar).SetCanonicalBytes(eights)
	if err != nil {
		t.Fatal(err)
	}
	lMinus1 := new(edwards25519.Scalar).Subtract(small(0), small(1))
	ones := bytes.Repeat([]byte{0xff}, 31)
	ones = append(ones, 0x0f)
	top, err := new(edwards25519.Scalar).SetCanonicalBytes(ones)
	if err != nil {
		t.Fatal(err)
	}
	return []*edwards25519.Scalar{small(0), small(1), small(8), small(15), small(16), s88, lMinus1, top}
}

// TestFixedBaseMatchesScalarMult checks the table's multiplication against
// the library's ScalarMult on the basepoint, a random point, a point with
// a component of small order (the addition formulas are complete, so the
// table does not need a prime-order base), for edge and random scalars.
func TestFixedBaseMatchesScalarMult(t *testing.T) {
	var seed [64]byte
	rand.Read(seed[:])
	random := new(edwards25519.Point).ScalarBaseMult(scalarFrom(t, seed[:]))
	// (0, −1) has order 2.
	order2 := pointOfOrder2(t)
	mixed := new(edwards25519.Point).Add(random, order2)
	bases := map[string]*edwards25519.Point{
		"basepoint": edwards25519.NewGeneratorPoint(),
		"random":    random,
		"mixed":     mixed,
		"order 2":   order2,
	}
	scalars := edgeScalars(t)
	for range 64 {
		var b [64]byte
		rand.Read(b[:])
		scalars = append(scalars, scalarFrom(t, b[:]))
	}
	for name, p := range bases {
		table := newFixedBase(p)
		for i, s := range scalars {
			want := new(edwards25519.Point).ScalarMult(s, p)
			got := table.mul(new(edwards25519.Point), s)
			if got.Equal(want) != 1 {
				t.Fatalf("%s, scalar %d (%x): table gives %x, ScalarMult %x", name, i, s.Bytes(), got.Bytes(), want.Bytes())
			}
		}
	}
}

// TestSignedRadix16 checks the digits' range and that they sum back to the
// scalar.
func TestSignedRadix16(t *testing.T) {
	scalars := edgeScalars(t)
	for range 256 {
		var b [64]byte
		rand.Read(b[:])
		scalars = append(scalars, scalarFrom(t, b[:]))
	}
	sixteen := scalarFrom(t, append([]byte{16}, make([]byte, 63)...))
	for _, s := range scalars {
		d := signedRadix16(s)
		sum := new(edwards25519.Scalar)
		for i := 63; i >= 0; i-- {
			if d[i] < -8 || d[i] > 8 {
				t.Fatalf("%x: digit %d is %d", s.Bytes(), i, d[i])
			}
			sum.Multiply(sum, sixteen)
			var db [64]byte
			if d[i] >= 0 {
				db[0] = byte(d[i])
				sum.Add(sum, scalarFrom(t, db[:]))
			} else {
				db[0] = byte(-d[i])
				sum.Subtract(sum, scalarFrom(t, db[:]))
			}
		}
		if sum.Equal(s) != 1 {
			t.Fatalf("%x: digits sum to %x", s.Bytes(), sum.Bytes())
		}
	}
}

// TestCSTablesBounded: the cache of tables never holds more than
// maxCSTables keys, and a key's multiplication is right whether its table
// was cached or built afresh after the cache started over.
func TestCSTablesBounded(t *testing.T) {
	var b [64]byte
	rand.Read(b[:])
	s := scalarFrom(t, b[:])
	first := testCSKey(t, 0).PublicKey()
	for i := range maxCSTables + 3 {
		k := testCSKey(t, i).PublicKey()
		got := k.mulX(new(edwards25519.Point), s)
		if got.Equal(new(edwards25519.Point).ScalarMult(s, &k.p)) != 1 {
			t.Fatalf("key %d: wrong product", i)
		}
		csTables.RLock()
		n := len(csTables.m)
		csTables.RUnlock()
		if n > maxCSTables {
			t.Fatalf("after key %d the cache holds %d tables, at most %d", i, n, maxCSTables)
		}
	}
	if got := first.mulX(new(edwards25519.Point), s); got.Equal(new(edwards25519.Point).ScalarMult(s, &first.p)) != 1 {
		t.Fatal("first key, after the cache started over: wrong product")
	}
}

// testCSKey is a CS key derived from i.
func testCSKey(t testing.TB, i int) *CSPrivateKey {
	t.Helper()
	var b [64]byte
	copy(b[:], fmt.Sprintf("fixed-base test key %d", i))
	x := scalarFrom(t, b[:])
	k, err := ParseCSPrivateKey(x.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func BenchmarkFixedBase(b *testing.B) {
	var seed [64]byte
	rand.Read(seed[:])
	s := scalarFrom(b, seed[:])
	p := new(edwards25519.Point).ScalarBaseMult(s)
	b.Run("ScalarMult", func(b *testing.B) {
		var v edwards25519.Point
		for b.Loop() {
			v.ScalarMult(s, p)
		}
	})
	table := newFixedBase(p)
	b.Run("table", func(b *testing.B) {
		var v edwards25519.Point
		for b.Loop() {
			table.mul(&v, s)
		}
	})
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			newFixedBase(p)
		}
	})
}

// TestEncodePair checks encodePair against Bytes, on random points, the
// identity, and a point of order 2, in both places of the pair.
func TestEncodePair(t *testing.T) {
	order2 := pointOfOrder2(t)
	pts := []*edwards25519.Point{edwards25519.NewIdentityPoint(), edwards25519.NewGeneratorPoint(), order2}
	for range 16 {
		var b [64]byte
		rand.Read(b[:])
		p := new(edwards25519.Point).ScalarBaseMult(scalarFrom(t, b[:]))
		// Z ≠ 1: a sum, not a point fresh from a table.
		pts = append(pts, p.Add(p, order2))
	}
	for i, a := range pts {
		for j, b := range pts {
			got := encodePair(a, b)
			if !bytes.Equal(got[0][:], a.Bytes()) || !bytes.Equal(got[1][:], b.Bytes()) {
				t.Fatalf("points %d and %d: encodePair %x, %x; Bytes %x, %x", i, j, got[0], got[1], a.Bytes(), b.Bytes())
			}
		}
	}
}

// pointOfOrder2 is (0, −1).
func pointOfOrder2(t testing.TB) *edwards25519.Point {
	t.Helper()
	minusOne := new(field.Element).Negate(new(field.Element).One())
	p, err := new(edwards25519.Point).SetExtendedCoordinates(new(field.Element), minusOne, new(field.Element).One(), new(field.Element))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func BenchmarkEncodePair(b *testing.B) {
	var seed [64]byte
	rand.Read(seed[:])
	p := new(edwards25519.Point).ScalarBaseMult(scalarFrom(b, seed[:]))
	q := new(edwards25519.Point).Add(p, p)
	b.Run("Bytes", func(b *testing.B) {
		for b.Loop() {
			p.Bytes()
			q.Bytes()
		}
	})
	b.Run("encodePair", func(b *testing.B) {
		for b.Loop() {
			encodePair(p, q)
		}
	})
}
