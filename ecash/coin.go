package ecash

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20"
)

// Hash is a SHA-256 digest: coin ids, denomination ids, request hashes.
type Hash [32]byte

// HashOf returns SHA-256(b).
func HashOf(b []byte) Hash { return sha256.Sum256(b) }

func (h Hash) String() string { return fmt.Sprintf("%x", h[:]) }

// Limits on what any peer may send.
const (
	MaxCoinsPerRequest = 1024
	maxSigLen          = 1024 // largest coin signature of any cipher (RSA-4096: 32+512)
	maxBlindedLen      = 1024
)

// Coin is a bearer token: an Ed25519 public key blind-signed under a
// denomination key. Its holder proves ownership by signing with the coin key.
type Coin struct {
	Denom Hash              // DenominationID of the signing key
	Pub   ed25519.PublicKey // the coin key
	Sig   []byte            // the denomination's signature on Pub
}

// ID is SHA-256 of the coin public key: what the bank records as spent.
func (c Coin) ID() Hash { return HashOf(c.Pub) }

// Encode is the canonical coin encoding (tag "coin").
func (c Coin) Encode() []byte {
	e := NewEncoder("coin")
	c.encodeTo(e)
	return e.Bytes()
}

func (c Coin) encodeTo(e *Encoder) {
	e.Fixed(c.Denom[:])
	e.Fixed(c.Pub)
	e.VarBytes(c.Sig)
}

func decodeCoinFrom(d *Decoder) Coin {
	var c Coin
	copy(c.Denom[:], d.Fixed(32))
	c.Pub = d.Fixed(ed25519.PublicKeySize)
	c.Sig = d.VarBytes(maxSigLen)
	return c
}

// DecodeCoin parses a canonical coin.
func DecodeCoin(b []byte) (Coin, error) {
	d := NewDecoder("coin", b)
	c := decodeCoinFrom(d)
	if err := d.Finish(); err != nil {
		return Coin{}, err
	}
	return c, nil
}

// Verify checks the denomination signature on the coin key.
func (c Coin) Verify(pk DenomPublicKey) error {
	if len(c.Pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: coin key", ErrBadKey)
	}
	return pk.Verify(c.Pub, c.Sig)
}

// PlanchetSecret is everything a wallet needs to turn a blind signature into a
// coin. It is derived from the wallet seed and a counter, so persisting the
// counter before a withdraw is enough to recover the coin after a crash, and
// a wallet can be rebuilt from its seed.
type PlanchetSecret struct {
	CoinKey   ed25519.PrivateKey
	BlindSeed [32]byte
}

// DerivePlanchet derives planchet number index from a 32-byte wallet seed:
// HKDF-SHA256(ikm=seed, salt="", info="blindbank/v1/planchet"||u64(index)),
// 64 bytes: the Ed25519 seed of the coin key, then the blinding seed.
func DerivePlanchet(seed []byte, index uint64) (PlanchetSecret, error) {
	if len(seed) != 32 {
		return PlanchetSecret{}, fmt.Errorf("%w: wallet seed must be 32 bytes", ErrBadKey)
	}
	info := binary.BigEndian.AppendUint64([]byte(TagPrefix+"planchet"), index)
	okm, err := hkdf.Key(sha256.New, seed, nil, string(info), 64)
	if err != nil {
		return PlanchetSecret{}, err
	}
	var ps PlanchetSecret
	ps.CoinKey = ed25519.NewKeyFromSeed(okm[:32])
	copy(ps.BlindSeed[:], okm[32:])
	return ps, nil
}

// BlindingReader returns the deterministic randomness stream RSA blinding
// uses for this planchet under the denomination key with encoding key (its
// Bytes) (rsaBlindingStream).
func (ps PlanchetSecret) BlindingReader(key []byte) io.Reader {
	return rsaBlindingStream(ps.BlindSeed, key)
}

// rsaBlindingStream is the ChaCha20 keystream, zero nonce, under the key
// HMAC-SHA256(key = blind seed, "blindbank/v1/rsa-blinding" ||
// SHA-256(denomination key)): the blinding stream differs per key. With
// one stream for every key, a planchet blinded under two keys (a request
// refused, then sent again for another value; or a restore, which blinds
// every index under every key) has the same factor r under both, and the
// bank, holding both private keys, recovers r = (B1/m)^d1 from the blinded
// message it never signed and matches the spent coin m to B2 = m·r^e2: the
// coin's withdrawal, and so its account.
func rsaBlindingStream(blindSeed [32]byte, key []byte) io.Reader {
	kh := sha256.Sum256(key)
	mac := hmac.New(sha256.New, blindSeed[:])
	mac.Write([]byte(TagPrefix + "rsa-blinding"))
	mac.Write(kh[:])
	c, err := chacha20.NewUnauthenticatedCipher(mac.Sum(nil), make([]byte, chacha20.NonceSize))
	if err != nil {
		panic(err) // key and nonce sizes are fixed above
	}
	return keystream{c}
}

type keystream struct{ c *chacha20.Cipher }

func (k keystream) Read(p []byte) (int, error) {
	clear(p)
	k.c.XORKeyStream(p, p)
	return len(p), nil
}

// CoinPub returns the public coin key.
func (ps PlanchetSecret) CoinPub() ed25519.PublicKey {
	return ps.CoinKey.Public().(ed25519.PublicKey)
}

// Planchet is one blinded coin in a withdraw request.
type Planchet struct {
	Denom   Hash
	Blinded []byte
}

// PrepareRequest is the planchet's first-round request for denomination d
// (nil if its cipher has none).
func (ps PlanchetSecret) PrepareRequest(d Denomination) []byte {
	return d.Key.PrepareRequest(ps.BlindSeed)
}

// Blind blinds the planchet's coin key for denomination d, given the bank's
// first-round answer (nil for RSA), deterministically.
func (ps PlanchetSecret) Blind(d Denomination, prepared []byte) (Planchet, BlindState, error) {
	blinded, st, err := d.Key.Blind(ps.BlindSeed, prepared, ps.CoinPub())
	if err != nil {
		return Planchet{}, nil, err
	}
	return Planchet{Denom: d.ID, Blinded: blinded}, st, nil
}

// DeriveAccountKey derives the wallet's bank-account key from its seed:
// HKDF-SHA256(ikm=seed, salt="", info="blindbank/v1/account-key"), 32 bytes
// as an Ed25519 seed. A wallet restored from its seed thus owns its account.
func DeriveAccountKey(seed []byte) (ed25519.PrivateKey, error) {
	if len(seed) != 32 {
		return nil, fmt.Errorf("%w: wallet seed must be 32 bytes", ErrBadKey)
	}
	okm, err := hkdf.Key(sha256.New, seed, nil, TagPrefix+"account-key", ed25519.SeedSize)
	if err != nil {
		return nil, err
	}
	return ed25519.NewKeyFromSeed(okm), nil
}
