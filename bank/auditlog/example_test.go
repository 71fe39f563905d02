package auditlog_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// The bank appends an entry for each committed operation and signs a
// checkpoint; a merchant holding a receipt with the entry's index checks
// that the deposit is in the log, and its witness checks that the log only
// grows.
func Example() {
	// Bank: the online signing key (bank.Keys.Signing) and the log's name.
	signingKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	bankID := ecash.HashOf([]byte("the bank's master public key"))
	origin := auditlog.Origin(bankID)
	signer, err := auditlog.NewSigner(origin, signingKey)
	if err != nil {
		panic(err)
	}
	log := auditlog.NewMemLog() // a store keeps entries and stored hashes durably
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	// Bank: one commit appends the operations it applied, in order.
	a := log.Appender()
	_, _, err = a.Append(auditlog.Credit{Account: 1000, Amount: ecash.MustParseAmount("EUR:50"), Reference: auditlog.OptionalHash("wire 1")}, now)
	if err != nil {
		panic(err)
	}
	dep, _, err := a.Append(auditlog.Deposit{
		Merchant: 1001, Amount: ecash.MustParseAmount("EUR:2"), PaymentHash: ecash.HashOf([]byte("payment request")),
		Coins: []auditlog.SpentCoin{{ID: ecash.HashOf([]byte("coin")), Denom: ecash.HashOf([]byte("denomination")),
			Value: ecash.MustParseAmount("EUR:2"), PermissionHash: ecash.HashOf([]byte("permission"))}},
	}, now)
	if err != nil {
		panic(err)
	}
	if err := log.Commit(a); err != nil { // with the operations, atomically
		panic(err)
	}
	cp, _ := log.Checkpoint(origin)
	signed, err := auditlog.SignCheckpoint(cp, signer)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s", signed[:bytes.IndexByte(signed, '\n')+3])

	// Merchant: the receipt says entry dep.Index; fetch it with a proof.
	entry, _ := log.Entry(dep.Index)
	proof, _ := auditlog.ProveInclusion(dep.Index, cp.Size, log)

	verifier, _ := auditlog.NewVerifier(origin, signingKey.Public().(ed25519.PublicKey))
	witness, _ := auditlog.NewWitness(origin, verifier)
	held, err := witness.Accept(signed, nil)
	if err != nil {
		panic(err)
	}
	e, err := auditlog.VerifyInclusion(held, dep.Index, entry, proof)
	if err != nil {
		panic(err)
	}
	fmt.Println("entry", e.Index, e.Kind(), e.Op.(auditlog.Deposit).Amount)

	// Later: a bigger checkpoint, with a consistency proof from the one held.
	_, _ = log.Append(auditlog.Payout{Account: 1001, Amount: ecash.MustParseAmount("EUR:2")}, now.Add(time.Hour))
	cp2, _ := log.Checkpoint(origin)
	signed2, _ := auditlog.SignCheckpoint(cp2, signer)
	consistency, _ := auditlog.ProveConsistency(held.Size, cp2.Size, log)
	held, err = witness.Accept(signed2, consistency)
	fmt.Println("witness holds size", held.Size, err)
	// Output:
	// blindbank/v1/auditlog/f28101a0f11ce6072cb423454fc3041773a72c75f2afafcbfc36815578dfc272
	// 2
	// entry 1 deposit EUR:2.00
	// witness holds size 3 <nil>
}
