package merchant

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// The bank's key set in the merchant.
//
// The merchant pins the bank's master key (m/master, 32 bytes): the one
// configured (Config.BankMaster), else the one of the key set the bank
// presents at the first Open (trust on first use). It accepts only key sets
// that key signs, in the currency it started with. It fetches the key set
// at Open, and again when something the bank signed (a receipt, a
// statement, a log checkpoint) names a signing key the set it holds does
// not list: the bank rotated its signing key and restarted since.
//
// The signed key set it holds is kept at m/keyset, written (synced) before
// it is held, so that a restart resumes from it: a set served at Open
// replaces it only as a refresh would (replaceKeySet). Otherwise a replica
// not yet restarted, or anyone replaying an older set the master key
// signed, would hand a restarted merchant back a set whose signing key is
// current again after the bank retired it (its forgeries verifying), or
// undo a set it took from the log's keyset line.

var (
	keyMasterPin = []byte("m/master")
	keyKeySet    = []byte("m/keyset")
)

// keyRefreshInterval bounds how often signatures by an unknown key make
// the merchant fetch the bank's key set: a peer relaying garbage must not
// turn each of its calls into one to the bank.
const keyRefreshInterval = 5 * time.Second

// ErrMasterKey means the bank presented a key set signed by another master
// key than the one the merchant pinned or was configured with: another
// bank, or an attacker.
var ErrMasterKey = errors.New("merchant: the bank's key set is signed by another master key than the one this merchant trusts")

// BankMaster is the bank's master public key the merchant trusts.
func (m *Merchant) BankMaster() ed25519.PublicKey { return m.master }

// keySet is the bank's key set the merchant holds. Callers must not modify
// it.
func (m *Merchant) keySet() *ecash.KeySet { return m.keys.Load() }

