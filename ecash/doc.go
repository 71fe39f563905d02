// Package ecash is the pure e-cash protocol of blindbank: amounts, denominations,
// blind-signature schemes, coins, payment requests, deposit permissions, sealed
// payments, receipts and double-spend proofs.
//
// The package does no I/O: time is always an argument and randomness always an
// io.Reader argument, so a researcher can import it alone to verify a transcript,
// and tests can replay known answers.
//
// Every signed object is signed over a canonical binary encoding that starts with
// a domain-separation tag "blindbank/v1/<purpose>" (see Encoder and
// docs/PROTOCOL.md), never over protobuf bytes. Coin issuance follows RFC 9474
// (RSABSSA-SHA384-PSS-Randomized) through github.com/cloudflare/circl behind the
// Scheme interface; coin, account, merchant and bank keys are Ed25519; payments
// are sealed to the bank with HPKE (RFC 9180, X25519/HKDF-SHA256/ChaCha20-Poly1305).
package ecash
