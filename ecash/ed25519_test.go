package ecash

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/big"
	"testing"

	"filippo.io/edwards25519"
)

// agreeWithStdlib checks verifyEd25519, and verifyWithTable when pub has a
// table, against ed25519.Verify on one input, and returns the verdict.
func agreeWithStdlib(t *testing.T, name string, pub, msg, sig []byte) bool {
	t.Helper()
	want := len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
	if len(pub) == ed25519.PublicKeySize && len(sig) == ed25519.SignatureSize {
		if tb := negTable(pub); tb != nil {
			if got := verifyWithTable(tb, pub, msg, sig); got != want {
				t.Errorf("%s: from the table %v, crypto/ed25519 %v (A=%x sig=%x)", name, got, want, pub, sig)
			}
		} else if want {
			t.Errorf("%s: crypto/ed25519 accepts a key that has no table (A=%x)", name, pub)
		}
	}
	// By the library until the key is admitted, then from its table, built
	// and then cached.
	for i := range edAdmitAfter + 1 {
		if got := verifyEd25519(pub, msg, sig); got != want {
			t.Errorf("%s: verifyEd25519 (call %d) %v, crypto/ed25519 %v", name, i+1, got, want)
		}
	}
	return want
}

// TestVerifyEd25519MatchesStdlib holds verification from a key's table to
// crypto/ed25519's verdict: honest signatures, every one-bit change of one,
// s not reduced, the signature's top bits, and what the cofactorless rule
// refuses and the cofactored accepts (small-order and mixed-order keys,
// torsion in R, non-canonical encodings of A and R).
func TestVerifyEd25519MatchesStdlib(t *testing.T) {
	msg := []byte("blindbank ed25519 table test")
	for i := range 20 {
		seed := sha512.Sum512([]byte{byte(i)})
		priv := ed25519.NewKeyFromSeed(seed[:32])
		pub := priv.Public().(ed25519.PublicKey)
		m := append(msg, byte(i))
		if !agreeWithStdlib(t, fmt.Sprintf("key %d", i), pub, m, ed25519.Sign(priv, m)) {
			t.Fatalf("key %d: an honest signature refused", i)
		}
	}

	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	sig := ed25519.Sign(priv, msg)
	for bit := range 8 * len(sig) {
		bad := bytes.Clone(sig)
		bad[bit/8] ^= 1 << (bit % 8)
		if agreeWithStdlib(t, fmt.Sprintf("signature bit %d flipped", bit), pub, msg, bad) {
			t.Errorf("signature bit %d flipped: accepted", bit)
		}
	}
	for bit := range 8 * len(pub) {
		bad := bytes.Clone(pub)
		bad[bit/8] ^= 1 << (bit % 8)
		agreeWithStdlib(t, fmt.Sprintf("key bit %d flipped", bit), bad, msg, sig)
	}
	if agreeWithStdlib(t, "another message", pub, append(bytes.Clone(msg), 0), sig) {
		t.Error("a signature verifies for another message")
	}

	// s + ℓ: the same equation, s not canonical.
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	s := new(big.Int).SetBytes(reverse(sig[32:]))
	unreduced := append(bytes.Clone(sig[:32]), reverse(leftPad(new(big.Int).Add(s, l).Bytes(), 32))...)
	if agreeWithStdlib(t, "s + ℓ", pub, msg, unreduced) {
		t.Error("s + ℓ accepted")
	}

	// Wrong lengths: refused, no panic.
	for _, c := range []struct{ pub, sig []byte }{{pub[:31], sig}, {pub, sig[:63]}, {append(bytes.Clone(pub), 0), sig}, {pub, append(bytes.Clone(sig), 0)}, {nil, nil}} {
		if verifyEd25519(c.pub, msg, c.sig) {
			t.Errorf("key of %d bytes, signature of %d: accepted", len(c.pub), len(c.sig))
		}
	}

	// Small-order keys and R in all 14 encodings, s = 0 (ZIP-215's cases):
	// the cofactorless rule accepts some, exactly where the library does.
	enc := smallOrderEncodings(t)
	accepted := 0
	for _, a := range enc {
		for _, r := range enc {
			z := append(bytes.Clone(r), make([]byte, 32)...)
			if agreeWithStdlib(t, fmt.Sprintf("A=%x R=%x", a, r), a, []byte("Zcash"), z) {
				accepted++
			}
		}
	}
	if accepted == 0 {
		t.Error("no small-order case accepted: the cases do not reach the equation")
	}

	// Torsion in R, for every point of small order: refused (cofactorless).
	t8, tp := torsion8(t), edwards25519.NewIdentityPoint()
	for order := range 8 {
		tp.Add(tp, t8)
		agreeWithStdlib(t, fmt.Sprintf("R + %d·T8", order+1), pub, msg, torsionEd25519(priv, msg, tp))
	}

	// A mixed-order key A = a·G + T8: s = r + k·a with R = r·G misses by
	// −k·T8 (refused), with R = r·G − k·T8 meets the equation (accepted).
	h := sha512.Sum512(priv.Seed())
	a, _ := new(edwards25519.Scalar).SetBytesWithClamping(h[:32])
	A := new(edwards25519.Point).ScalarBaseMult(a)
	A.Add(A, t8)
	mixed := A.Bytes()
	r := new(edwards25519.Scalar)
	r.SetUniformBytes(bytes.Repeat([]byte{5}, 64))
	R := new(edwards25519.Point).ScalarBaseMult(r)
	k := ed25519Challenge(R.Bytes(), mixed, msg)
	if agreeWithStdlib(t, "mixed-order key, R = r·G", mixed, msg, append(R.Bytes(), new(edwards25519.Scalar).MultiplyAdd(k, a, r).Bytes()...)) {
		t.Error("mixed-order key, R = r·G: accepted")
	}
	found := false
	for range 16 { // R depends on k, which depends on R: search for a fixed point
		Rt := new(edwards25519.Point).ScalarBaseMult(r)
		Rt.Subtract(Rt, new(edwards25519.Point).ScalarMult(k, t8))
		k2 := ed25519Challenge(Rt.Bytes(), mixed, msg)
		// k·T8 depends only on k mod 8: a signature exists when k2 ≡ k.
		if k2.Bytes()[0]%8 == k.Bytes()[0]%8 {
			if !agreeWithStdlib(t, "mixed-order key, R = r·G − k·T8", mixed, msg, append(Rt.Bytes(), new(edwards25519.Scalar).MultiplyAdd(k2, a, r).Bytes()...)) {
				t.Error("mixed-order key, R = r·G − k·T8: refused")
			}
			found = true
			break
		}
		k = k2
	}
	if !found {
		t.Fatal("no signature under the mixed-order key meets the cofactorless equation: the case is not tested")
	}

	// Non-canonical encodings of A (y = p + n, which decode for some n):
	// the library decodes them, so the table must be of the same point.
	for n := range 19 {
		e := make([]byte, 32)
		e[0] = byte(0xed + n)
		for i := 1; i < 31; i++ {
			e[i] = 0xff
		}
		e[31] = 0x7f
		if e[0] < 0xed { // carried past 0xff
			continue
		}
		agreeWithStdlib(t, fmt.Sprintf("A = %x", e), e, msg, sig)
	}
}

