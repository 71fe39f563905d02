package bank

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// The audit log (bank/auditlog): the service builds each change's entry
// (the public facts, never data that links a withdrawal to a deposit), the
// store appends it in the change's commit, and the bank serves signed
// checkpoints, entries and proofs. Checkpoints are signed by the online
// signing key, under the log's origin, which names the bank by its id.

// ErrLogRange refuses a log read or proof outside the log.
var ErrLogRange = fmt.Errorf("%w: outside the audit log", ecash.ErrMalformed)

// LogOrigin is the name of this bank's log in its checkpoints.
func (b *Bank) LogOrigin() string { return auditlog.Origin(b.keySet().BankID()) }

// PublishKeySet logs the bank's signed key set, unless it is the one last
// logged: the start of a bank with new keys appends one entry.
func (b *Bank) PublishKeySet(ctx context.Context) error {
	ks, signed := b.KeySet()
	if err := b.store.PublishKeySet(ctx, signed, b.now()); err != nil {
		return err
	}
	b.warnOlderNewest(ctx, ks, signed)
	return nil
}

// warnOlderNewest tells the operator when the log's newest key set entry
// (the one checkpoints name) is issued before the set this bank serves,
// logged earlier: a version before this one logged an older set again (a
// replica restarting on an old key file), and a set in the log is never
// logged again now. Wallets and merchants this bank serves then report
// the bank at every verify-log, until a newer set is logged. Checked once
// a publish; a failure to read is only logged.
func (b *Bank) warnOlderNewest(ctx context.Context, ks *ecash.KeySet, signed []byte) {
	logged, index, err := b.newestLoggedKeySet(ctx, sha256.Sum256(signed), ks.MasterPub)
	if err != nil {
		b.log.Warn("reading the audit log's newest key set", "err", err)
		return
	}
	if logged == nil || !logged.IssuedAt.Before(ks.IssuedAt) {
		return
	}
	b.log.Error("the audit log names an older key set than the one this bank serves as its newest (an earlier version logged an old set again); the wallets and merchants it serves report the bank at every verify-log until a newer key set is logged: publish one (bankd keys extend further ahead)",
		"entry", index, "logged_issued_at", logged.IssuedAt.UTC(), "served_issued_at", ks.IssuedAt.UTC())
}

// newestLoggedKeySet reads the log's newest key set entry, and its index;
// nil if there is none, or if it is the set whose hash is served.
func (b *Bank) newestLoggedKeySet(ctx context.Context, served ecash.Hash, master ed25519.PublicKey) (*ecash.KeySet, int64, error) {
	_, newest, found, err := b.store.LogHead(ctx)
	if err != nil || !found || newest.Ref == served {
		return nil, 0, err
	}
	raw, err := b.store.LogEntries(ctx, newest.Index, 1, MaxLogReadBytes)
	if err != nil {
		return nil, 0, err
	}
	if len(raw) != 1 {
		return nil, 0, fmt.Errorf("entry %d: %d entries read", newest.Index, len(raw))
	}
	e, err := auditlog.DecodeEntry(raw[0])
	if err != nil {
		return nil, 0, fmt.Errorf("entry %d: %w", newest.Index, err)
	}
	op, ok := e.Op.(auditlog.KeySet)
	if !ok {
		return nil, 0, fmt.Errorf("entry %d is a %s, not a key set", newest.Index, e.Kind())
	}
	ks, err := ecash.DecodeKeySet(op.Signed, master)
	if err != nil {
		return nil, 0, fmt.Errorf("entry %d: %w", newest.Index, err)
	}
	return ks, newest.Index, nil
}

// LogIndex returns the index of the audit-log entry of a deposit (by
// payment hash), withdrawal or swap (by request hash), recoup (by request
// hash), check (by EPO hash) or key set (by the SHA-256 of its signed
// bytes), or 0 if there is none (entry 0 is always the first key set).
func (b *Bank) LogIndex(ctx context.Context, ref ecash.Hash) (int64, error) {
	i, _, err := b.store.LogIndex(ctx, ref)
	return i, err
}

