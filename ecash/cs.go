package ecash

// Clause Blind Schnorr (CS) signatures over edwards25519, byte for byte as GNU
// Taler / GNUnet implement them (GNUnet src/lib/util/crypto_cs.c), following
// ../shared/reference/cs-blind-schnorr.md (referred to below as "the spec", with
// its section numbers). The core (key generation, r derivation, R', the
// full-domain hash, blinded challenges, the choice bit b, the blind
// signature, unblinding and verification) reproduces GNU Taler's published
// CS vector value for value (testdata/ecash/taler-cs.json,
// cs_vectors_test.go), given the vector's blinding secrets; blindbank
// derives its own uniformly (csBlindingSecrets).
//
// The protocol has two rounds:
//
//	wallet                                   bank (denomination key x, X = x·G)
//	nonce = CSWithdrawNonce(blindSeed)
//	                      --- nonce --->
//	                                         R0, R1 = DeriveR(nonce)  (stateless)
//	                      <-- R0, R1 ---
//	c0, c1, st = BlindWithR(blindSeed, R, msg)
//	                      -- nonce, c0, c1 -->
//	                                         lock (denomination, nonce) to (c0, c1)
//	                                         b, s = SignBlinded(nonce, c0, c1)
//	                      <---- b, s -----
//	sig = st.Finalize(b, s)  (verifies)
//
// Security rests on the bank never answering two different challenge pairs
// for the same (key, nonce): both answers use the same r_b and the same b, so
// they reveal x (see TestCSNonceReuseLeaksKey). SignBlinded is deterministic,
// so answering the same challenge pair again is harmless; the bank's lock
// table is what enforces "one challenge pair per nonce".
//
// Constant-time discipline: secret scalars (x, r_i, alpha_i, beta_i) only go
// through edwards25519's constant-time Scalar arithmetic, ScalarBaseMult,
// and multiplication by X from a table of its multiples (mulX, edwards.go),
// constant time in the same way. The choice bit b is public (the bank sends
// it), so selecting r_b or alpha_b by b is not a secret-dependent branch.
// Variable-time operations (the FDH rejection loop,
// VarTimeDoubleScalarBaseMult) see no key: public keys, R values,
// challenges and signatures. The wallet's unblinding checks
// its result in constant time, as s' and c' are the coin's, public once it
// is spent but until then what would link it to its withdrawal; the FDH
// loop's count while blinding (GNUnet's too) is the one timing left that
// depends on them.
//
// Deviations from Taler, all outside the vector-tested core (see
// docs/PROTOCOL.md §8):
//   - the per-planchet secret that Taler calls the planchet master secret is
//     the planchet's BlindSeed; the coin key is not derived from it (blindbank
//     derives the coin key from the wallet seed, DerivePlanchet);
//   - the signed message is whatever the caller passes; for coins it is the
//     32-byte coin public key (Taler signs c_hash = SHA-512(coin_pub));
//   - encodings: signature R'||s' (Taler's C struct is s'||R'), blind
//     signature b (1 byte)||s (Taler: a 4-byte unsigned int then s);
//   - the blinding scalars alpha, beta are uniform mod L, not clamped
//     (csBlindingSecrets says why); the core is vector-tested with Taler's.

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"filippo.io/edwards25519"
)

// CipherCS is Clause Blind Schnorr over edwards25519 (GNU Taler's "CS").
const CipherCS Cipher = 2

// Sizes of CS encodings, in bytes.
const (
	CSPublicKeySize      = 32 // compressed edwards25519 point X = x·G
	CSPrivateKeySize     = 32 // canonical little-endian scalar x, 0 < x < L
	CSNonceSize          = 32 // the withdraw nonce (Taler's CsSessionNonce)
	CSRValuesSize        = 64 // R0 || R1
	CSBlindedMessageSize = 96 // c0 || c1 || nonce
	CSBlindSignatureSize = 33 // b || s
	CSSignatureSize      = 64 // R' || s'
)

// HKDF salts and labels of the spec (ASCII, no NUL terminator).
const (
	csSaltWithdrawR = "rw"                // §6: r derivation for withdrawals (Taler's exchange)
	csSaltNonce     = "n"                 // §5: withdraw nonce from the planchet secret
	csSaltBSeed     = "bseed"             // §7.1: blinding seed (Taler C)
	csSaltAlphaBeta = "alphabeta-uniform" // not §7.2's "alphabeta": see csBlindingSecrets
	csSaltB         = "b"                 // §10.2: the choice bit
	csFDHLabel      = "Curve25519FDH"     // §9
)

// CSNonce is the per-planchet withdraw nonce: the wallet sends it in the first
// round and again with its challenges. It reveals nothing about the coin.
type CSNonce [CSNonceSize]byte

// CSRValues is the bank's first-round answer for one nonce: R0 and R1 as
// compressed points. Encoding: R0 || R1.
type CSRValues [2][32]byte

// Bytes returns R0 || R1.
func (r CSRValues) Bytes() []byte { return slices.Concat(r[0][:], r[1][:]) }

