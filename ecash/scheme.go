package ecash

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// Cipher names a blind-signature scheme on the wire.
type Cipher uint8

// CipherRSA is RFC 9474 RSABSSA-SHA384-PSS-Randomized.
const CipherRSA Cipher = 1

func (c Cipher) String() string {
	switch c {
	case CipherRSA:
		return "rsa"
	case CipherCS:
		return "cs"
	}
	return fmt.Sprintf("cipher(%d)", uint8(c))
}

var (
	ErrUnknownCipher = errors.New("ecash: unknown cipher")
	ErrBadSignature  = errors.New("ecash: bad signature")
	ErrBadKey        = errors.New("ecash: bad key")
)

// Scheme is a blind-signature scheme for denomination keys. A second cipher
// (Clause Blind Schnorr) implements the same interface.
type Scheme interface {
	Cipher() Cipher
	GenerateKey(rnd io.Reader, bits int) (DenomPrivateKey, error)
	ParsePublicKey(b []byte) (DenomPublicKey, error)
	ParsePrivateKey(b []byte) (DenomPrivateKey, error)
}

// DenomPublicKey is the public half of a denomination key: wallets blind with
// it and everyone verifies coins with it.
type DenomPublicKey interface {
	Cipher() Cipher
	// Bytes is the canonical encoding of the key (RSA: PKIX DER; CS: the
	// 32-byte point).
	Bytes() []byte
	// PrepareRequest is the first-round request for the planchet with this
	// blinding seed: nil when the cipher has no first round (RSA), the
	// 32-byte nonce for CS, whose R values the bank derives from it.
	PrepareRequest(blindSeed [32]byte) []byte
	// Blind blinds msg, given the bank's first-round answer (nil for RSA).
	// It is deterministic in blindSeed, so a wallet can blind again after a
	// crash and get the same blinded message and state.
	Blind(blindSeed [32]byte, prepared, msg []byte) (blinded []byte, st BlindState, err error)
	// Verify checks a finalized coin signature on msg.
	Verify(msg, sig []byte) error
}

// BlindState is the client's secret between Blind and Unblind.
type BlindState interface {
	// Unblind turns the bank's blind signature into a coin signature and
	// verifies it, so a bad signature from the bank is caught here.
	Unblind(blindSig []byte) ([]byte, error)
}

// DenomPrivateKey is held by the bank only.
type DenomPrivateKey interface {
	Public() DenomPublicKey
	// Bytes is the canonical private encoding (RSA: PKCS#8 DER; CS: the scalar).
	Bytes() []byte
	// Prepare answers a first-round request, statelessly (CS: R0 || R1 for
	// a nonce). Ciphers without a first round refuse it.
	Prepare(req []byte) ([]byte, error)
	// LockKey checks the form of a blinded message as BlindSign would,
	// without signing (so that a request with a bad one is refused before
	// any of its others is signed), and returns what the bank must lock to
	// it before it answers: for CS the nonce, since answering two
	// challenges for one nonce reveals the private key. Nil for ciphers
	// without that danger.
	LockKey(blinded []byte) ([]byte, error)
	// BlindSign signs a blinded message. It validates the input size first.
	BlindSign(blinded []byte) ([]byte, error)
}

// SchemeFor returns the scheme of a cipher.
func SchemeFor(c Cipher) (Scheme, error) {
	switch c {
	case CipherRSA:
		return RSAScheme{}, nil
	case CipherCS:
		return CSScheme{}, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnknownCipher, c)
}

// RSAScheme is RFC 9474 RSABSSA-SHA384-PSS-Randomized. A coin signature is the
// 32-byte message randomizer followed by the RSA-PSS signature over
// randomizer||msg, which the standard library's rsa.VerifyPSS also accepts
// (SHA-384, salt length 48).
type RSAScheme struct{}

// RSA key sizes accepted from peers.
const (
	MinRSABits = 2048
	MaxRSABits = 4096
)

const rsaRandomizerLen = 32

func (RSAScheme) Cipher() Cipher { return CipherRSA }

func (RSAScheme) GenerateKey(rnd io.Reader, bits int) (DenomPrivateKey, error) {
	if bits < MinRSABits || bits > MaxRSABits || bits%8 != 0 {
		return nil, fmt.Errorf("%w: RSA size %d", ErrBadKey, bits)
	}
	sk, err := rsa.GenerateKey(rnd, bits)
	if err != nil {
		return nil, err
	}
	return newRSAPrivate(sk)
}

func (RSAScheme) ParsePublicKey(b []byte) (DenomPublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	pk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an RSA key", ErrBadKey)
	}
	return newRSAPublic(pk)
}

func (RSAScheme) ParsePrivateKey(b []byte) (DenomPrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	sk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an RSA key", ErrBadKey)
	}
	return newRSAPrivate(sk)
}

type rsaPublic struct {
	pk     *rsa.PublicKey
	der    []byte
	client blindrsa.Client
}

func newRSAPublic(pk *rsa.PublicKey) (*rsaPublic, error) {
	if bits := pk.N.BitLen(); bits < MinRSABits || bits > MaxRSABits || pk.E != 65537 {
		return nil, fmt.Errorf("%w: RSA key of %d bits, exponent %d", ErrBadKey, bits, pk.E)
	}
	der, err := x509.MarshalPKIXPublicKey(pk)
	if err != nil {
		return nil, err
	}
	c, err := blindrsa.NewClient(blindrsa.SHA384PSSRandomized, pk)
	if err != nil {
		return nil, err
	}
	return &rsaPublic{pk: pk, der: der, client: c}, nil
}

func (p *rsaPublic) Cipher() Cipher { return CipherRSA }
func (p *rsaPublic) Bytes() []byte  { return p.der }