// Checkpoint returns a signed checkpoint of the log as it is now, naming
// the newest key set logged in it (read with the size, so one another
// replica logs meanwhile, and this one may not serve yet, is named exactly
// when the size covers it): a wallet this replica serves an older key set
// learns of the newer one from the checkpoint.
func (b *Bank) Checkpoint(ctx context.Context) ([]byte, error) {
	size, ks, found, err := b.store.LogHead(ctx)
	if err != nil {
		return nil, err
	}
	if size > 0 && !found {
		return nil, fmt.Errorf("bank: the audit log of %d entries has no key set entry (entry 0 is always the first)", size)
	}
	root, err := auditlog.TreeHash(size, b.hashReader(ctx))
	if err != nil {
		return nil, err
	}
	s, err := auditlog.NewSigner(b.LogOrigin(), b.keys.Signing)
	if err != nil {
		return nil, err
	}
	cp := auditlog.Checkpoint{Origin: b.LogOrigin(), Size: size, Root: root,
		KeySet: auditlog.KeySetLine{Index: ks.Index, Hash: ks.Ref}, HasKeySet: found}
	return auditlog.SignCheckpoint(cp, s)
}

// LogEntries returns up to n encoded entries from index from.
func (b *Bank) LogEntries(ctx context.Context, from int64, n int) ([][]byte, error) {
	if from < 0 || n <= 0 {
		return nil, fmt.Errorf("%w: %d entries from %d", ErrLogRange, n, from)
	}
	return b.store.LogEntries(ctx, from, min(n, MaxLogRead), MaxLogReadBytes)
}

// InclusionProof proves that the tree of size entries holds entry index.
func (b *Bank) InclusionProof(ctx context.Context, index, size int64) ([]tlog.Hash, error) {
	if err := b.checkSize(ctx, size); err != nil {
		return nil, err
	}
	if index < 0 || index >= size {
		return nil, fmt.Errorf("%w: entry %d of %d", ErrLogRange, index, size)
	}
	p, err := auditlog.ProveInclusion(index, size, b.hashReader(ctx))
	return p, err
}

// ConsistencyProof proves that the tree of newSize entries extends the
// tree of oldSize entries.
func (b *Bank) ConsistencyProof(ctx context.Context, oldSize, newSize int64) ([]tlog.Hash, error) {
	if err := b.checkSize(ctx, newSize); err != nil {
		return nil, err
	}
	if oldSize < 0 || oldSize > newSize {
		return nil, fmt.Errorf("%w: sizes %d to %d", ErrLogRange, oldSize, newSize)
	}
	p, err := auditlog.ProveConsistency(oldSize, newSize, b.hashReader(ctx))
	return p, err
}

// checkSize refuses tree sizes beyond the committed log.
func (b *Bank) checkSize(ctx context.Context, size int64) error {
	n, err := b.store.LogSize(ctx)
	if err != nil {
		return err
	}
	if size < 1 || size > n {
		return fmt.Errorf("%w: tree of %d entries, the log has %d", ErrLogRange, size, n)
	}
	return nil
}

func (b *Bank) hashReader(ctx context.Context) tlog.HashReader {
	return tlog.HashReaderFunc(func(ix []int64) ([]tlog.Hash, error) { return b.store.LogHashes(ctx, ix) })
}

// The entries of the service's operations.

// denomCounts counts coins per denomination.
func denomCounts(keys []*DenomKey) []auditlog.DenomCount {
	at := map[ecash.Hash]int{}
	var out []auditlog.DenomCount
	for _, k := range keys {
		if i, ok := at[k.ID]; ok {
			out[i].Count++
			continue
		}
		at[k.ID] = len(out)
		out = append(out, auditlog.DenomCount{Denom: k.ID, Value: k.Value, Count: 1})
	}
	return out // the log sorts
}

// spentCoins lists coins spent with the hashes of their permissions.
func spentCoins(coins []SpentCoin, keys []*DenomKey) []auditlog.SpentCoin {
	out := make([]auditlog.SpentCoin, 0, len(coins))
	for i, c := range coins {
		if c.Credit > 0 {
			continue // a refund credit spent: logged in Swap.Credits
		}
		out = append(out, auditlog.SpentCoin{ID: c.ID, Denom: keys[i].ID, Value: keys[i].Value, PermissionHash: ecash.HashOf(c.Permission)})
	}
	return out // the log sorts
}