// ParseCSRValues decodes R0 || R1 as received from the bank. Each point must be
// canonically encoded and not of small order (so not the identity); the error
// wraps ErrMalformed. A point with a component of small order passes, as in
// GNUnet's blinding (calc_r_dash): Finalize refuses any coin whose R'_b would
// carry it (see there), which costs nothing where a check of [L]R_i costs a
// scalar multiplication per point.
func ParseCSRValues(b []byte) (CSRValues, error) {
	r, err := csRValues(b)
	if err != nil {
		return CSRValues{}, err
	}
	if _, err := r.points(); err != nil {
		return CSRValues{}, err
	}
	return r, nil
}

// csRValues splits R0 || R1 without decoding the points.
func csRValues(b []byte) (CSRValues, error) {
	if len(b) != CSRValuesSize {
		return CSRValues{}, fmt.Errorf("%w: CS R values of %d bytes, want %d", ErrMalformed, len(b), CSRValuesSize)
	}
	return CSRValues{[32]byte(b[:32]), [32]byte(b[32:])}, nil
}

// points decodes and checks R0 and R1 (ParseCSRValues' rules).
func (r *CSRValues) points() ([2]*edwards25519.Point, error) {
	var p [2]*edwards25519.Point
	for i := range r {
		var err error
		if p[i], err = largeOrderPoint(r[i][:]); err != nil {
			return p, fmt.Errorf("%w: CS R%d: %v", ErrMalformed, i, err)
		}
	}
	return p, nil
}

// CSBlindedMessage is what the wallet sends in the second round for one
// planchet: the two blinded challenges and the nonce they answer.
// Encoding: c0 || c1 || nonce, the order of GNUnet's CsBlindedMessage.
type CSBlindedMessage struct {
	C     [2][32]byte // c_i = c'_i + beta_i mod L, canonical little-endian scalars
	Nonce CSNonce
}

// Bytes returns c0 || c1 || nonce.
func (m CSBlindedMessage) Bytes() []byte { return slices.Concat(m.C[0][:], m.C[1][:], m.Nonce[:]) }

// ParseCSBlindedMessage decodes c0 || c1 || nonce. Both challenges must be
// canonical scalars (< L); the error wraps ErrMalformed.
func ParseCSBlindedMessage(b []byte) (CSBlindedMessage, error) {
	if len(b) != CSBlindedMessageSize {
		return CSBlindedMessage{}, fmt.Errorf("%w: CS blinded message of %d bytes, want %d", ErrMalformed, len(b), CSBlindedMessageSize)
	}
	var m CSBlindedMessage
	for i := range m.C {
		if _, err := new(edwards25519.Scalar).SetCanonicalBytes(b[32*i : 32*i+32]); err != nil {
			return CSBlindedMessage{}, fmt.Errorf("%w: CS challenge c%d is not a canonical scalar", ErrMalformed, i)
		}
		copy(m.C[i][:], b[32*i:])
	}
	copy(m.Nonce[:], b[64:])
	return m, nil
}

// CSBlindSignature is the bank's answer to a blinded message: the clause b it
// chose and s = r_b + c_b·x mod L. Encoding: u8 b (0 or 1) || s.
type CSBlindSignature struct {
	B uint8
	S [32]byte
}

// Bytes returns b || s.
func (bs CSBlindSignature) Bytes() []byte { return append([]byte{bs.B}, bs.S[:]...) }

// ParseCSBlindSignature decodes b || s: b must be 0 or 1 and s a canonical
// scalar; the error wraps ErrMalformed.
func ParseCSBlindSignature(b []byte) (CSBlindSignature, error) {
	if len(b) != CSBlindSignatureSize {
		return CSBlindSignature{}, fmt.Errorf("%w: CS blind signature of %d bytes, want %d", ErrMalformed, len(b), CSBlindSignatureSize)
	}
	if b[0] > 1 {
		return CSBlindSignature{}, fmt.Errorf("%w: CS blind signature chooses clause %d", ErrMalformed, b[0])
	}
	if _, err := new(edwards25519.Scalar).SetCanonicalBytes(b[1:]); err != nil {
		return CSBlindSignature{}, fmt.Errorf("%w: CS blind signature s is not a canonical scalar", ErrMalformed)
	}
	bs := CSBlindSignature{B: b[0]}
	copy(bs.S[:], b[1:])
	return bs, nil
}

// CSSignature is a finalized CS signature (R', s'), valid iff
// s'·G = R' + c'·X with c' = FDH(R', msg, X). Encoding: R' || s'.
type CSSignature struct {
	R [32]byte
	S [32]byte
}

// Bytes returns R' || s'.
func (s CSSignature) Bytes() []byte { return slices.Concat(s.R[:], s.S[:]) }