// openKeys settles the master key to trust (configured, pinned, or pinned
// now), loads the key set held before, and fetches the bank's key set,
// which replaces the one held if a refresh would take it.
func (m *Merchant) openKeys(ctx context.Context, configured ed25519.PublicKey) error {
	raw, err := m.get(keyMasterPin)
	if err != nil {
		return err
	}
	pinned := ed25519.PublicKey(raw)
	if pinned != nil && len(pinned) != ed25519.PublicKeySize {
		return fmt.Errorf("merchant: corrupt master key pin (%d bytes)", len(pinned))
	}
	if configured != nil && pinned != nil && !configured.Equal(pinned) {
		return fmt.Errorf("%w: configured %x, but this merchant pinned %x (bank id %s) at its first start; if the bank really changed its master key, start this shop afresh (a new data directory and account)",
			ErrMasterKey, []byte(configured), raw, ecash.HashOf(pinned))
	}
	switch {
	case pinned != nil:
		m.master = pinned
	case configured != nil:
		m.master = configured
	}
	// A store from before the set was kept has none: the served one is
	// taken, as at the first Open.
	var held *ecash.KeySet
	if raw, err := m.get(keyKeySet); err != nil {
		return err
	} else if raw != nil && pinned != nil {
		if held, err = ecash.DecodeHeldKeySet(raw, pinned, ErrCorruptKeySet); err != nil {
			return err
		}
		m.currency = held.Currency
		m.keys.Store(held)
	}
	resp, err := m.bank.GetKeys(ctx, &pb.GetKeysRequest{})
	if err != nil {
		return fmt.Errorf("merchant: fetching the bank's keys: %w", err)
	}
	if held != nil {
		if _, err := m.replaceKeySet(held, resp.SignedKeyset); err != nil {
			// Another master key's set is another bank: refused, as at
			// every Open. Any other refusal keeps the set held, as a
			// refresh does; a store error fails the Open.
			if !refusedKeySet(err) || errors.Is(err, ErrMasterKey) {
				return err
			}
			m.log.Warn("the bank serves a key set this merchant does not take; keeping the one held", "err", err)
		}
		return nil
	}
	ks, err := m.acceptKeySet(resp.SignedKeyset)
	if err != nil {
		return err
	}
	b := m.db.NewBatch()
	defer b.Close()
	if err := b.Set(keyKeySet, resp.SignedKeyset, nil); err != nil {
		return err
	}
	if pinned == nil {
		if err := b.Set(keyMasterPin, ks.MasterPub, nil); err != nil {
			return err
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return err
	}
	if pinned == nil {
		m.master = ks.MasterPub
		m.log.Info("bank master key pinned", "master_key", fmt.Sprintf("%x", []byte(ks.MasterPub)), "bank_id", ks.BankID().String())
	}
	m.currency = ks.Currency
	m.keys.Store(ks)
	return nil
}

// acceptKeySet decodes and verifies a signed key set from the bank: signed
// by the trusted master key (any, before the first is pinned), in the
// merchant's currency (any, at Open).
func (m *Merchant) acceptKeySet(signed []byte) (*ecash.KeySet, error) {
	ks, err := ecash.DecodeKeySet(signed, nil)
	if err != nil {
		return nil, fmt.Errorf("merchant: the bank's key set: %w", err)
	}
	if m.master != nil && !m.master.Equal(ks.MasterPub) {
		return nil, fmt.Errorf("%w: trusted %x (bank id %s), the bank presents %x (bank id %s); refusing it",
			ErrMasterKey, []byte(m.master), ecash.HashOf(m.master), []byte(ks.MasterPub), ks.BankID())
	}
	if m.currency != "" && ks.Currency != m.currency {
		return nil, fmt.Errorf("%w: the bank's key set is now in %s, this merchant's in %s", ecash.ErrCurrencyMismatch, ks.Currency, m.currency)
	}
	return ks, nil
}

// verifyBank runs verify, a check of something the bank signed, against
// the key set the merchant holds; if the signer is not in it
// (ecash.ErrUnknownSigner), it fetches the bank's current key set and runs
// verify once more: the bank may have rotated its signing key since. Every
// check of the bank's signatures goes through here.
func (m *Merchant) verifyBank(ctx context.Context, verify func(*ecash.KeySet) error) error {
	ks := m.keySet()
	err := verify(ks)
	if !errors.Is(err, ecash.ErrUnknownSigner) {
		return err
	}
	fresh, ferr := m.refreshKeys(ctx, ks)
	if ferr != nil {
		m.log.Warn("cannot fetch the bank's key set", "err", ferr)
		return err
	}
	if fresh == ks {
		return err
	}
	return verify(fresh)
}

// refreshKeys fetches and accepts the bank's key set, one caller at a time
// and at most once per keyRefreshInterval, unless another caller replaced
// seen meanwhile. It returns the key set the merchant now holds. A set
// issued before seen (a bank replica not yet restarted) does not replace
// it.
func (m *Merchant) refreshKeys(ctx context.Context, seen *ecash.KeySet) (*ecash.KeySet, error) {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()
	if cur := m.keySet(); cur != seen {
		return cur, nil
	}
	if !m.refreshed.IsZero() && time.Since(m.refreshed) < keyRefreshInterval {
		return seen, nil
	}
	m.refreshed = time.Now()
	resp, err := m.bank.GetKeys(ctx, &pb.GetKeysRequest{})
	if err != nil {
		return seen, err
	}
	return m.replaceKeySet(seen, resp.SignedKeyset)
}

// keySetRefused is replaceKeySet's refusal of a key set, as against a
// failure to store one it takes.
type keySetRefused struct{ error }

func (e keySetRefused) Unwrap() error { return e.error }

func refusedKeySet(err error) bool { return errors.As(err, new(keySetRefused)) }

// replaceKeySet accepts signed, a key set of the bank, in place of seen,
// the one held, if it may follow it, and stores it (m/keyset) before
// holding it; it returns the key set held afterwards. A refusal is a
// keySetRefused. Caller holds refreshMu (or is Open).
func (m *Merchant) replaceKeySet(seen *ecash.KeySet, signed []byte) (*ecash.KeySet, error) {
	if bytes.Equal(signed, seen.Encode()) {
		return seen, nil // nothing to write at every Open
	}
	ks, err := m.followKeySet(seen, signed)
	if err != nil {
		return seen, keySetRefused{err}
	}
	if ks == seen {
		return seen, nil
	}
	if err := m.db.Set(keyKeySet, signed, pebble.Sync); err != nil {
		return seen, fmt.Errorf("merchant: storing the bank's key set: %w", err)
	}
	m.keys.Store(ks)
	m.log.Info("bank key set refreshed", "signing_key", fmt.Sprintf("%x", []byte(ks.SigningPub[:8])), "issued", ks.IssuedAt.UTC())
	return ks, nil
}

// followKeySet decodes signed and returns it if it may replace seen, seen
// if it is older, and an error if no honest bank serves it after seen.
func (m *Merchant) followKeySet(seen *ecash.KeySet, signed []byte) (*ecash.KeySet, error) {
	ks, err := m.acceptKeySet(signed)
	if err != nil {
		return nil, err
	}
	// As a wallet does (wallet.ErrKeySetRefused): a set issued ahead of
	// this clock would make every correctly dated one after it look older,
	// a revocation included; one that cannot follow the set held is not an
	// honest bank's. A set held that was issued ahead orders nothing.
	now := m.now()
	if ks.IssuedAt.After(now.Add(ecash.MaxClockSkew)) {
		return nil, fmt.Errorf("merchant: the bank's key set is issued %s, ahead of this clock (%s) by more than %s; keeping the one held",
			ks.IssuedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ecash.MaxClockSkew)
	}
	if ks.IssuedAt.Before(seen.IssuedAt) && !seen.IssuedAt.After(now.Add(ecash.MaxClockSkew)) {
		return seen, nil
	}
	if err := ks.Follows(seen); err != nil {
		return nil, fmt.Errorf("merchant: %w; keeping the key set held", err)
	}
	return ks, nil
}