func reverse(b []byte) []byte {
	out := make([]byte, len(b))
	for i := range b {
		out[len(b)-1-i] = b[i]
	}
	return out
}

func leftPad(b []byte, n int) []byte {
	return append(make([]byte, n-len(b)), b...)
}

// TestSumVarTime compares the two-table sum with the library's
// double-scalar multiplication on edge and random scalars, with a base of
// mixed order.
func TestSumVarTime(t *testing.T) {
	q := new(edwards25519.Point).ScalarBaseMult(scalarOf(t, 12345))
	q.Add(q, torsion8(t))
	tq := newFixedBase(q)
	var scalars []*edwards25519.Scalar
	for _, v := range []uint64{0, 1, 2, 7, 8, 9, 15, 16, 17, 255, 256} {
		scalars = append(scalars, scalarOf(t, v))
	}
	lMinus1, _ := hex.DecodeString("ecd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010")
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(lMinus1)
	if err != nil {
		t.Fatal(err)
	}
	scalars = append(scalars, s)
	for i := range 8 {
		h := sha512.Sum512([]byte{byte(i), 9})
		s, _ := new(edwards25519.Scalar).SetUniformBytes(h[:])
		scalars = append(scalars, s)
	}
	for _, a := range scalars {
		for _, b := range scalars {
			var got edwards25519.Point
			sumVarTime(&got, baseTable(), a, tq, b)
			want := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(b, q, a)
			if got.Equal(want) != 1 {
				t.Fatalf("a=%x b=%x: a·B + b·Q differs from the library's", a.Bytes(), b.Bytes())
			}
		}
	}
}