// ParseCSSignature decodes R' || s'. R' must be a canonically encoded point
// that is not of small order (the identity included) and s' a canonical
// scalar; the error wraps ErrMalformed. (R' may have a component of small
// order: the verification equation is cofactored, see Verify.)
func ParseCSSignature(b []byte) (CSSignature, error) {
	s, _, _, err := parseCSSignature(b)
	return s, err
}

// parseCSSignature is ParseCSSignature, also returning R' and s' decoded.
func parseCSSignature(b []byte) (CSSignature, *edwards25519.Point, *edwards25519.Scalar, error) {
	if len(b) != CSSignatureSize {
		return CSSignature{}, nil, nil, fmt.Errorf("%w: CS signature of %d bytes, want %d", ErrMalformed, len(b), CSSignatureSize)
	}
	r, err := largeOrderPoint(b[:32])
	if err != nil {
		return CSSignature{}, nil, nil, fmt.Errorf("%w: CS signature R': %v", ErrMalformed, err)
	}
	sp, err := new(edwards25519.Scalar).SetCanonicalBytes(b[32:])
	if err != nil {
		return CSSignature{}, nil, nil, fmt.Errorf("%w: CS signature s' is not a canonical scalar", ErrMalformed)
	}
	var s CSSignature
	copy(s.R[:], b[:32])
	copy(s.S[:], b[32:])
	return s, r, sp, nil
}

// CSPublicKey is a CS denomination public key X = x·G. The zero value is
// not a key: get one from ParseCSPublicKey or CSPrivateKey.PublicKey.
type CSPublicKey struct {
	p   edwards25519.Point
	enc [CSPublicKeySize]byte
}

// CSPrivateKey is a CS denomination private key: a scalar x with 0 < x < L.
// It is held by the bank only. The zero value is not a key: get one from
// GenerateCSKey or ParseCSPrivateKey.
type CSPrivateKey struct {
	x   edwards25519.Scalar
	enc [CSPrivateKeySize]byte // canonical encoding of x: the HKDF key material "as stored"
	pub CSPublicKey
}

// GenerateCSKey draws a uniformly random private key from rnd (64 bytes per
// attempt, reduced mod L; zero is redrawn).
func GenerateCSKey(rnd io.Reader) (*CSPrivateKey, error) {
	var buf [64]byte
	zero := edwards25519.NewScalar()
	for {
		if _, err := io.ReadFull(rnd, buf[:]); err != nil {
			return nil, fmt.Errorf("ecash: CS key generation: %w", err)
		}
		x, err := new(edwards25519.Scalar).SetUniformBytes(buf[:])
		if err != nil {
			return nil, err // unreachable: the input is 64 bytes
		}
		clear(buf[:])
		if x.Equal(zero) == 0 {
			return newCSPrivate(x), nil
		}
	}
}

func newCSPrivate(x *edwards25519.Scalar) *CSPrivateKey {
	k := &CSPrivateKey{}
	k.x.Set(x)
	copy(k.enc[:], x.Bytes())
	k.pub.p.ScalarBaseMult(x)
	copy(k.pub.enc[:], k.pub.p.Bytes())
	return k
}

// ParseCSPrivateKey decodes a 32-byte little-endian scalar. It must be
// canonical (< L) and not zero; the error wraps ErrBadKey.
func ParseCSPrivateKey(b []byte) (*CSPrivateKey, error) {
	if len(b) != CSPrivateKeySize {
		return nil, fmt.Errorf("%w: CS private key of %d bytes, want %d", ErrBadKey, len(b), CSPrivateKeySize)
	}
	x, err := new(edwards25519.Scalar).SetCanonicalBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%w: CS private key is not a canonical scalar", ErrBadKey)
	}
	if x.Equal(edwards25519.NewScalar()) == 1 {
		return nil, fmt.Errorf("%w: CS private key is zero", ErrBadKey)
	}
	return newCSPrivate(x), nil
}

// ParseCSPublicKey decodes a compressed point. It must be canonically
// encoded, not the identity and in the prime-order subgroup (libsodium's
// rules for the points it multiplies); the error wraps ErrBadKey.
func ParseCSPublicKey(b []byte) (*CSPublicKey, error) {
	p, err := csPrimeOrderPoint(b)
	if err != nil {
		return nil, fmt.Errorf("%w: CS public key: %v", ErrBadKey, err)
	}
	k := &CSPublicKey{}
	k.p.Set(p)
	copy(k.enc[:], b)
	return k, nil
}

// PublicKey returns the public half of k.
func (k *CSPrivateKey) PublicKey() *CSPublicKey { return &k.pub }

// Bytes returns the canonical 32-byte little-endian encoding of x.
func (k *CSPrivateKey) Bytes() []byte { return slices.Clone(k.enc[:]) }

// DeriveR returns R0, R1 for nonce: r_i from HKDF(salt "rw", key material x,
// info nonce), clamped, and R_i = r_i·G (spec §6). It is stateless and
// deterministic: the bank can answer the first round without storing
// anything, and re-derives r_0, r_1 when it signs.
func (k *CSPrivateKey) DeriveR(nonce CSNonce) CSRValues {
	return k.deriveR(csSaltWithdrawR, &nonce).public()
}

