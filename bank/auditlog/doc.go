// Package auditlog is the pure core of blindbank's public audit log: the
// entries the bank appends for every committed state change, the Merkle tree
// over them, signed checkpoints, and the client-side witness that catches a
// forked log. It does no I/O and reads no clock: storage is a
// tlog.HashReader the caller supplies (MemLog is the in-memory reference),
// and every time is an argument.
//
// # Entries
//
// An Entry is one committed state change: its Index in the log (0, 1, 2, …),
// the commit Time (milliseconds), and an Op holding the operation's public
// facts — AccountOpened, Credit, Withdraw, Deposit, Swap, Refund, Recoup,
// Check (a NetBill EPO decision), Payout and KeySet (a key set published,
// which is also how a denomination is revoked). Each kind has its own canonical encoding built with
// ecash.Encoder under the tag "blindbank/v1/auditlog/<kind>"; DecodeEntry
// accepts exactly the bytes Entry.Encode produces (fixed field order,
// order-free lists sorted, amounts validated and summed, sizes bounded) and
// nothing else. docs/AUDITLOG.md specifies every encoding byte by byte;
// testdata/auditlog holds known-answer vectors.
//
// Privacy: the log is public. Entries carry hashes where a value would
// identify a customer, and a withdrawal entry holds nothing that can also be
// computed from the deposit of the coins it issued: it names the account, the
// amount, the number of coins per denomination and the hash of the signed
// request — never blinded messages or blind signatures. A deposit names the
// coin ids, denominations, merchant, amount and payment request hash. What
// links the two is only what the denomination and timing reveal to anyone.
//
// # The tree
//
// The log is an RFC 6962 Merkle tree built with golang.org/x/mod/sumdb/tlog:
// the leaf for entry i is tlog.RecordHash(encoding of entry i). A store keeps
// the "stored hashes" tlog defines (StoredHashes, written at
// tlog.StoredHashIndex(0, i)) and serves them through a tlog.HashReader;
// TreeHash, ProveInclusion and ProveConsistency read that, and
// VerifyInclusion and VerifyConsistency check the proofs. An Appender adds
// entries on top of committed hashes inside one atomic commit (a group of
// operations), and tells the store what to write.
//
// # Checkpoints
//
// A Checkpoint (origin, size, root hash) is published as a C2SP signed note
// (c2sp.org/tlog-checkpoint, c2sp.org/signed-note) signed with the bank's
// online Ed25519 signing key: NewSigner and NewVerifier build the note
// signer and verifier from the ed25519 keys the bank already holds; Origin
// names a bank's log after its bank id. The note text starts with a
// printable origin, while every canonical ecash encoding starts with a zero
// byte, so a checkpoint signature can never be mistaken for a receipt
// signature or the reverse.
//
// # Clients
//
// A Witness keeps the newest checkpoint a wallet, merchant or auditor has
// seen. Accept verifies a new checkpoint's signature and its consistency with
// the one held, and refuses two checkpoints that are not consistent with a
// *ForkError (errors.Is(err, ErrForked)) carrying both signed checkpoints as
// evidence. A Witness marshals to a canonical encoding, so a wallet can
// persist it.
package auditlog
