package ecash

import (
	"crypto/subtle"
	"sync"

	"filippo.io/edwards25519"
	"filippo.io/edwards25519/field"
)

// Group operations that edwards25519 does not export, in its field
// arithmetic: multiplication by a fixed point from a table of its
// multiples, and the encoding of two points with one inversion.
//
// A CS wallet multiplies its denomination key X by a secret scalar three
// times per planchet (beta_0·X and beta_1·X to blind, c'_b·X to check the
// answer), and edwards25519's ScalarMult spends most of its time on the
// 252 doublings of a variable base. X is fixed for a key's lifetime, so a
// table of its multiples, built once, turns each of those into the 64
// mixed additions of a fixed-base multiplication, the method of
// ScalarBaseMult (the Ed25519 paper's, radix 16 with signed digits), and
// about three times faster. The library does not export that method for
// other bases; this is it, in the library's field arithmetic, constant
// time like ScalarMult: every digit looks at every entry of its table.

// affineCached is a point (x, y) as y+x, y−x and 2d·x·y, the form a mixed
// addition takes it in.
type affineCached struct {
	yPlusX, yMinusX, t2d field.Element
}

// fixedBase holds j·256^i·P in row i < 32, entry j−1 for 1 ≤ j ≤ 8.
type fixedBase [32]fixedRow

type fixedRow [8]affineCached

// d2 is 2d, d = −121665/121666 the curve's constant.
var d2 = func() *field.Element {
	num, den := feUint32(121665), feUint32(121666)
	d := new(field.Element).Multiply(num, new(field.Element).Invert(den))
	d.Negate(d)
	return d.Add(d, d)
}()

func feUint32(v uint32) *field.Element {
	return new(field.Element).Mult32(new(field.Element).One(), v)
}

// newFixedBase builds P's table: 224 additions and 160 doublings, and one
// inversion for all 256 entries (Montgomery's trick); 120–150 µs.
func newFixedBase(p *edwards25519.Point) *fixedBase {
	var pts [32 * 8]edwards25519.Point
	base := new(edwards25519.Point).Set(p)
	for i := range 32 {
		row := pts[8*i : 8*i+8]
		row[0].Set(base)
		for j := 1; j < 8; j++ {
			row[j].Add(&row[j-1], base)
		}
		// 256·base = 2·8·2·(8·base).
		base.Double(&row[7])
		base.MultByCofactor(base)
		base.Double(base)
	}
	var xs, ys, zs, prod [32 * 8]field.Element
	for n := range pts {
		X, Y, Z, _ := pts[n].ExtendedCoordinates()
		xs[n].Set(X)
		ys[n].Set(Y)
		zs[n].Set(Z)
		if n == 0 {
			prod[0].Set(Z)
		} else {
			prod[n].Multiply(&prod[n-1], Z)
		}
	}
	// inv = 1/(Z_0·…·Z_n); walking back, 1/Z_n = inv·(Z_0·…·Z_{n−1}).
	inv := new(field.Element).Invert(&prod[len(prod)-1])
	t := new(fixedBase)
	var zInv, x, y field.Element
	for n := len(pts) - 1; n >= 0; n-- {
		if n > 0 {
			zInv.Multiply(inv, &prod[n-1])
			inv.Multiply(inv, &zs[n])
		} else {
			zInv.Set(inv)
		}
		x.Multiply(&xs[n], &zInv)
		y.Multiply(&ys[n], &zInv)
		e := &t[n/8][n%8]
		e.yPlusX.Add(&y, &x)
		e.yMinusX.Subtract(&y, &x)
		e.t2d.Multiply(&x, &y)
		e.t2d.Multiply(&e.t2d, d2)
	}
	return t
}