func scalarOf(t *testing.T, v uint64) *edwards25519.Scalar {
	t.Helper()
	b := make([]byte, 32)
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTableCacheAdmission: a key gets its table at its admitAfter-th miss,
// not before; once the cache is full, however many keys take turns, a
// table replaces another at most once every max misses; the cache and its
// count of misses stay bounded.
func TestTableCacheAdmission(t *testing.T) {
	c := tableCache{max: 4, admitAfter: 3}
	built := 0
	build := func() *fixedBase { built++; return baseTable() }
	key := func(i int) [32]byte { return [32]byte{byte(i), byte(i >> 8)} }
	for i := range 2 {
		if c.get(key(0), build) != nil || built != 0 {
			t.Fatalf("a table at miss %d of 3", i+1)
		}
	}
	if c.get(key(0), build) == nil || built != 1 {
		t.Fatal("no table at the third miss")
	}
	if c.get(key(0), build) == nil || built != 1 {
		t.Fatal("a cached table built again")
	}
	// 10 keys in turn through a cache of 4: three builds fill it, then
	// tables are replaced, never more than once per 4 misses.
	built, misses := 0, 0
	for range 50 {
		for i := 1; i <= 10; i++ {
			c.mu.RLock()
			_, cached := c.m[key(i)]
			c.mu.RUnlock()
			if !cached {
				misses++
			}
			c.get(key(i), build)
		}
	}
	if built <= 3 || (built-3)*4 > misses {
		t.Errorf("%d tables built in %d misses: want the cache filled (3), then at most one per 4 misses", built, misses)
	}
	if len(c.m) > 4 {
		t.Errorf("cache holds %d tables, at most 4", len(c.m))
	}
	for i := range 2 * maxSeenKeys {
		c.get(key(1000+i), build)
	}
	if len(c.seen) > maxSeenKeys {
		t.Errorf("misses of %d keys counted, at most %d", len(c.seen), maxSeenKeys)
	}
	// A key whose table cannot be built (nil) answers nil every time.
	none := func() *fixedBase { return nil }
	for range 10 {
		if c.get(key(50000), none) != nil {
			t.Fatal("a table from nothing")
		}
	}
}

// FuzzVerifyEd25519: verification from a key's table answers as
// crypto/ed25519 for any key, message and signature. With signed, pub is a
// seed (padded to 32 bytes): the key signs msg and sig is XORed into the
// signature, so that the fuzzer explores signatures near valid ones;
// otherwise pub and sig are taken as they are.
func FuzzVerifyEd25519(f *testing.F) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	msg := []byte("fuzz")
	f.Add([]byte(pub), msg, ed25519.Sign(priv, msg), false)
	f.Add(bytes.Repeat([]byte{9}, 32), msg, make([]byte, 64), true)
	f.Add(bytes.Repeat([]byte{9}, 32), msg, append(make([]byte, 63), 0x10), true) // s + 2^252
	for _, a := range smallOrderEncodings(f) {
		f.Add(a, []byte("Zcash"), append(bytes.Clone(a), make([]byte, 32)...), false)
	}
	f.Fuzz(func(t *testing.T, pub, msg, sig []byte, signed bool) {
		if signed {
			priv := ed25519.NewKeyFromSeed(append(bytes.Clone(pub), make([]byte, 32)...)[:32])
			pub = priv.Public().(ed25519.PublicKey)
			mask := sig
			sig = ed25519.Sign(priv, msg)
			for i := range min(len(mask), len(sig)) {
				sig[i] ^= mask[i]
			}
		}
		want := len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig)
		if got := verifyEd25519(pub, msg, sig); got != want {
			t.Fatalf("verifyEd25519 %v, crypto/ed25519 %v", got, want)
		}
		if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return
		}
		if tb := negTable(pub); tb != nil {
			if got := verifyWithTable(tb, pub, msg, sig); got != want {
				t.Fatalf("from the table %v, crypto/ed25519 %v", got, want)
			}
		}
	})
}