// csR holds the secret scalars r_0, r_1 for one nonce.
type csR struct {
	raw [64]byte // the HKDF output before clamping (for the known-answer test)
	r   [2]edwards25519.Scalar
}

func (k *CSPrivateKey) deriveR(salt string, nonce *CSNonce) *csR {
	out := csKDF(64, []byte(salt), k.enc[:], nonce[:])
	v := &csR{}
	copy(v.raw[:], out)
	for i := range v.r {
		csClampScalar(&v.r[i], out[32*i:32*i+32])
	}
	clear(out)
	return v
}

// public returns R_i = r_i·G (constant time: r_i is secret).
func (v *csR) public() CSRValues {
	var R [2]edwards25519.Point
	for i := range v.r {
		R[i].ScalarBaseMult(&v.r[i])
	}
	return encodePair(&R[0], &R[1])
}

// SignBlinded answers a blinded message (spec §10.2-3): the clause
// b = HKDF(4, salt "b", x, nonce)[0] & 1 and s = r_b + c_b·x mod L, with r_b
// re-derived from the nonce. It is deterministic: the same message always
// gets the same answer.
//
// The caller MUST make sure that it never answers two different challenge
// pairs for the same nonce under the same key (the bank locks each nonce to
// the first pair it answers): two such answers reveal x.
func (k *CSPrivateKey) SignBlinded(m CSBlindedMessage) (CSBlindSignature, error) {
	return k.signBlinded(csSaltWithdrawR, &m)
}

func (k *CSPrivateKey) signBlinded(salt string, m *CSBlindedMessage) (CSBlindSignature, error) {
	var c [2]edwards25519.Scalar
	for i := range c {
		if _, err := c[i].SetCanonicalBytes(m.C[i][:]); err != nil {
			return CSBlindSignature{}, fmt.Errorf("%w: CS challenge c%d is not a canonical scalar", ErrMalformed, i)
		}
	}
	b := k.chooseB(&m.Nonce)
	r := k.deriveR(salt, &m.Nonce)
	s := new(edwards25519.Scalar).MultiplyAdd(&c[b], &k.x, &r.r[b])
	out := CSBlindSignature{B: b}
	copy(out.S[:], s.Bytes())
	return out, nil
}

// chooseB is GNUNET_CRYPTO_cs_sign_derive's b: the 4 HKDF bytes read as a
// little-endian uint32, mod 2. b is sent to the client, so it is public.
func (k *CSPrivateKey) chooseB(nonce *CSNonce) uint8 {
	t := csKDF(4, []byte(csSaltB), k.enc[:], nonce[:])
	return t[0] & 1
}

// Prepare answers a first-round request (a 32-byte nonce) with R0 || R1.
func (k *CSPrivateKey) Prepare(req []byte) ([]byte, error) {
	if len(req) != CSNonceSize {
		return nil, fmt.Errorf("%w: CS nonce of %d bytes", ErrMalformed, len(req))
	}
	return k.DeriveR(CSNonce(req)).Bytes(), nil
}

// LockKey is the nonce of a blinded message (LockKeyOf): the bank must
// never answer two different challenges for one nonce.
func (k *CSPrivateKey) LockKey(blinded []byte) ([]byte, error) { return LockKeyOf(&k.pub, blinded) }

// Public returns the public half as a DenomPublicKey.
func (k *CSPrivateKey) Public() DenomPublicKey { return &k.pub }

// BlindSign is SignBlinded on encodings: blinded is c0 || c1 || nonce and the
// answer is b || s. It has the signature of DenomPrivateKey.BlindSign.
func (k *CSPrivateKey) BlindSign(blinded []byte) ([]byte, error) {
	m, err := ParseCSBlindedMessage(blinded)
	if err != nil {
		return nil, err
	}
	bs, err := k.SignBlinded(m)
	if err != nil {
		return nil, err
	}
	return bs.Bytes(), nil
}

// Cipher returns CipherCS.
func (k *CSPublicKey) Cipher() Cipher { return CipherCS }

// PrepareRequest is the planchet's nonce, derived from its blinding seed.
func (k *CSPublicKey) PrepareRequest(blindSeed [32]byte) []byte {
	n := CSWithdrawNonce(blindSeed)
	return n[:]
}

// Blind blinds msg given the bank's R0 || R1 for the planchet's nonce.
func (k *CSPublicKey) Blind(blindSeed [32]byte, prepared, msg []byte) ([]byte, BlindState, error) {
	r, err := csRValues(prepared) // BlindWithR decodes and checks the points
	if err != nil {
		return nil, nil, err
	}
	m, st, err := k.BlindWithR(blindSeed, r, msg)
	if err != nil {
		return nil, nil, err
	}
	return m.Bytes(), st, nil
}

// CSScheme is Clause Blind Schnorr as a Scheme.
type CSScheme struct{}

// Cipher returns CipherCS.
func (CSScheme) Cipher() Cipher { return CipherCS }

