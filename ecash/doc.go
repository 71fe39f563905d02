// Package ecash is the pure e-cash protocol of blindbank: amounts, denominations,
// blind-signature schemes, coins, payment requests, deposit permissions, sealed
// payments, receipts and double-spend proofs, swaps (change), recoups of
// revoked coins, and merchants' refunds with the credit they give back to
// coins.
//
// The package does no I/O: time is always an argument and randomness always an
// io.Reader argument, so a researcher can import it alone to verify a transcript,
// and tests can replay known answers.
//
// Every signed object is signed over a canonical binary encoding that starts with
// a domain-separation tag "blindbank/v1/<purpose>" (see Encoder and
// docs/PROTOCOL.md), never over protobuf bytes. Coins are issued under one of
// two blind-signature schemes behind the Scheme interface, chosen per
// denomination: RFC 9474 RSABSSA-SHA384-PSS-Randomized (through
// github.com/cloudflare/circl), or Clause Blind Schnorr on edwards25519 as GNU
// Taler ships it (cs.go, reproducing Taler's published vector), which needs a
// stateless first round (Prepare) and a nonce lock at the bank (LockKey).
// Coin, account, merchant and bank keys are Ed25519; payments are sealed to
// the bank with HPKE (RFC 9180, X25519/HKDF-SHA256/ChaCha20-Poly1305).
package ecash