// mul sets v = s·P in constant time and returns v.
func (t *fixedBase) mul(v *edwards25519.Point, s *edwards25519.Scalar) *edwards25519.Point {
	digits := signedRadix16(s)
	// s·P = Σ d_2i·256^i·P + 16·Σ d_2i+1·256^i·P
	var even, odd edwards25519.Point
	t.sum(&even, &digits, 0)
	t.sum(&odd, &digits, 1)
	clear(digits[:]) // best effort, as for the blinding scalars
	odd.MultByCofactor(&odd)
	odd.Double(&odd)
	return v.Add(&even, &odd)
}

// sum sets v = Σ_i digits[2i+parity]·256^i·P.
func (t *fixedBase) sum(v *edwards25519.Point, digits *[64]int8, parity int) {
	var acc extended
	acc.identity()
	var q affineCached
	for i := range 32 {
		t[i].selectInto(&q, digits[2*i+parity])
		acc.addAffine(&q)
	}
	acc.point(v)
}

// extended is a point in extended coordinates (X:Y:Z:T), x = X/Z, y = Y/Z,
// x·y = T/Z, the form the mixed additions accumulate in.
type extended struct {
	X, Y, Z, T field.Element
}

// identity sets p to the neutral element (0:1:1:0).
func (p *extended) identity() {
	p.X.Zero()
	p.Y.One()
	p.Z.One()
	p.T.Zero()
}

// addAffine sets p = p + q: the mixed addition of Hisil–Wong–Carter–Dawson,
// as the library's AddAffine followed by its conversion back from P1xP1.
func (p *extended) addAffine(q *affineCached) {
	var pp, mm, tt, z2, x1, y1, z1, t1 field.Element
	pp.Add(&p.Y, &p.X)
	mm.Subtract(&p.Y, &p.X)
	pp.Multiply(&pp, &q.yPlusX)
	mm.Multiply(&mm, &q.yMinusX)
	tt.Multiply(&p.T, &q.t2d)
	z2.Add(&p.Z, &p.Z)
	x1.Subtract(&pp, &mm)
	y1.Add(&pp, &mm)
	z1.Add(&z2, &tt)
	t1.Subtract(&z2, &tt)
	p.X.Multiply(&x1, &t1)
	p.Y.Multiply(&y1, &z1)
	p.Z.Multiply(&z1, &t1)
	p.T.Multiply(&x1, &y1)
}

// point sets v = p.
func (p *extended) point(v *edwards25519.Point) {
	if _, err := v.SetExtendedCoordinates(&p.X, &p.Y, &p.Z, &p.T); err != nil {
		// Sums of points on the curve are on it: a bug, not an input.
		panic("ecash: fixed-base multiplication left the curve")
	}
}

// selectInto sets q to d·row for −8 ≤ d ≤ 8, looking at every entry.
func (row *fixedRow) selectInto(q *affineCached, d int8) {
	neg := d >> 7 // all ones if d < 0
	abs := uint8((d + neg) ^ neg)
	q.yPlusX.One()
	q.yMinusX.One()
	q.t2d.Zero()
	for j := range row {
		c := subtle.ConstantTimeByteEq(abs, uint8(j+1))
		q.yPlusX.Select(&row[j].yPlusX, &q.yPlusX, c)
		q.yMinusX.Select(&row[j].yMinusX, &q.yMinusX, c)
		q.t2d.Select(&row[j].t2d, &q.t2d, c)
	}
	// −(x, y) = (−x, y): swap y+x with y−x, negate 2d·x·y.
	c := int(neg & 1)
	q.yPlusX.Swap(&q.yMinusX, c)
	q.t2d.Select(new(field.Element).Negate(&q.t2d), &q.t2d, c)
}

// signedRadix16 writes s (canonical, below 2^253) as Σ d_i·16^i with
// −8 ≤ d_i < 8 (d_63 ≤ 8), without branching on it.
func signedRadix16(s *edwards25519.Scalar) [64]int8 {
	b := s.Bytes()
	var d [64]int8
	for i := range 32 {
		d[2*i] = int8(b[i] & 15)
		d[2*i+1] = int8(b[i] >> 4)
	}
	for i := range 63 {
		carry := (d[i] + 8) >> 4
		d[i] -= carry << 4
		d[i+1] += carry
	}
	clear(b)
	return d
}

