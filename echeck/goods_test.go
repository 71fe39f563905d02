package echeck_test

import (
	"bytes"
	"crypto/sha256"
	"slices"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

func TestEPOIDText(t *testing.T) {
	t.Parallel()
	id := echeck.NewEPOID(7, t0, 1)
	if got := id.String(); got != "7-1741964966535-1" {
		t.Fatalf("String = %q", got)
	}
	for _, id := range []echeck.EPOID{id, echeck.NewEPOID(0, time.UnixMilli(0), 0), checkEPOID(),
		echeck.NewEPOID(1<<64-1, time.UnixMilli(1<<63-1), 1<<64-1)} {
		back, err := echeck.ParseEPOID(id.String())
		if err != nil || !back.Equal(id) || back.String() != id.String() {
			t.Fatalf("ParseEPOID(%q) = %v, %v", id.String(), back, err)
		}
		dec, err := echeck.DecodeEPOID(id.Encode())
		if err != nil || !dec.Equal(id) {
			t.Fatalf("DecodeEPOID = %v, %v", dec, err)
		}
	}
	for _, s := range []string{
		"", "7", "7-1", "7-1-1-1", "07-1-1", "7-01-1", "7-1-01", "+7-1-1", "7--1-1", "7-1-1 ", " 7-1-1",
		"7-9223372036854775808-1", "18446744073709551616-1-1", "7-1-1x", "7-١-1", "7-1.0-1",
	} {
		if id, err := echeck.ParseEPOID(s); err == nil || !isZero(id) {
			t.Errorf("ParseEPOID(%q) = %v, %v", s, id, err)
		}
	}
}

func TestEPOIDEqualAndKey(t *testing.T) {
	t.Parallel()
	a := echeck.EPOID{Merchant: 7, Timestamp: t0.Add(300 * time.Microsecond).In(time.FixedZone("X", 3600)), Serial: 1}
	if !a.Equal(testEPOID()) {
		t.Fatal("Equal must compare milliseconds, not locations or sub-millisecond parts")
	}
	if a.Equal(echeck.NewEPOID(7, t0, 2)) || a.Equal(echeck.NewEPOID(8, t0, 1)) || a.Equal(echeck.NewEPOID(7, t0.Add(time.Millisecond), 1)) {
		t.Fatal("Equal ignores a field")
	}
	ids := []echeck.EPOID{
		echeck.NewEPOID(7, t0, 2), echeck.NewEPOID(6, t0.Add(time.Hour), 9),
		echeck.NewEPOID(7, t0.Add(-time.Millisecond), 9), echeck.NewEPOID(7, t0, 1),
	}
	slices.SortFunc(ids, func(x, y echeck.EPOID) int { kx, ky := x.Key(), y.Key(); return bytes.Compare(kx[:], ky[:]) })
	want := []string{"6-1741968566535-9", "7-1741964966534-9", "7-1741964966535-1", "7-1741964966535-2"}
	for i, id := range ids {
		if id.String() != want[i] {
			t.Fatalf("key order %v", ids)
		}
	}
	k := testEPOID().Key()
	if !bytes.Equal(k[:], testEPOID().Encode()[tagLen("epoid"):]) {
		t.Fatal("Key is not the inline encoding")
	}
	if !(echeck.EPOID{}).IsZero() || testEPOID().IsZero() {
		t.Fatal("IsZero")
	}
}

func TestNewCheckEPOID(t *testing.T) {
	t.Parallel()
	id, err := echeck.NewCheckEPOID(fixedReader(0, 0, 0, 0, 0, 0, 0, 5), 7, t0)
	if err != nil || id.Serial != 1<<63|5 || id.Merchant != 7 || !id.Timestamp.Equal(t0) {
		t.Fatalf("NewCheckEPOID = %v, %v", id, err)
	}
	if _, err := echeck.NewCheckEPOID(fixedReader(1, 2, 3), 7, t0); err == nil {
		t.Fatal("short random source accepted")
	}
}

func TestGoodsEncryption(t *testing.T) {
	t.Parallel()
	id := testEPOID()
	key, ct, err := echeck.EncryptGoods(goodsKeyReader(), id, testGoods)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key[:], bytes.Repeat([]byte{9}, 32)) || len(ct) != len(testGoods)+16 {
		t.Fatalf("key %x, ciphertext of %d bytes", key, len(ct))
	}
	got, err := echeck.DecryptGoods(key, id, ct)
	if err != nil || !bytes.Equal(got, testGoods) {
		t.Fatalf("DecryptGoods = %q, %v", got, err)
	}
	if echeck.GoodsHash(ct) != sha256.Sum256(ct) {
		t.Fatal("GoodsHash is not SHA-256 of the ciphertext")
	}

	otherKey := key
	otherKey[31] ^= 1
	_, err = echeck.DecryptGoods(otherKey, id, ct)
	wantErr(t, err, echeck.ErrDecrypt)
	_, err = echeck.DecryptGoods(key, echeck.NewEPOID(7, t0, 2), ct)
	wantErr(t, err, echeck.ErrDecrypt)
	bad := bytes.Clone(ct)
	bad[0] ^= 1
	_, err = echeck.DecryptGoods(key, id, bad)
	wantErr(t, err, echeck.ErrDecrypt)
	_, err = echeck.DecryptGoods(key, id, ct[:15])
	wantErr(t, err, echeck.ErrDecrypt)

	// Empty goods are allowed (a 16-byte ciphertext).
	k2, ct2, err := echeck.EncryptGoods(fixedReader(bytes.Repeat([]byte{1}, 32)...), id, nil)
	if err != nil || len(ct2) != 16 {
		t.Fatal(err)
	}
	if g, err := echeck.DecryptGoods(k2, id, ct2); err != nil || len(g) != 0 {
		t.Fatal(g, err)
	}

	if _, _, err := echeck.EncryptGoods(goodsKeyReader(), id, make([]byte, echeck.MaxGoodsLen+1)); err == nil {
		t.Fatal("oversize goods accepted")
	}
	if _, _, err := echeck.EncryptGoods(fixedReader(1, 2), id, testGoods); err == nil {
		t.Fatal("short random source accepted")
	}
	if _, _, err := echeck.EncryptGoods(fixedReader(make([]byte, 32)...), id, testGoods); err == nil {
		t.Fatal("all-zero key accepted")
	}
}

