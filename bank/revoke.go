package bank

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/ecash"
)

// Errors of a live revocation.
var (
	ErrNoKeyFile = errors.New("bank: this bank has no key file to record the change in")
	// ErrUnrevoked refuses to publish a key set that lists as valid a
	// denomination a logged key set revoked: a replica started with a key
	// file from before the revocation must adopt it first.
	ErrUnrevoked = errors.New("bank: the key set lists as valid a denomination the audit log's key sets revoke")
)

// KeyFileEditor applies change to the bank's key file and saves it,
// durably, before the bank serves the changed key set. The node supplies it
// (it knows the file and its passphrase).
type KeyFileEditor func(change func(*Keys) error) error

// SetKeyFileEditor lets the bank change its key set while it runs.
func (b *Bank) SetKeyFileEditor(e KeyFileEditor) { b.editKeys = e }

// RevokeDenomination revokes a denomination while the bank runs (the
// operator believes its key leaked). The change is saved to the key file
// first, so a restart keeps it; then the new master-signed key set is
// appended to the audit log, which records the revocation in the store;
// then it is served. From the moment it returns, every replica over the
// store refuses to issue or accept the denomination's coins (the store
// checks each commit against the logged revocations), and each serves the
// revoked key set once SyncRevocations runs there. Its coins are only
// recouped (Recoup). id is the denomination id in hex, or a unique prefix
// of it. Revoking a revoked denomination changes nothing.
func (b *Bank) RevokeDenomination(ctx context.Context, id string) (ecash.Denomination, error) {
	b.revoking.Lock()
	defer b.revoking.Unlock()
	// Revocations other replicas logged first: the new key set keeps them.
	if err := b.syncRevocations(ctx); err != nil {
		return ecash.Denomination{}, err
	}
	v := b.view.Load()
	id = strings.ToLower(strings.TrimSpace(id))
	var match []*DenomKey
	for i := range v.keys.Denoms {
		if id != "" && strings.HasPrefix(v.keys.Denoms[i].ID.String(), id) {
			match = append(match, &v.keys.Denoms[i])
		}
	}
	if len(match) != 1 {
		return ecash.Denomination{}, fmt.Errorf("%w: %q names %d denominations of the key set; give more of the id", ecash.ErrUnknownDenomination, id, len(match))
	}
	d := match[0].Denomination
	if d.Revoked {
		return d, nil
	}
	err := b.revoke(ctx, []ecash.Hash{d.ID})
	if errors.Is(err, ErrUnrevoked) {
		// Another replica revoked a denomination meanwhile: take it in.
		if err = b.syncRevocations(ctx); err == nil {
			err = b.revoke(ctx, []ecash.Hash{d.ID})
		}
	}
	if err != nil {
		return ecash.Denomination{}, err
	}
	d.Revoked = true
	b.log.Warn("denomination revoked", "denomination", d.ID.String(), "value", d.Value.String())
	return d, nil
}

// revoke revokes ids in the key set with the bank's master key, saves the
// change to the key file, logs the new key set and serves it. The caller
// holds b.revoking.
func (b *Bank) revoke(ctx context.Context, ids []ecash.Hash) error {
	v := b.view.Load()
	if v.keys.Master == nil {
		// The changed key set needs the master's signature.
		return fmt.Errorf("%w: revoke with 'bankd keys revoke', sign the key set offline and restart", ErrMasterOffline)
	}
	if b.editKeys == nil {
		return ErrNoKeyFile
	}
	now := b.now()
	change := func(k *Keys) error {
		for _, id := range ids {
			if err := k.Revoke(id, now); err != nil {
				return err
			}
		}
		return nil
	}
	next := v.keys.clone()
	if err := change(next); err != nil {
		return err
	}
	if err := b.editKeys(change); err != nil {
		return fmt.Errorf("bank: saving the revocation in the key file: %w", err)
	}
	nv := newKeyView(next)
	if err := b.store.PublishKeySet(ctx, nv.signed, now); err != nil {
		// The key file has it: the next start publishes and serves it.
		return fmt.Errorf("bank: logging the revoked key set (restart to serve it): %w", err)
	}
	b.view.Store(nv)
	return nil
}