// tableCache holds tables of points' multiples by the point's encoding,
// at most max of them. Past max a new table replaces an arbitrary one, so
// the cache stays bounded whatever keys come, and a user of more keys than
// that in turn still finds most of them. With admitAfter above zero a key
// gets its table only at its admitAfter-th miss since it last had one (the
// earlier answers are nil), for keys most of which are met once; and once
// the cache is full, a table replaces another at most once every max
// misses, so that however many keys take turns the builds stay rare.
type tableCache struct {
	max        int
	admitAfter uint32
	mu         sync.RWMutex
	m          map[[32]byte]*fixedBase
	seen       map[[32]byte]uint32 // with admitAfter: misses since, at most maxSeenKeys keys
	misses     int                 // with admitAfter: misses since the last build
}

// get returns key's table, building it with build (which may return nil:
// no table) if it is not cached and may be.
func (c *tableCache) get(key [32]byte, build func() *fixedBase) *fixedBase {
	c.mu.RLock()
	t := c.m[key]
	c.mu.RUnlock()
	if t != nil {
		return t
	}
	if c.admitAfter > 0 && !c.admit(key) {
		return nil
	}
	if t = build(); t == nil {
		return nil
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[[32]byte]*fixedBase)
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for old := range c.m { // Go's map order: an arbitrary key
			delete(c.m, old)
			break
		}
	}
	c.m[key] = t
	c.mu.Unlock()
	return t
}

// admit counts a miss of key and reports whether it may now build key's
// table: at its admitAfter-th miss since it last had one (or the counts
// were last cleared, when more than maxSeenKeys keys had misses), and if
// the cache is full, not before max misses since the last build.
func (c *tableCache) admit(key [32]byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.misses++
	n := c.seen[key] + 1
	if n >= c.admitAfter && (len(c.m) < c.max || c.misses >= c.max) {
		delete(c.seen, key)
		c.misses = 0
		return true
	}
	if c.seen == nil || (n == 1 && len(c.seen) >= maxSeenKeys) {
		c.seen = make(map[[32]byte]uint32)
	}
	c.seen[key] = n
	return false
}

// csTables caches the tables of the CS keys in use: a wallet decodes its
// key set afresh for each operation, and a table (about 30 KiB, 120–150 µs
// to build) pays for itself from the second multiplication on.
var csTables = tableCache{max: maxCSTables}

const maxCSTables = 64

// mulX sets v = s·X in constant time and returns v.
func (k *CSPublicKey) mulX(v *edwards25519.Point, s *edwards25519.Scalar) *edwards25519.Point {
	t := csTables.get(k.enc, func() *fixedBase { return newFixedBase(&k.p) })
	return t.mul(v, s)
}

// encodePair is a.Bytes() and b.Bytes() with one field inversion for both
// (Montgomery's trick): an encoding divides by Z, and an inversion costs
// as much as a quarter of a fixed-base multiplication. Constant time.
func encodePair(a, b *edwards25519.Point) [2][32]byte {
	xa, ya, za, _ := a.ExtendedCoordinates()
	xb, yb, zb, _ := b.ExtendedCoordinates()
	inv := new(field.Element).Multiply(za, zb)
	inv.Invert(inv)
	var out [2][32]byte
	var zInv, x, y field.Element
	for i, c := range [2]struct{ x, y, zOther *field.Element }{{xa, ya, zb}, {xb, yb, za}} {
		zInv.Multiply(inv, c.zOther)
		x.Multiply(c.x, &zInv)
		y.Multiply(c.y, &zInv)
		copy(out[i][:], y.Bytes())
		out[i][31] |= byte(x.IsNegative() << 7)
	}
	return out
}