func TestKeyCommit(t *testing.T) {
	t.Parallel()
	var key [32]byte
	copy(key[:], bytes.Repeat([]byte{9}, 32))
	e := ecash.NewEncoder("goods-key-commit")
	e.Fixed(key[:])
	c := echeck.KeyCommit(key)
	if c != sha256.Sum256(e.Bytes()) || c == sha256.Sum256(key[:]) {
		t.Fatal("KeyCommit is not SHA-256(tag || K)")
	}
	if err := echeck.CheckKey(key, c); err != nil {
		t.Fatal(err)
	}
	key[0] ^= 1
	wantErr(t, echeck.CheckKey(key, c), echeck.ErrKeyMismatch)
}

func TestDelivery(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	d := g.delivery
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	if d.KeyCommit != echeck.KeyCommit(g.key) || d.TID != g.req.TID || !d.EPOID.Equal(testEPOID()) {
		t.Fatal("delivery fields")
	}
	bad := *d
	bad.Ciphertext = bytes.Clone(d.Ciphertext)
	bad.Ciphertext[3] ^= 1
	wantErr(t, bad.Check(), echeck.ErrMismatch)
}

func TestQuote(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	if err := g.quote.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := g.quote.CheckRequest(g.req, t0); err != nil {
		t.Fatal(err)
	}
	wantErr(t, g.quote.CheckRequest(g.req, t0.Add(15*time.Minute)), echeck.ErrExpired)
	other := *g.req
	other.PRD = []byte("format=mp3")
	wantErr(t, g.quote.CheckRequest(&other, t0), echeck.ErrMismatch)
	other = *g.req
	other.TID[0] ^= 1
	wantErr(t, g.quote.CheckRequest(&other, t0), echeck.ErrMismatch)
	other = *g.req
	other.Customer = edPub(g.merchant)
	wantErr(t, g.quote.CheckRequest(&other, t0), echeck.ErrMismatch)

	q := *g.quote
	q.Price = ecash.MustParseAmount("EUR:0.50")
	wantErr(t, q.Verify(), ecash.ErrBadSignature)
	q = *g.quote
	q.Price.Value = 0
	q.Sign(g.merchant)
	wantErr(t, q.Verify(), ecash.ErrBadAmount)
	_, err := echeck.DecodeQuote(q.Encode())
	wantErr(t, err, ecash.ErrBadAmount)
	q = *g.quote
	q.MerchantPub = make([]byte, 32) // not a point of large order
	wantErr(t, q.Verify(), ecash.ErrBadKey)
}