// SyncRevocations makes the bank serve what the audit log's key sets
// revoke and its own key set does not (another replica revoked it live).
// It adopts the logged key set that revoked last if that set is the
// bank's own but for its revocations and issue time, after verifying the
// master's signature, and saves the revocations to the key file, so that
// every replica serves the same signed bytes and a restart keeps them.
// Otherwise, with the master key online, it revokes them itself and logs
// the resulting key set; with it offline it fails (the store still refuses
// the coins; the operator revokes in the key file, signs and restarts).
// It never un-revokes. Run it before publishing the key set on start, and
// then every few seconds (WatchRevocations): wallets refresh their key
// set from any replica and must learn to recoup.
func (b *Bank) SyncRevocations(ctx context.Context) error {
	revs, err := b.store.Revocations(ctx)
	if err != nil {
		return err
	}
	if _, missing := b.missingRevocations(revs); len(missing) == 0 {
		return nil // the usual case: one read, no lock
	}
	b.revoking.Lock()
	defer b.revoking.Unlock()
	return b.syncRevocations(ctx)
}

// missingRevocations picks from the logged revocations those of
// denominations the bank serves as valid, and the log index of the key set
// that revoked the last of them.
func (b *Bank) missingRevocations(revs []Revocation) (at int64, missing []ecash.Hash) {
	v := b.view.Load()
	for _, r := range revs {
		if d, ok := v.denoms[r.Denom]; ok && !d.Revoked {
			missing = append(missing, r.Denom)
			at = max(at, r.KeySet)
		}
	}
	return at, missing
}

// syncRevocations is SyncRevocations with b.revoking held.
func (b *Bank) syncRevocations(ctx context.Context) error {
	revs, err := b.store.Revocations(ctx)
	if err != nil {
		return err
	}
	at, missing := b.missingRevocations(revs)
	if len(missing) == 0 {
		return nil
	}
	signed, ls, err := b.loggedKeySet(ctx, at)
	if err != nil {
		return err
	}
	next := b.view.Load().keys.clone()
	if !adoptRevocations(next, ls, signed) {
		if next.Master == nil {
			return fmt.Errorf("%w: the audit log's key sets revoke %d denominations this bank's key set lists as valid, and the key set at log index %d differs from it otherwise too: revoke them in the key file ('bankd keys revoke'), sign it and restart", ErrMasterOffline, len(missing), at)
		}
		if err := b.revoke(ctx, missing); err != nil {
			return err
		}
		b.log.Warn("denominations revoked by another replica, revoked here", "denominations", len(missing))
		return nil
	}
	if b.editKeys != nil {
		err := b.editKeys(func(k *Keys) error {
			if !adoptRevocations(k, ls, signed) {
				return errors.New("the key file's key set differs from the running one")
			}
			return nil
		})
		if err != nil {
			// Served anyway: the next start adopts it again from the log.
			b.log.Error("the revocation logged by another replica is served but not saved in the key file", "err", err)
		}
	}
	b.view.Store(newKeyView(next))
	b.log.Warn("denominations revoked by another replica, adopted", "denominations", len(missing), "keyset_log_index", at)
	return nil
}

