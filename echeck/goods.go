package echeck

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/blindbank/blindbank/ecash"
)

// EncryptGoods encrypts goods for the sale id under a fresh 256-bit key K
// read from rnd (NetBill step 4). The AEAD is ChaCha20-Poly1305 (RFC 8439)
// with a zero nonce, which is safe because each K encrypts exactly one
// message; the AAD is id.Encode(), so a ciphertext cannot be passed off as
// another sale's. The ciphertext is len(goods)+16 bytes.
func EncryptGoods(rnd io.Reader, id EPOID, goods []byte) (key [32]byte, ciphertext []byte, err error) {
	if len(goods) > MaxGoodsLen {
		return key, nil, fmt.Errorf("%w: goods of %d bytes exceed %d", ecash.ErrMalformed, len(goods), MaxGoodsLen)
	}
	if _, err := io.ReadFull(rnd, key[:]); err != nil {
		return [32]byte{}, nil, fmt.Errorf("echeck: goods key: %w", err)
	}
	if isZero32(key) {
		return [32]byte{}, nil, fmt.Errorf("echeck: goods key: random source returned zeros")
	}
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return [32]byte{}, nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	return key, aead.Seal(nil, nonce[:], goods, id.Encode()), nil
}

// DecryptGoods opens what EncryptGoods produced; it fails with ErrDecrypt
// for a wrong key, a wrong EPOID or a modified ciphertext.
func DecryptGoods(key [32]byte, id EPOID, ciphertext []byte) ([]byte, error) {
	if len(ciphertext) < chacha20poly1305.Overhead || len(ciphertext) > MaxCiphertextLen {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrDecrypt, len(ciphertext))
	}
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, err
	}
	var nonce [chacha20poly1305.NonceSize]byte
	goods, err := aead.Open(nil, nonce[:], ciphertext, id.Encode())
	if err != nil {
		return nil, ErrDecrypt
	}
	return goods, nil
}

// GoodsHash is SHA-256 of the ciphertext: the checksum the customer signs.
func GoodsHash(ciphertext []byte) ecash.Hash { return sha256.Sum256(ciphertext) }

// KeyCommit is SHA-256(tag("goods-key-commit") || K): the merchant's
// commitment to K, signed by the customer in the EPO.
func KeyCommit(key [32]byte) ecash.Hash {
	e := ecash.NewEncoder("goods-key-commit")
	e.Fixed(key[:])
	return ecash.HashOf(e.Bytes())
}

// CheckKey reports (in constant time) whether key matches commit; it fails
// with ErrKeyMismatch otherwise.
func CheckKey(key [32]byte, commit ecash.Hash) error {
	got := KeyCommit(key)
	if subtle.ConstantTimeCompare(got[:], commit[:]) != 1 {
		return ErrKeyMismatch
	}
	return nil
}

// Delivery is NetBill step 4, merchant to customer: the goods encrypted
// under K, the SHA-256 of the ciphertext, the commitment to K and the EPOID
// the merchant assigned, for the price request TID. It is not signed: the
// customer signs GoodsHash and KeyCommit in the EPO, and that is what binds.
type Delivery struct {
	EPOID      EPOID
	TID        [16]byte
	Ciphertext []byte
	GoodsHash  ecash.Hash
	KeyCommit  ecash.Hash
}

// NewDelivery encrypts goods under a fresh key from rnd and returns the
// delivery and the key, which the merchant keeps for its endorsement.
func NewDelivery(rnd io.Reader, id EPOID, tid [16]byte, goods []byte) (*Delivery, [32]byte, error) {
	key, ct, err := EncryptGoods(rnd, id, goods)
	if err != nil {
		return nil, [32]byte{}, err
	}
	return &Delivery{EPOID: id, TID: tid, Ciphertext: ct, GoodsHash: GoodsHash(ct), KeyCommit: KeyCommit(key)}, key, nil
}

// Encode is the canonical delivery (tag "delivery").
func (d *Delivery) Encode() []byte {
	e := ecash.NewEncoder("delivery")
	putEPOID(e, d.EPOID)
	e.Fixed(d.TID[:])
	e.VarBytes(d.Ciphertext)
	e.Fixed(d.GoodsHash[:])
	e.Fixed(d.KeyCommit[:])
	return e.Bytes()
}

// DecodeDelivery parses a delivery; Check verifies its hash.
func DecodeDelivery(b []byte) (*Delivery, error) {
	r := newReader("delivery", b)
	d := &Delivery{EPOID: r.epoid()}
	copy(d.TID[:], r.d.Fixed(16))
	d.Ciphertext = r.bytes(MaxCiphertextLen, "ciphertext")
	d.GoodsHash = r.hash()
	d.KeyCommit = r.hash()
	if r.ok() && len(d.Ciphertext) < chacha20poly1305.Overhead {
		r.fail(malformed("ciphertext of %d bytes", len(d.Ciphertext)))
	}
	if err := r.finish(); err != nil {
		return nil, err
	}
	return d, nil
}

// Check verifies that GoodsHash is the SHA-256 of Ciphertext (the customer's
// check in NetBill step 5, before signing).
func (d *Delivery) Check() error {
	if GoodsHash(d.Ciphertext) != d.GoodsHash {
		return fmt.Errorf("%w: goods hash does not match the ciphertext", ErrMismatch)
	}
	return nil
}
