package bank

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

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
// operator believes its key leaked): from the moment it returns, the bank
// issues none of its coins and accepts none in payments or swaps, only
// recoups them (Recoup). The change is saved to the key file first, then
// the new master-signed key set is appended to the audit log, then served.
// id is the denomination id in hex, or a unique prefix of it. Revoking a
// revoked denomination changes nothing. Other replicas over the same
// database serve the revocation once restarted with the changed key file.
func (b *Bank) RevokeDenomination(ctx context.Context, id string) (ecash.Denomination, error) {
	b.revoking.Lock()
	defer b.revoking.Unlock()
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
	if v.keys.Master == nil {
		// The changed key set needs the master's signature.
		return ecash.Denomination{}, fmt.Errorf("%w: revoke with 'bankd keys revoke', sign the key set offline and restart", ErrMasterOffline)
	}
	if b.editKeys == nil {
		return ecash.Denomination{}, ErrNoKeyFile
	}
	now := b.now()
	// The running keys are shared with readers: change a copy.
	next := *v.keys
	next.Denoms = slices.Clone(v.keys.Denoms)
	if err := next.Revoke(d.ID, now); err != nil {
		return ecash.Denomination{}, err
	}
	if err := b.editKeys(func(k *Keys) error { return k.Revoke(d.ID, now) }); err != nil {
		return ecash.Denomination{}, fmt.Errorf("bank: saving the revocation in the key file: %w", err)
	}
	nv := newKeyView(&next)
	if err := b.store.PublishKeySet(ctx, nv.signed, now); err != nil {
		// The key file has it: the next start publishes and serves it.
		return ecash.Denomination{}, fmt.Errorf("bank: logging the revoked key set (restart to serve it): %w", err)
	}
	b.view.Store(nv)
	d.Revoked = true
	b.log.Warn("denomination revoked", "denomination", d.ID.String(), "value", d.Value.String())
	return d, nil
}

// LogDenoms lists the denominations whose coins op issues or takes in
// payment: what a revocation forbids. (A recoup's coin is of a revoked
// denomination by design; its outputs are not.)
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
		for _, c := range o.Credits {
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