// loggedKeySet reads the key set of log entry index and verifies it under
// the bank's master key.
func (b *Bank) loggedKeySet(ctx context.Context, index int64) ([]byte, *ecash.KeySet, error) {
	raw, err := b.store.LogEntries(ctx, index, 1, MaxLogReadBytes)
	if err != nil {
		return nil, nil, err
	}
	if len(raw) != 1 {
		return nil, nil, fmt.Errorf("bank: log entry %d of a revoking key set is missing", index)
	}
	e, err := auditlog.DecodeEntry(raw[0])
	if err != nil {
		return nil, nil, fmt.Errorf("bank: log entry %d: %w", index, err)
	}
	op, ok := e.Op.(auditlog.KeySet)
	if !ok {
		return nil, nil, fmt.Errorf("bank: log entry %d is a %s entry, not a key set", index, e.Kind())
	}
	ks, err := ecash.DecodeKeySet(op.Signed, b.keys.masterPub())
	if err != nil {
		return nil, nil, fmt.Errorf("bank: the key set of log entry %d: %w", index, err)
	}
	return op.Signed, ks, nil
}

// adoptRevocations revokes in k every denomination ls revokes, with ls's
// issue time and, for an offline master, its signature, and reports
// whether k's signed key set is then signed exactly: k differed from ls
// only by those revocations.
func adoptRevocations(k *Keys, ls *ecash.KeySet, signed []byte) bool {
	for _, id := range ls.Revoked() {
		for i := range k.Denoms {
			if k.Denoms[i].ID == id {
				k.Denoms[i].Revoked = true
			}
		}
	}
	k.IssuedAt = ls.IssuedAt
	if k.Master == nil {
		k.MasterSig = slices.Clone(ls.MasterSig)
	}
	return bytes.Equal(k.KeySet().Encode(), signed)
}

// WatchRevocations runs SyncRevocations every interval, and at once after
// the store refused a revoked denomination, until ctx is done.
func (b *Bank) WatchRevocations(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var failing watchFailure
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.revoked:
		}
		err := b.SyncRevocations(ctx)
		if ctx.Err() != nil {
			return
		}
		failing.report(b.log, b.now(), err)
	}
}

// watchLogEvery is how often the watcher repeats an error that persists.
const watchLogEvery = 10 * time.Minute

// watchFailure keeps the watcher's log readable: an error that persists
// (a replica whose key file differs from the log's beyond the revocations
// while the master key is offline fails every poll) is logged when it
// first appears or changes, then once every watchLogEvery with the polls
// it failed in between, and its end is logged once, with the polls that
// failed since the last line.
type watchFailure struct {
	msg    string    // the error last logged; "" while syncing works
	logged time.Time // when
	quiet  int       // polls failing with msg since, not logged
}

func (f *watchFailure) report(log *slog.Logger, now time.Time, err error) {
	switch {
	case err == nil && f.msg != "":
		log.Info("adopting the audit log's revocations works again", "failed_polls_not_logged", f.quiet)
		*f = watchFailure{}
	case err == nil:
	case err.Error() == f.msg && now.Sub(f.logged) < watchLogEvery:
		f.quiet++
	case err.Error() == f.msg:
		log.Error("adopting the audit log's revocations", "err", err, "failed_polls_not_logged", f.quiet)
		f.logged, f.quiet = now, 0
	default: // a new error: the count was the old one's
		log.Error("adopting the audit log's revocations", "err", err)
		*f = watchFailure{msg: err.Error(), logged: now}
	}
}

// refused notes a store's refusal: a denomination revoked by another
// replica wakes WatchRevocations.
func (b *Bank) refused(err error) error {
	if errors.Is(err, ecash.ErrDenominationRevoked) {
		select {
		case b.revoked <- struct{}{}:
		default:
		}
	}
	return err
}

