// Package echeck is the pure NetBill protocol of blindbank: electronic
// checks and certified delivery of encrypted goods.
//
// It follows B. Cox, J. D. Tygar and M. Sirbu, "NetBill Security and
// Transaction Protocol" (1st USENIX Workshop on Electronic Commerce, 1995),
// with the original's Kerberos tickets, RSA and DSA replaced: every party
// signs with Ed25519, the goods are encrypted under a fresh 256-bit key K
// with ChaCha20-Poly1305, the merchant commits to K with
// KeyCommit(K) = SHA-256(tag("goods-key-commit") || K), and whatever only
// the bank may read (the EPO's payment instructions, K in the merchant's
// endorsement) is sealed to the bank's HPKE key (RFC 9180;
// X25519/HKDF-SHA256/ChaCha20-Poly1305) with the hash of what it belongs to
// as the AAD. The eight messages map to the types of this package:
//
//  1. customer → merchant  PriceRequest
//  2. merchant → customer  Quote (signed by the merchant)
//  3. customer → merchant  goods request (the quote's TID; transport only)
//  4. merchant → customer  Delivery: E_K(goods), SHA-256 of the ciphertext,
//     KeyCommit(K), a globally unique EPOID
//  5. customer → merchant  SignedEPO: the electronic payment order. Its
//     clear part (EPO) is what the merchant sees; its private part
//     (EPOPrivate: account, memo, authorisation, reply key) is sealed to
//     the bank. The customer signs tag || H(clear) || H(sealed), SET's dual
//     signature, so the merchant verifies the order without being able to
//     read the payment instructions.
//  6. merchant → bank      Endorsement: the customer's signed EPO byte for
//     byte, the merchant's account and memo, and K sealed to the bank,
//     signed by the merchant
//  7. bank → merchant      Receipt (approve with K, or decline), signed by the
//     bank, plus a CustomerBlock sealed to the customer's reply key
//  8. merchant → customer  forwards both. The customer checks the bank's
//     signature and K against the commitment, and decrypts.
//
// After any failure past step 5 either party asks the bank with a signed
// StatusQuery and gets the same receipt. Statement is the bank's signed
// account statement. Judge decides "wrong key / wrong goods" disputes from
// signed records alone.
//
// # Guarantees
//
// Every signed object is signed over a canonical binary encoding that starts
// with a domain-separation tag "blindbank/v1/<purpose>" (ecash.Encoder;
// specified in docs/PROTOCOL.md §9, with vectors in testdata/echeck/), so a
// signature for one purpose never verifies for another. Decoders never
// panic, bound every length and count before allocating, refuse trailing
// bytes, and return either a complete value or nothing; anything that
// decodes re-encodes to the same bytes. Secrets (K) are compared in
// constant time.
//
// What the signatures give, if the bank's receipt verifies:
//   - the customer agreed to exactly this price, merchant, product, goods
//     ciphertext (by hash), key commitment and EPOID, before expiry;
//   - the merchant endorsed exactly the customer's signed order: altering any
//     clear field breaks the customer's signature;
//   - the merchant never holds anything that opens the private part;
//   - an approving receipt for goods carries a K that matches the
//     commitment the customer signed (the bank checks it before approving,
//     and the customer checks it again), and a declining receipt never
//     carries K.
//
// Atomicity (one outcome per EPOID, debit and credit together, K recoverable
// from the bank once charged) is the bank's job; this package gives it the
// records to do it with.
//
// The package does no I/O: time is always an argument and randomness an
// io.Reader argument, except HPKE's ephemeral keys, which ecash.Seal draws
// from crypto/rand (sealed parts are therefore never known-answer vectors).
package echeck

import (
	"errors"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// Errors specific to electronic checks. Structural problems in encodings
// wrap ecash.ErrMalformed; bad signatures ecash.ErrBadSignature; bad keys
// ecash.ErrBadKey; bad amounts ecash.ErrBadAmount, so one mapping to RPC
// codes serves both packages.
var (
	// ErrExpired: an EPO or quote used at or after its expiry.
	ErrExpired = errors.New("echeck: expired")
	// ErrStale: a timestamp too far from the verifier's clock (an EPOID
	// dated in the future, an old status query).
	ErrStale = errors.New("echeck: timestamp outside the allowed clock skew")
	// ErrMismatch: records that should belong together do not (an
	// endorsement for another merchant or account, a receipt for another
	// EPO, an EPO that is not the merchant's offer).
	ErrMismatch = errors.New("echeck: records do not match")
	// ErrKeyMismatch: a goods key does not match its commitment.
	ErrKeyMismatch = errors.New("echeck: goods key does not match its commitment")
	// ErrDecrypt: goods do not decrypt under the given key and EPOID.
	ErrDecrypt = errors.New("echeck: goods do not decrypt")
	// ErrNoKey: a key was asked of a record that has none (a check, a
	// declined receipt).
	ErrNoKey = errors.New("echeck: record carries no goods key")
	// ErrPrivateSealed: the EPO's private part does not open (anyone but
	// the bank tried, or it was moved under another clear part). It is
	// returned together with ecash.ErrMalformed.
	ErrPrivateSealed = errors.New("echeck: EPO private part does not open")
)

// Bounds on what any peer may send.
const (
	// MaxGoodsLen bounds the goods (plaintext) of one sale: 16 MiB. The
	// ciphertext is 16 bytes longer. Transports must allow a Delivery of
	// this size (gRPC's default receive limit is 4 MiB).
	MaxGoodsLen = 16 << 20
	// MaxCiphertextLen = MaxGoodsLen + the 16-byte AEAD tag.
	MaxCiphertextLen = MaxGoodsLen + 16
	// MaxProductIDLen bounds product ids (and a check's reference).
	MaxProductIDLen = 128
	// MaxPRDLen bounds the product request data of a price request.
	MaxPRDLen = 4 << 10
	// MaxMemoLen bounds memos (EPO private part, endorsement, statement).
	MaxMemoLen = 256
	// MaxReasonLen bounds a receipt's decline reason.
	MaxReasonLen = 256
	// MaxAuthorizationLen bounds the authorisation in the private part.
	MaxAuthorizationLen = 4 << 10
	// MaxEPOBodyLen bounds the clear EPO body.
	MaxEPOBodyLen = 1 << 10
	// MaxSealedPrivateLen bounds the sealed private part.
	MaxSealedPrivateLen = 8 << 10
	// MaxSignedEPOLen bounds a signed EPO.
	MaxSignedEPOLen = 16 << 10
	// MaxStatementLines bounds the lines of one statement; the bank pages
	// longer periods.
	MaxStatementLines = 1024
	// SealedKeyLen is the length of K sealed to the bank: 32-byte HPKE enc,
	// 32-byte K, 16-byte AEAD tag.
	SealedKeyLen = 32 + 32 + 16
)

// MaxEPOLifetime bounds ExpiresAt − EPOID timestamp, so no EPO stays
// cashable for longer than this.
const MaxEPOLifetime = 30 * 24 * time.Hour

// HPKE info strings (RFC 9180 "info", no length prefix).
const (
	InfoEPOPrivate    = ecash.TagPrefix + "epo-private"
	InfoGoodsKey      = ecash.TagPrefix + "goods-key"
	InfoCustomerBlock = ecash.TagPrefix + "customer-block"
)
