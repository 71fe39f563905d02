package wallet

import (
	"crypto/ed25519"
	"errors"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
)

// ErrCorruptKeySet: the bank's key set the wallet stores (m/keyset) does
// not decode under the master key it pinned (a damaged store). Nothing
// that needs the bank's keys works then, and no fetched set replaces it,
// since none can be checked against it (acceptKeySet). DropKeySet is the
// way out (docs/KEYS.md §5).
var ErrCorruptKeySet = errors.New("wallet: the stored key set does not decode")

// ErrKeySetChanged: the key set stored is not the one DropKeySet was asked
// to drop (the wallet took another since it was shown); nothing was
// dropped.
var ErrKeySetChanged = errors.New("wallet: the stored key set is not the one shown; nothing dropped")

// ErrNoMasterPin: DropKeySet refuses to drop the key set of a wallet that
// pinned no master key apart from it (one from before m/master) and whose
// set does not name it readably: the next fetch would then trust any
// master key. Restoring the wallet from its seed does that knowingly.
var ErrNoMasterPin = errors.New("wallet: no master key is pinned apart from the stored key set, whose own cannot be read, so the next key set could not be checked; nothing dropped (restore the wallet from its seed instead)")

// HeldKeySet is the bank's key set the wallet stores, read under the
// master key it pinned, as a merchant's is (merchant.HeldKeySet).
type HeldKeySet = ecash.HeldKeySet

// HeldKeySet returns the bank's key set the wallet stores, decoded under
// the master key it pinned, or why it does not (Err, ErrCorruptKeySet).
// Unlike KeySet it does not fail on a set that does not decode. It writes
// nothing and needs no bank.
func (w *Wallet) HeldKeySet() (*HeldKeySet, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.heldKeySet()
}

// heldKeySet is HeldKeySet; caller holds w.mu.
func (w *Wallet) heldKeySet() (*HeldKeySet, error) {
	signed, err := get(w.db, keyKeySet)
	if err != nil {
		return nil, err
	}
	pin, err := w.pinnedMaster()
	if errors.Is(err, ErrCorruptKeySet) {
		// No pin apart, and the stored set names none readably.
		h := ecash.ReadHeldKeySet(signed, nil, ErrCorruptKeySet)
		h.Err = err
		return h, nil
	}
	if err != nil {
		return nil, err
	}
	return ecash.ReadHeldKeySet(signed, pin, ErrCorruptKeySet), nil
}

// DropKeySet deletes the key set the wallet stores, and when it was
// fetched, if its hash is shown (the one the user agreed to drop, from
// HeldKeySet; else ErrKeySetChanged), in one synced write, and returns
// what it held. Coins, the pinned master key and all else stay: a wallet
// from before the pin was kept apart has the master key its stored set
// names pinned in the same write, and one whose set names none readably
// drops nothing (ErrNoMasterPin). The next use of the bank's keys then
// fetches the bank's set and takes it as a new wallet takes its first,
// checked against the pinned master key only. Until then nothing tells
// the bank's current set from an older one it signed (a replica not yet
// restarted, a replay), which may list as valid a key it has revoked
// since (ecash.KeySet.Follows): drop a set only when it stops the wallet
// (ErrCorruptKeySet).
func (w *Wallet) DropKeySet(shown ecash.Hash) (*HeldKeySet, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	held, err := w.heldKeySet()
	switch {
	case err != nil:
		return nil, err
	case held.Signed == nil || held.Hash != shown:
		return held, ErrKeySetChanged
	case len(held.Master) != ed25519.PublicKeySize:
		return held, ErrNoMasterPin
	}
	pinned, err := get(w.db, keyMasterPin)
	if err != nil {
		return held, err
	}
	b := w.db.NewBatch()
	defer b.Close()
	if pinned == nil { // held.Master is the one the stored set names
		err = b.Set(keyMasterPin, held.Master, nil)
	}
	if err := errors.Join(err, b.Delete(keyKeySet, nil), b.Delete(keyKeySetFetched, nil)); err != nil {
		return held, err
	}
	return held, b.Commit(pebble.Sync)
}