// LogDenoms lists the denominations whose coins op issues or takes in
// payment: what a revocation forbids. (A recoup's coin is of a revoked
// denomination by design; its outputs are not. Refund credit a swap
// spends is money the bank owes, spendable after a revocation too.)
func LogDenoms(op auditlog.Op) []ecash.Hash {
	var out []ecash.Hash
	add := func(id ecash.Hash) {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	issued := func(ds []auditlog.DenomCount) {
		for _, d := range ds {
			add(d.Denom)
		}
	}
	switch o := op.(type) {
	case auditlog.Withdraw:
		issued(o.Issued)
	case auditlog.Deposit:
		for _, c := range o.Coins {
			add(c.Denom)
		}
	case auditlog.Swap:
		for _, c := range o.Spent {
			add(c.Denom)
		}
		issued(o.Issued)
	case auditlog.Recoup:
		issued(o.Issued)
	}
	return out
}

// RevokedInLog is a store's refusal of an op that uses denomination id,
// which a logged key set revoked.
func RevokedInLog(id ecash.Hash) error {
	return fmt.Errorf("%w: denomination %x…, by the audit log's key set", ecash.ErrDenominationRevoked, id[:8])
}

// KeySetRevocations is what a store does with a key set it publishes: it
// returns the denominations signed revokes, or ErrUnrevoked if signed
// lists as valid a denomination revoked reports revoked by a logged key
// set. Bytes that do not decode as a key set (the log checks only their
// tag) revoke nothing.
func KeySetRevocations(signed []byte, revoked func(ecash.Hash) (bool, error)) ([]ecash.Hash, error) {
	ks, err := ecash.DecodeKeySet(signed, nil)
	if err != nil {
		return nil, nil
	}
	for _, d := range ks.Denominations {
		if d.Revoked {
			continue
		}
		r, err := revoked(d.ID)
		if err != nil {
			return nil, err
		}
		if r {
			return nil, fmt.Errorf("%w: %s (%x…)", ErrUnrevoked, d.Value, d.ID[:8])
		}
	}
	return ks.Revoked(), nil
}

// ScanRevocations replays the log's entries from 0 to size, read n at a
// time by read, and returns the revocations their key sets make, each
// under the first key set that made it: for a store to fill its record of
// revocations from a log written before it kept one.
func ScanRevocations(size int64, read func(from int64, n int) ([][]byte, error)) ([]Revocation, error) {
	var out []Revocation
	seen := map[ecash.Hash]bool{}
	err := scanKeySets(size, read, func(index int64, ks auditlog.KeySet) {
		revoked, _ := KeySetRevocations(ks.Signed, func(ecash.Hash) (bool, error) { return false, nil })
		for _, id := range revoked {
			if !seen[id] {
				seen[id] = true
				out = append(out, Revocation{Denom: id, KeySet: index})
			}
		}
	})
	return out, err
}

// KeySetRef is a logged key set's reference (LogIndex finds it by the
// SHA-256 of its signed bytes) and its entry's index.
type KeySetRef struct {
	Ref   ecash.Hash
	Index int64
}

// ScanKeySets replays the log's entries from 0 to size, as ScanRevocations
// does, and returns the reference of every key set logged, in log order:
// for a store to index the key sets of a log written before it did.
func ScanKeySets(size int64, read func(from int64, n int) ([][]byte, error)) ([]KeySetRef, error) {
	var out []KeySetRef
	err := scanKeySets(size, read, func(index int64, ks auditlog.KeySet) {
		out = append(out, KeySetRef{sha256.Sum256(ks.Signed), index})
	})
	return out, err
}

// scanKeySets reads entries [0, size) n at a time and calls fn with each
// key set entry.
func scanKeySets(size int64, read func(from int64, n int) ([][]byte, error), fn func(index int64, ks auditlog.KeySet)) error {
	for from := int64(0); from < size; {
		raw, err := read(from, int(min(size-from, MaxLogRead)))
		if err != nil {
			return err
		}
		if len(raw) == 0 {
			return fmt.Errorf("bank: log entry %d missing below size %d", from, size)
		}
		for i, b := range raw {
			e, err := auditlog.DecodeEntry(b)
			if err != nil {
				return fmt.Errorf("bank: log entry %d: %w", from+int64(i), err)
			}
			if ks, ok := e.Op.(auditlog.KeySet); ok {
				fn(from+int64(i), ks)
			}
		}
		from += int64(len(raw))
	}
	return nil
}