// GenerateKey makes a CS key; CS keys have one size, so bits must be 0.
func (CSScheme) GenerateKey(rnd io.Reader, bits int) (DenomPrivateKey, error) {
	if bits != 0 {
		return nil, fmt.Errorf("%w: CS keys have no size to choose", ErrBadKey)
	}
	return GenerateCSKey(rnd)
}

// ParsePublicKey parses a 32-byte CS public key.
func (CSScheme) ParsePublicKey(b []byte) (DenomPublicKey, error) {
	k, err := ParseCSPublicKey(b)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// ParsePrivateKey parses a 32-byte CS private scalar.
func (CSScheme) ParsePrivateKey(b []byte) (DenomPrivateKey, error) {
	k, err := ParseCSPrivateKey(b)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Bytes returns the 32-byte compressed point.
func (k *CSPublicKey) Bytes() []byte { return slices.Clone(k.enc[:]) }

// CSWithdrawNonce derives a planchet's withdraw nonce from its 32-byte blind
// seed: HKDF(32, salt "n", blindSeed) (Taler's TALER_cs_withdraw_nonce_derive
// with the blind seed as the planchet master secret).
func CSWithdrawNonce(blindSeed [32]byte) CSNonce {
	return CSNonce(csKDF(CSNonceSize, []byte(csSaltNonce), blindSeed[:]))
}

// csBlindingSeed is Taler's TALER_planchet_blinding_secret_create with the
// denomination key added: HKDF(32, salt "bseed", blindSeed, info X || R0 ||
// R1). The wallet blinds one planchet under several keys (a refused
// withdrawal's indices reused for other values, restore's scan), and the
// bank chooses R: were the blinding the same under every key, a bank that
// answered the same R under each could carry a coin's unblinding back to
// the withdrawal that showed its blinded message under another key, and
// link them (TestCSBlindingBoundToKey). X makes it differ per key, as the
// RSA blinding stream does (§3.1 of PROTOCOL).
func csBlindingSeed(blindSeed [32]byte, x *CSPublicKey, r *CSRValues) [32]byte {
	return [32]byte(csKDF(32, []byte(csSaltBSeed), blindSeed[:], x.enc[:], r[0][:], r[1][:]))
}

// CSBlindState is the wallet's secret between BlindWithR and Finalize. It
// holds the blinding scalars alpha_0, alpha_1 and the blinded nonces R'_0,
// R'_1. It can be rebuilt after a crash: BlindWithR is a deterministic
// function of the blind seed, the R values (which the bank re-derives on
// request) and the message.
type CSBlindState struct {
	pub     *CSPublicKey
	msg     []byte
	alpha   [2]edwards25519.Scalar
	rBlind  [2][32]byte            // R'_i
	cPrime  [2]edwards25519.Scalar // c'_i = FDH(R'_i, msg, X)
	prehash [2][sha512.Size]byte   // SHA-512(R'_i || msg) (for the known-answer test)
	blinded CSBlindedMessage       // c_0, c_1, nonce
}

// BlindWithR blinds msg for the planchet with blind seed blindSeed, given the
// bank's R values for the planchet's nonce (CSWithdrawNonce(blindSeed)):
//
//	bseed            = HKDF(32, "bseed", blindSeed, X || R0 || R1)
//	alpha_i, beta_i  = HKDF(128, "alphabeta", bseed), clamped
//	R'_i             = R_i + alpha_i·G + beta_i·X
//	c'_i             = FDH(R'_i, msg, X)
//	c_i              = c'_i + beta_i mod L
//
// It returns the blinded message (c0, c1, nonce) to send and the state that
// turns the bank's answer into a signature. The R values are checked as
// ParseCSRValues does (canonical, not of small order).
func (k *CSPublicKey) BlindWithR(blindSeed [32]byte, r CSRValues, msg []byte) (CSBlindedMessage, *CSBlindState, error) {
	R, err := r.points()
	if err != nil {
		return CSBlindedMessage{}, nil, err
	}
	bseed := csBlindingSeed(blindSeed, k, &r)
	st := k.blind(&bseed, CSWithdrawNonce(blindSeed), R, msg)
	clear(bseed[:])
	return st.blinded, st, nil
}

// blind is BlindWithR's work: the blinding secrets come from bseed, and R
// holds the checked points R0, R1.
func (k *CSPublicKey) blind(bseed *[32]byte, nonce CSNonce, R [2]*edwards25519.Point, msg []byte) *CSBlindState {
	alpha, beta := csBlindingSecrets(bseed)
	st := k.blindWith(&alpha, &beta, nonce, R, msg)
	clear(alpha[:]) // best effort: the Scalar values are overwritten with zero
	clear(beta[:])
	return st
}

// blindWith is the vector-tested core of blinding, given the blinding
// scalars (GNU Taler's vector has its own, derived by clamping).
func (k *CSPublicKey) blindWith(alpha, beta *[2]edwards25519.Scalar, nonce CSNonce, R [2]*edwards25519.Point, msg []byte) *CSBlindState {
	st := &CSBlindState{pub: k, msg: slices.Clone(msg), alpha: *alpha}
	st.blinded.Nonce = nonce
	var rb [2]edwards25519.Point
	for i := range rb {
		// R'_i = R_i + alpha_i·G + beta_i·X; alpha and beta are secret, so
		// only constant-time multiplications.
		rb[i].ScalarBaseMult(&alpha[i])
		rb[i].Add(&rb[i], k.mulX(new(edwards25519.Point), &beta[i]))
		rb[i].Add(R[i], &rb[i])
	}
	st.rBlind = encodePair(&rb[0], &rb[1])
	for i := range rb {
		st.prehash[i] = csPrehash(&st.rBlind[i], msg)
		st.cPrime[i].Set(csFDH(&st.prehash[i], k))
		c := new(edwards25519.Scalar).Add(&st.cPrime[i], &beta[i])
		copy(st.blinded.C[i][:], c.Bytes())
	}
	return st
}

// Finalize unblinds the bank's answer (spec §10.4): s' = s + alpha_b mod L,
// signature (R'_b, s'). It checks the result with GNUnet's exact equation,
// s'·G − c'·X = R'_b, so a wrong answer from the bank is caught here; the
// error wraps ErrBadSignature. Exactness is what keeps a coin's R' in the
// prime-order subgroup (s'·G − c'·X always is): a bank that put a component
// of small order into R_b, to recognise the coin by it at deposit (Verify's
// cofactored rule would let it through), gets its answer refused. R'_{1−b}
// never leaves the wallet but hashed and masked by beta_{1−b} in c_{1−b}.
func (st *CSBlindState) Finalize(bs CSBlindSignature) (CSSignature, error) {
	if bs.B > 1 {
		return CSSignature{}, fmt.Errorf("%w: CS blind signature chooses clause %d", ErrBadSignature, bs.B)
	}
	s, err := new(edwards25519.Scalar).SetCanonicalBytes(bs.S[:])
	if err != nil {
		return CSSignature{}, fmt.Errorf("%w: CS blind signature s is not a canonical scalar", ErrBadSignature)
	}
	sp := new(edwards25519.Scalar).Add(s, &st.alpha[bs.B])
	sig := CSSignature{R: st.rBlind[bs.B]}
	copy(sig.S[:], sp.Bytes())
	// s'·G − c'·X, with c' kept from blinding, in constant time: until the
	// coin is spent, s' and c' are what would link it to this withdrawal.
	want := new(edwards25519.Point).ScalarBaseMult(sp)
	want.Subtract(want, st.pub.mulX(new(edwards25519.Point), &st.cPrime[bs.B]))
	if subtle.ConstantTimeCompare(want.Bytes(), sig.R[:]) != 1 || subtle.ConstantTimeCompare(sig.R[:], csIdentity) == 1 {
		return CSSignature{}, fmt.Errorf("%w: the bank's CS blind signature does not verify", ErrBadSignature)
	}
	return sig, nil
}

// Unblind is Finalize on encodings: blindSig is b || s, the result R' || s'.
// It has the signature of BlindState.Unblind.
func (st *CSBlindState) Unblind(blindSig []byte) ([]byte, error) {
	bs, err := ParseCSBlindSignature(blindSig)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	sig, err := st.Finalize(bs)
	if err != nil {
		return nil, err
	}
	return sig.Bytes(), nil
}

// Verify checks a CS signature R' || s' on msg (spec §10.5, cofactored so
// that batches can check it too, see batch.go): R' a canonical encoding of
// a point not of small order, s' canonical, and
// [8](s'·G − R' − FDH(R', msg, X)·X) = 0. Errors wrap ErrBadSignature.
func (k *CSPublicKey) Verify(msg, sig []byte) error {
	if len(sig) != CSSignatureSize {
		return fmt.Errorf("%w: CS signature of %d bytes, want %d", ErrBadSignature, len(sig), CSSignatureSize)
	}
	// verify checks R' itself: decoding it up front (ParseCSSignature)
	// would cost a square root that the fast path does not need.
	s := CSSignature{R: [32]byte(sig[:32]), S: [32]byte(sig[32:])}
	return k.verify(msg, &s)
}

func (k *CSPublicKey) verify(msg []byte, sig *CSSignature) error {
	sp, err := new(edwards25519.Scalar).SetCanonicalBytes(sig.S[:])
	if err != nil {
		return fmt.Errorf("%w: CS signature s' is not a canonical scalar", ErrBadSignature)
	}
	if subtle.ConstantTimeCompare(sig.R[:], csIdentity) == 1 {
		return fmt.Errorf("%w: CS signature R' is the identity", ErrBadSignature)
	}
	ph := csPrehash(&sig.R, msg)
	c := csFDH(&ph, k)
	// s'·G = R' + c'·X  <=>  s'·G - c'·X = R'. A signature an honest wallet
	// unblinded meets it exactly: the left side encodes to the received R'
	// (which is then canonical, and not of small order as it is not the
	// identity). Otherwise R' may still differ from it by a point of small
	// order, which the cofactored rule accepts. All values are public, so
	// variable time is fine.
	c.Negate(c)
	lhs := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(c, &k.p, sp)
	if subtle.ConstantTimeCompare(lhs.Bytes(), sig.R[:]) == 1 {
		return nil
	}
	r, err := largeOrderPoint(sig.R[:])
	if err != nil {
		return fmt.Errorf("%w: CS signature R': %v", ErrBadSignature, err)
	}
	if lhs.Subtract(lhs, r).MultByCofactor(lhs).Equal(edwards25519.NewIdentityPoint()) != 1 {
		return fmt.Errorf("%w: CS signature does not verify", ErrBadSignature)
	}
	return nil
}

// csKDF is GNUnet's HKDF (spec §2): HMAC-SHA512 extract with salt, then
// HMAC-SHA256 expand of the concatenated info chunks, n bytes (n <= 255·32).
func csKDF(n int, salt, ikm []byte, info ...[]byte) []byte {
	prk := hmacSHA512(salt, ikm) // extract
	out := csExpand(n, &prk, info...)
	clear(prk[:])
	return out
}

// csExpand is the KDF's expand step: T(i) = HMAC-SHA256(prk, T(i-1) ||
// info || i), n bytes of T(1) || T(2) || ...
func csExpand(n int, prk *[sha512.Size]byte, info ...[]byte) []byte {
	out := make([]byte, 0, n+sha256.Size)
	var t [sha256.Size]byte
	for i := 1; len(out) < n; i++ {
		prev := t[:]
		if i == 1 {
			prev = nil
		}
		t = hmacSHA256(prk[:], prev, info, byte(i))
		out = append(out, t[:]...)
	}
	clear(t[:])
	clear(out[n:cap(out)])
	return out[:n]
}

// hmacSHA512 and hmacSHA256 are HMAC (RFC 2104) computed with the one-shot
// hash functions over buffers on the stack. The KDF runs once or twice per
// CS verification and several times per signature, and crypto/hmac
// allocates two hash states and serialises them on every New: most of a
// verification's garbage. Two functions, not one over a hash function
// value: a call through a func value would move the buffers to the heap.
// Tested against RFC 4231 and GNUnet's KDF vector.
func hmacSHA512(key, msg []byte) [sha512.Size]byte {
	const bs = sha512.BlockSize
	var long [sha512.Size]byte
	if len(key) > bs {
		long = sha512.Sum512(key)
		key = long[:]
	}
	var buf [bs + 2*sha512.Size]byte
	in := append(hmacPad(buf[:0], bs, key, 0x36), msg...)
	inner := sha512.Sum512(in)
	outer := append(hmacPad(buf[:0], bs, key, 0x5c), inner[:]...)
	sum := sha512.Sum512(outer)
	clear(buf[:])
	clear(in)
	clear(long[:])
	return sum
}

func hmacSHA256(key, prev []byte, info [][]byte, ctr byte) [sha256.Size]byte {
	const bs = sha256.BlockSize
	var long [sha256.Size]byte
	if len(key) > bs {
		long = sha256.Sum256(key)
		key = long[:]
	}
	var buf [bs + 4*sha256.Size]byte
	in := append(hmacPad(buf[:0], bs, key, 0x36), prev...)
	for _, c := range info {
		in = append(in, c...)
	}
	in = append(in, ctr)
	inner := sha256.Sum256(in)
	outer := append(hmacPad(buf[:0], bs, key, 0x5c), inner[:]...)
	sum := sha256.Sum256(outer)
	clear(buf[:])
	clear(in)
	clear(long[:])
	return sum
}

// hmacPad appends the HMAC key block XORed with pad: key (at most bs
// bytes) zero-padded to bs bytes.
func hmacPad(dst []byte, bs int, key []byte, pad byte) []byte {
	for i := range bs {
		b := pad
		if i < len(key) {
			b ^= key[i]
		}
		dst = append(dst, b)
	}
	return dst
}

// csClampScalar sets s to the RFC 7748-clamped 32 bytes b, reduced mod L
// (spec §3.1 and §3.3: what libsodium's *_noclamp calls compute with
// GNUnet's clamped-but-unreduced secrets).
func csClampScalar(s *edwards25519.Scalar, b []byte) {
	if _, err := s.SetBytesWithClamping(b); err != nil {
		panic("ecash: CS clamp of " + fmt.Sprint(len(b)) + " bytes") // callers pass 32
	}
}

// csBlindingSecrets derives the blinding scalars alpha_0, beta_0, alpha_1,
// beta_1 from bseed: each 64 bytes of HKDF(256, salt "alphabeta-uniform",
// bseed) reduced mod L, uniform on [0, L). GNUnet's derivation (spec §7.2)
// clamps 32 bytes instead, and a clamped value reduced mod L lies in a set
// S = {2^254 + 8k mod L : k < 2^251} of half the scalars, where membership
// is cheap to test. The bank sees s and c_b at withdrawal and s', R' at
// deposit; alpha_b = s' − s and beta_b = c_b − FDH(R', msg, X) are both in
// S for the true pair and for a quarter of the others, so clamping would
// cut a coin's anonymity set by four (TestCSBlindingScalarsUniform).
func csBlindingSecrets(bseed *[32]byte) (alpha, beta [2]edwards25519.Scalar) {
	out := csKDF(256, []byte(csSaltAlphaBeta), bseed[:])
	for i := range 2 {
		csUniformScalar(&alpha[i], out[128*i:128*i+64])
		csUniformScalar(&beta[i], out[128*i+64:128*i+128])
	}
	clear(out)
	return alpha, beta
}

// csUniformScalar sets s to the 64 bytes b, little-endian, mod L.
func csUniformScalar(s *edwards25519.Scalar, b []byte) {
	if _, err := s.SetUniformBytes(b); err != nil {
		panic("ecash: CS uniform scalar of " + fmt.Sprint(len(b)) + " bytes") // callers pass 64
	}
}

// csPrehash is SHA-512(R' || msg) (spec §9).
func csPrehash(rBlind *[32]byte, msg []byte) [sha512.Size]byte {
	h := sha512.New()
	h.Write(rBlind[:])
	h.Write(msg)
	return [sha512.Size]byte(h.Sum(nil))
}

// csFDH is cs_full_domain_hash (spec §9, §2.1): KDFmod(L, salt = X, ikm =
// prehash, label "Curve25519FDH" || u16be(ctr)), the big-endian value read as
// a scalar. The loop depends only on public values.
func csFDH(prehash *[sha512.Size]byte, k *CSPublicKey) *edwards25519.Scalar {
	var info [len(csFDHLabel) + 2]byte
	copy(info[:], csFDHLabel)
	prk := hmacSHA512(k.enc[:], prehash[:]) // the KDF's extract: the same for every counter
	for ctr := 0; ctr <= 0xffff; ctr++ {
		binary.BigEndian.PutUint16(info[len(csFDHLabel):], uint16(ctr))
		buf := csExpand(32, &prk, info[:])
		buf[0] &= 0x1f // L has 253 bits
		slices.Reverse(buf)
		if c, err := new(edwards25519.Scalar).SetCanonicalBytes(buf); err == nil {
			return c
		}
	}
	// Each attempt fails with probability < 1/2: 65536 failures in a row do
	// not happen.
	panic("ecash: CS full-domain hash found no value below L")
}

var csIdentity = edwards25519.NewIdentityPoint().Bytes()

// largeOrderPoint decodes a point that must be canonically encoded and not
// of small order (which excludes the identity): the rule for CS points and
// for Ed25519 keys (CheckEd25519Key). Canonical means y < p; the other
// non-canonical encodings (x = 0 with the sign bit set) are of points of
// small order, refused anyway. Checking the bytes spares re-encoding the
// point, a field inversion, on every verification.
func largeOrderPoint(b []byte) (*edwards25519.Point, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("point of %d bytes", len(b))
	}
	if !canonicalY(b) {
		return nil, errors.New("non-canonical point encoding")
	}
	p, err := new(edwards25519.Point).SetBytes(b)
	if err != nil {
		return nil, errors.New("not a point")
	}
	if new(edwards25519.Point).MultByCofactor(p).Equal(edwards25519.NewIdentityPoint()) == 1 {
		return nil, errors.New("point of small order")
	}
	return p, nil
}

// canonicalY reports whether the 32-byte encoding b holds y < p = 2^255-19
// in its low 255 bits.
func canonicalY(b []byte) bool {
	if b[31]&0x7f != 0x7f || b[0] < 0xed {
		return true
	}
	for _, c := range b[1:31] {
		if c != 0xff {
			return true
		}
	}
	return false
}

// csMinusOne is L-1.
var csMinusOne = func() *edwards25519.Scalar {
	one, err := new(edwards25519.Scalar).SetCanonicalBytes(append([]byte{1}, make([]byte, 31)...))
	if err != nil {
		panic(err)
	}
	return one.Negate(one)
}()

// csPrimeOrderPoint is largeOrderPoint plus a check that [L]P is the identity: the
// point has no small-order component (libsodium's rule for the points it
// multiplies). The check is variable-time; every point it sees is public.
func csPrimeOrderPoint(b []byte) (*edwards25519.Point, error) {
	p, err := largeOrderPoint(b)
	if err != nil {
		return nil, err
	}
	// (L-1)·P + P = L·P.
	lp := new(edwards25519.Point).VarTimeDoubleScalarBaseMult(csMinusOne, p, edwards25519.NewScalar())
	if lp.Add(lp, p).Equal(edwards25519.NewIdentityPoint()) != 1 {
		return nil, errors.New("point outside the prime-order subgroup")
	}
	return p, nil
}
