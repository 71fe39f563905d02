package ecash

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"

	"filippo.io/edwards25519"
)

// randomScalar is a uniformly random scalar.
func randomScalar(t testing.TB) *edwards25519.Scalar {
	t.Helper()
	var b [64]byte
	rand.Read(b[:])
	return scalarFrom(t, b[:])
}

// scalarFrom reduces 64 bytes to a scalar.
func scalarFrom(t testing.TB, b []byte) *edwards25519.Scalar {
	t.Helper()
	s, err := new(edwards25519.Scalar).SetUniformBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// edgeScalars are scalars whose signed digits reach the ends of their
// range and carry through every position: small values, 0x88…8 (every
// digit carries), 0x77…78 (every digit but the last is −8), a single 8 at
// each nibble, values just below L and around 2^252.
func edgeScalars(t testing.TB) []*edwards25519.Scalar {
	t.Helper()
	fromLE := func(b []byte) *edwards25519.Scalar {
		s, err := new(edwards25519.Scalar).SetCanonicalBytes(b)
		if err != nil {
			t.Fatalf("%x: %v", b, err)
		}
		return s
	}
	fromInt := func(v *big.Int) *edwards25519.Scalar {
		b := v.FillBytes(make([]byte, 32))
		slices.Reverse(b)
		return fromLE(b)
	}
	var out []*edwards25519.Scalar
	for _, v := range []int64{0, 1, 2, 7, 8, 9, 15, 16, 17} {
		out = append(out, fromInt(big.NewInt(v)))
	}
	L, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	two252 := new(big.Int).Lsh(big.NewInt(1), 252)
	for _, d := range []int64{1, 2, 3, 8, 9, 16, 17, 1000} {
		out = append(out, fromInt(new(big.Int).Sub(L, big.NewInt(d))))
	}
	for _, d := range []int64{0, 1, 7, 8, 9} {
		out = append(out, fromInt(new(big.Int).Add(two252, big.NewInt(d))), fromInt(new(big.Int).Sub(two252, big.NewInt(d+1))))
	}
	for _, pat := range []byte{0x88, 0x77, 0x78, 0x87, 0x7f, 0xf7, 0x80, 0x08, 0xff} {
		b := bytes.Repeat([]byte{pat}, 32)
		b[31] &= 0x0f
		out = append(out, fromLE(b))
	}
	minus8 := bytes.Repeat([]byte{0x77}, 32)
	minus8[0], minus8[31] = 0x78, 0x07
	out = append(out, fromLE(minus8))
	for i := range 63 {
		var b [32]byte
		b[i/2] = 8 << (4 * (i % 2))
		out = append(out, fromLE(b[:]))
	}
	return out
}

// TestFixedBaseMatchesScalarMult checks the table's multiplication against
// the library's ScalarMult on the basepoint, random points, points of small
// order and with a component of small order (the addition formulas are
// complete, so the table does not need a prime-order base), for edge and
// random scalars.
func TestFixedBaseMatchesScalarMult(t *testing.T) {
	random := new(edwards25519.Point).ScalarBaseMult(randomScalar(t))
	order2 := point(t, "ec"+strings.Repeat("ff", 30)+"7f") // (0, −1)
	order8 := point(t, "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
	bases := map[string]*edwards25519.Point{
		"identity":  edwards25519.NewIdentityPoint(),
		"basepoint": edwards25519.NewGeneratorPoint(),
		"random":    random,
		"negated":   new(edwards25519.Point).Negate(random),
		"mixed":     new(edwards25519.Point).Add(random, order8),
		"order 2":   order2,
		"order 4":   point(t, "0000000000000000000000000000000000000000000000000000000000000000"),
		"order 8":   order8,
	}
	scalars := edgeScalars(t)
	for range 64 {
		scalars = append(scalars, randomScalar(t))
	}
	for name, p := range bases {
		table := newFixedBase(p)
		for i, s := range scalars {
			want := new(edwards25519.Point).ScalarMult(s, p)
			got := table.mul(new(edwards25519.Point), s)
			if got.Equal(want) != 1 || !bytes.Equal(got.Bytes(), want.Bytes()) {
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
		scalars = append(scalars, randomScalar(t))
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
// maxCSTables keys; a wallet using one key more than that in turn finds
// most of them (a cache that started over when full found none); and a
// key's product is right whether its table was cached or built afresh.
func TestCSTablesBounded(t *testing.T) {
	s := randomScalar(t)
	keys := testCSKeys(t, 0, maxCSTables+1)
	for pass := range 3 {
		misses := 0
		for i, k := range keys {
			csTables.mu.RLock()
			_, cached := csTables.m[k.enc]
			csTables.mu.RUnlock()
			if !cached {
				misses++
			}
			got := k.mulX(new(edwards25519.Point), s)
			if got.Equal(new(edwards25519.Point).ScalarMult(s, &k.p)) != 1 {
				t.Fatalf("pass %d, key %d: wrong product", pass, i)
			}
			csTables.mu.RLock()
			n := len(csTables.m)
			csTables.mu.RUnlock()
			if n > maxCSTables {
				t.Fatalf("pass %d, after key %d the cache holds %d tables, at most %d", pass, i, n, maxCSTables)
			}
		}
		t.Logf("pass %d: %d of %d keys missed", pass, misses, len(keys))
		if pass > 0 && misses > maxCSTables/2 {
			t.Errorf("pass %d: %d of %d keys missed the cache", pass, misses, len(keys))
		}
	}
}

// TestCSTablesConcurrent: wallets on many goroutines share the cache, with
// more keys than it holds (for the race detector).
func TestCSTablesConcurrent(t *testing.T) {
	s := randomScalar(t)
	keys := testCSKeys(t, 1000, maxCSTables+16)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 40 {
				k := keys[(g*37+i)%len(keys)]
				if k.mulX(new(edwards25519.Point), s).Equal(new(edwards25519.Point).ScalarMult(s, &k.p)) != 1 {
					t.Errorf("goroutine %d, key %d: wrong product", g, i)
				}
			}
		})
	}
	wg.Wait()
}

// testCSKeys are n CS public keys derived from from, from+1, ….
func testCSKeys(t testing.TB, from, n int) []*CSPublicKey {
	t.Helper()
	keys := make([]*CSPublicKey, n)
	for i := range keys {
		var b [64]byte
		copy(b[:], fmt.Sprintf("fixed-base test key %d", from+i))
		k, err := ParseCSPrivateKey(scalarFrom(t, b[:]).Bytes())
		if err != nil {
			t.Fatal(err)
		}
		keys[i] = k.PublicKey()
	}
	return keys
}

func BenchmarkFixedBase(b *testing.B) {
	s := randomScalar(b)
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
// identity, and points of order 2, 4 and 8, in both places of the pair.
func TestEncodePair(t *testing.T) {
	order2 := point(t, "ec"+strings.Repeat("ff", 30)+"7f") // (0, −1)
	order8 := point(t, "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")
	pts := []*edwards25519.Point{edwards25519.NewIdentityPoint(), edwards25519.NewGeneratorPoint(), order2, order8,
		point(t, "0000000000000000000000000000000000000000000000000000000000000080")} // order 4
	for range 16 {
		p := new(edwards25519.Point).ScalarBaseMult(randomScalar(t))
		// Z ≠ 1: a sum, not a point fresh from a table.
		pts = append(pts, p.Add(p, order8))
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

func BenchmarkEncodePair(b *testing.B) {
	p := new(edwards25519.Point).ScalarBaseMult(randomScalar(b))
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

func point(t testing.TB, h string) *edwards25519.Point {
	t.Helper()
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		t.Fatalf("%s: %v", h, err)
	}
	return p
}