func (p *rsaPublic) PrepareRequest([32]byte) []byte { return nil }

// Blind draws the RFC 9474 randomness (message randomizer, PSS salt,
// blinding factor) from the ChaCha20 keystream under the blind seed and
// this key (rsaBlindingStream).
func (p *rsaPublic) Blind(blindSeed [32]byte, prepared, msg []byte) ([]byte, BlindState, error) {
	if prepared != nil {
		return nil, nil, fmt.Errorf("%w: RSA has no first round", ErrMalformed)
	}
	return p.BlindReader(rsaBlindingStream(blindSeed, p.der), msg)
}

// BlindReader blinds with randomness from rnd (known-answer tests feed the
// RFC 9474 vector's values).
func (p *rsaPublic) BlindReader(rnd io.Reader, msg []byte) ([]byte, BlindState, error) {
	prepared, err := p.client.Prepare(rnd, msg)
	if err != nil {
		return nil, nil, err
	}
	blinded, st, err := p.client.Blind(rnd, prepared)
	if err != nil {
		return nil, nil, err
	}
	return blinded, &rsaBlindState{p: p, prepared: prepared, st: st}, nil
}

func (p *rsaPublic) Verify(msg, sig []byte) error {
	if len(sig) != rsaRandomizerLen+p.pk.Size() {
		return fmt.Errorf("%w: RSA coin signature of %d bytes", ErrBadSignature, len(sig))
	}
	prepared := append(append(make([]byte, 0, rsaRandomizerLen+len(msg)), sig[:rsaRandomizerLen]...), msg...)
	h := sha512.Sum384(prepared)
	if err := rsa.VerifyPSS(p.pk, crypto.SHA384, h[:], sig[rsaRandomizerLen:], &rsa.PSSOptions{SaltLength: sha512.Size384}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return nil
}

type rsaBlindState struct {
	p        *rsaPublic
	prepared []byte
	st       blindrsa.State
}

func (s *rsaBlindState) Unblind(blindSig []byte) ([]byte, error) {
	if len(blindSig) != s.p.pk.Size() {
		return nil, fmt.Errorf("%w: blind signature of %d bytes", ErrBadSignature, len(blindSig))
	}
	sig, err := s.p.client.Finalize(s.st, blindSig)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return append(append([]byte(nil), s.prepared[:rsaRandomizerLen]...), sig...), nil
}

type rsaPrivate struct {
	sk  *rsa.PrivateKey
	pub *rsaPublic
	// crt signs two-prime keys (all that GenerateKey makes); signer, circl's
	// signer without the CRT, signs any other key PKCS#8 can hold.
	crt    *rsaCRT
	signer blindrsa.Signer
}

func newRSAPrivate(sk *rsa.PrivateKey) (*rsaPrivate, error) {
	pub, err := newRSAPublic(&sk.PublicKey)
	if err != nil {
		return nil, err
	}
	k := &rsaPrivate{sk: sk, pub: pub}
	if len(sk.Primes) == 2 {
		if k.crt, err = newRSACRT(sk); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
		}
	} else {
		k.signer = blindrsa.NewSigner(sk)
	}
	return k, nil
}

func (k *rsaPrivate) Public() DenomPublicKey { return k.pub }

func (k *rsaPrivate) Bytes() []byte {
	b, err := x509.MarshalPKCS8PrivateKey(k.sk)
	if err != nil {
		panic(err) // only for unsupported key types, which we never build
	}
	return b
}

func (k *rsaPrivate) Prepare([]byte) ([]byte, error) {
	return nil, fmt.Errorf("%w: RSA has no first round", ErrMalformed)
}

// LockKey is LockKeyOf the public key.
func (k *rsaPrivate) LockKey(blinded []byte) ([]byte, error) { return LockKeyOf(k.pub, blinded) }

// LockKeyOf is DenomPrivateKey.LockKey, which needs only the public key: a
// bank whose keys are in a signer process checks planchets as one holding
// them does. RSA locks nothing, and refuses what BlindSign would: a
// blinded message not exactly k bytes or not below N (ErrMalformed); CS
// locks the nonce of a well-formed blinded message.
func LockKeyOf(pub DenomPublicKey, blinded []byte) ([]byte, error) {
	switch k := pub.(type) {
	case *rsaPublic:
		if size := k.pk.Size(); len(blinded) != size {
			return nil, fmt.Errorf("%w: blinded message of %d bytes, want %d", ErrMalformed, len(blinded), size)
		}
		if new(big.Int).SetBytes(blinded).Cmp(k.pk.N) >= 0 {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, errRSATooLarge)
		}
		return nil, nil
	case *CSPublicKey:
		m, err := ParseCSBlindedMessage(blinded)
		if err != nil {
			return nil, err
		}
		return m.Nonce[:], nil
	}
	return nil, fmt.Errorf("%w: a key of cipher %s", ErrUnknownCipher, pub.Cipher())
}

// BlindSign is RFC 9474 BlindSign: blinded^d mod N, refusing a blinded
// message that is not exactly k bytes or not below N (ErrMalformed). The
// result is checked against the public key before it is returned.
func (k *rsaPrivate) BlindSign(blinded []byte) ([]byte, error) {
	if len(blinded) != k.sk.Size() {
		return nil, fmt.Errorf("%w: blinded message of %d bytes, want %d", ErrMalformed, len(blinded), k.sk.Size())
	}
	if k.crt != nil {
		sig, err := k.crt.sign(blinded)
		if errors.Is(err, errRSATooLarge) {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		return sig, err
	}
	sig, err := k.signer.BlindSign(blinded)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return sig, nil
}