// TestVerifyEd25519Concurrent verifies under a few keys from many
// goroutines at once, as the bank's handlers do: with -race, the cache's
// locking is checked; every honest signature verifies, every forged fails.
func TestVerifyEd25519Concurrent(t *testing.T) {
	type signed struct{ pub, msg, sig []byte }
	var sigs []signed
	for i := range 4 {
		priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(100 + i)}, 32))
		m := []byte{byte(i)}
		sigs = append(sigs, signed{priv.Public().(ed25519.PublicKey), m, ed25519.Sign(priv, m)})
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			var err error
			for n := range 50 {
				s := sigs[(g+n)%len(sigs)]
				if !verifyEd25519(s.pub, s.msg, s.sig) {
					err = fmt.Errorf("goroutine %d: an honest signature refused", g)
				}
				if verifyEd25519(s.pub, append(bytes.Clone(s.msg), 1), s.sig) {
					err = fmt.Errorf("goroutine %d: a signature of another message accepted", g)
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// BenchmarkVerifyEd25519 compares crypto/ed25519 with verification from
// the key's table (docs/PERFORMANCE.md, "Ed25519 against a known key").
func BenchmarkVerifyEd25519(b *testing.B) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	pub := priv.Public().(ed25519.PublicKey)
	msg := make([]byte, 120) // about a withdraw request's signed input
	sig := ed25519.Sign(priv, msg)
	b.Run("crypto-ed25519", func(b *testing.B) {
		for b.Loop() {
			if !ed25519.Verify(pub, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("table", func(b *testing.B) {
		tb := negTable(pub)
		for b.Loop() {
			if !verifyWithTable(tb, pub, msg, sig) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("building-the-table", func(b *testing.B) {
		for b.Loop() {
			negTable(pub)
		}
	})
}

// BenchmarkVerifyEd25519Turns verifies under n keys taking turns, more of
// them than the cache holds past 64: the cost of evicting and building
// tables, against the library's.
func BenchmarkVerifyEd25519Turns(b *testing.B) {
	msg := []byte("turns")
	for _, n := range []int{32, 100, 500} {
		pubs, sigs := make([][]byte, n), make([][]byte, n)
		for i := range n {
			seed := sha512.Sum512([]byte{byte(i), byte(i >> 8), 77})
			priv := ed25519.NewKeyFromSeed(seed[:32])
			pubs[i], sigs[i] = priv.Public().(ed25519.PublicKey), ed25519.Sign(priv, msg)
		}
		for _, v := range []struct {
			name   string
			verify func(pub, msg, sig []byte) bool
		}{{"crypto-ed25519", func(p, m, s []byte) bool { return ed25519.Verify(p, m, s) }}, {"cached", verifyEd25519}} {
			b.Run(fmt.Sprintf("%s/keys=%d", v.name, n), func(b *testing.B) {
				i := 0
				for b.Loop() {
					if !v.verify(pubs[i%n], msg, sigs[i%n]) {
						b.Fatal("refused")
					}
					i++
				}
			})
		}
	}
}
