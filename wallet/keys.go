package wallet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// The bank's key set in the wallet.
//
// The wallet keeps the last signed key set it accepted (m/keyset), when it
// fetched it (m/keyset-fetched, u64 Unix nanoseconds of the wallet's clock)
// and the master key it pinned on the first fetch (m/master, 32 bytes).
// Every key set after the first must be signed by the pinned master key.
// The key set lists the bank's past, current and future denomination keys
// with their windows, so a stored set stays usable across rotations; the
// wallet fetches it again when it is older than KeySetMaxAge, or when some
// value the bank still honours has no key withdrawable now (the bank must
// have made newer ones). A fetched set older than the stored one (a bank
// replica not yet restarted, a replay) does not replace it; one issued
// ahead of the wallet's clock by more than ecash.MaxClockSkew, or one no
// honest bank would issue after the stored one, is refused
// (ErrKeySetRefused). A stored set that no longer decodes (a damaged
// store: ErrCorruptKeySet) is replaced by none until the user drops it
// (HeldKeySet, DropKeySet in heldkeys.go).

var (
	keyKeySetFetched = []byte("m/keyset-fetched")
	keyMasterPin     = []byte("m/master")
)

// KeySetMaxAge is how long the wallet uses a stored key set before asking
// the bank for its current one.
const KeySetMaxAge = time.Hour

// ErrMasterKeyChanged means the bank presented a key set signed by another
// master key than the one the wallet pinned: another bank, or an attacker.
// The wallet refuses it and keeps the pinned one.
var ErrMasterKeyChanged = errors.New("wallet: the bank's key set is signed by another master key than the one this wallet pinned")

// ErrKeySetRefused means the bank presented a key set, signed by its
// master key, that no honest bank serves: issued in the future (beyond
// ecash.MaxClockSkew of the wallet's clock), or replacing the stored set
// in a way no honest bank's does (ecash.KeySet.Follows). The wallet keeps the
// stored set.
var ErrKeySetRefused = errors.New("wallet: the bank's key set is refused")

// errKeySetUndecodable: the key set the bank presented does not decode,
// or its master signature does not verify.
var errKeySetUndecodable = errors.New("wallet: the bank's key set")

// keySetRefused reports whether err, from acceptKeySet, is the wallet
// refusing what the bank presented (it does not decode or verify, another
// master key signed it, or no honest bank serves it: the bank's fault)
// rather than failing itself, in its store say.
func keySetRefused(err error) bool {
	return errors.Is(err, errKeySetUndecodable) || errors.Is(err, ErrMasterKeyChanged) || errors.Is(err, ErrKeySetRefused)
}

// pinnedMaster is the master key the wallet pinned: m/master, or for
// wallets from before it the one named in the stored key set. nil if the
// wallet never accepted a key set. Caller holds w.mu or tolerates a race
// with the first fetch.
func (w *Wallet) pinnedMaster() (ed25519.PublicKey, error) {
	pin, err := get(w.db, keyMasterPin)
	if err != nil || pin != nil {
		if pin != nil && len(pin) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("wallet: corrupt master key pin (%d bytes)", len(pin))
		}
		return pin, err
	}
	stored, err := get(w.db, keyKeySet)
	if err != nil || stored == nil {
		return nil, err
	}
	// The stored set names the master key right after the currency. Read
	// it without decoding the rest, so that a stored set this version
	// cannot decode still pins its master key.
	outer := ecash.NewDecoder("signed-keyset", stored)
	d := ecash.NewDecoder("keyset", outer.VarBytes(ecash.MaxFieldLen))
	_ = d.String()
	master := d.Fixed(ed25519.PublicKeySize)
	if outer.Err() != nil || d.Err() != nil {
		return nil, fmt.Errorf("%w: its master key, pinned nowhere else, cannot be read: %w", ErrCorruptKeySet, errors.Join(outer.Err(), d.Err()))
	}
	return master, nil
}

// KeySet returns the stored key set, or ErrNoKeys, or ErrCorruptKeySet
// if it does not decode under the pinned master key (HeldKeySet shows it,
// DropKeySet drops it). The set is shared between calls while the stored
// one does not change: callers must not modify it.
func (w *Wallet) KeySet() (*ecash.KeySet, error) {
	b, err := get(w.db, keyKeySet)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, ErrNoKeys
	}
	pin, err := w.pinnedMaster()
	if err != nil {
		return nil, err
	}
	c := &w.keySet
	c.Lock()
	defer c.Unlock()
	if c.ks != nil && bytes.Equal(c.raw, b) && bytes.Equal(c.pin, pin) {
		return c.ks, nil
	}
	ks, err := ecash.DecodeHeldKeySet(b, pin, ErrCorruptKeySet)
	if err != nil {
		return nil, err
	}
	c.raw, c.pin, c.ks = b, pin, ks
	return ks, nil
}

// acceptKeySet verifies a signed key set fetched from the bank against the
// pinned master key (pinning it on the first fetch) and stores it with the
// time, unless the stored set is newer. It returns the set now stored. A
// set issued more than ecash.MaxClockSkew ahead of the wallet's clock, or
// one that changes a known denomination's windows or fees, lists a revoked
// one as valid or drops one before its deposit end (ecash.KeySet.Follows), is
// refused (ErrKeySetRefused), and the stored one kept.
func (w *Wallet) acceptKeySet(signed []byte) (*ecash.KeySet, error) {
	ks, err := ecash.DecodeKeySet(signed, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errKeySetUndecodable, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	pin, err := w.pinnedMaster()
	if err != nil {
		return nil, err
	}
	if pin != nil && !pin.Equal(ks.MasterPub) {
		return nil, fmt.Errorf("%w: pinned %x (bank id %s), offered %x (bank id %s); refusing it. If the bank really changed its master key, make a new wallet for it",
			ErrMasterKeyChanged, []byte(pin), ecash.HashOf(pin), []byte(ks.MasterPub), ks.BankID())
	}
	now := w.now()
	if ks.IssuedAt.After(now.Add(ecash.MaxClockSkew)) {
		// Taken, it would make every correctly dated set after it look
		// older until then: the wallet would miss revocations and new keys.
		return nil, fmt.Errorf("%w: it is issued %s, ahead of this wallet's clock (%s) by more than %s: the bank's clock was wrong when it made it; keeping the stored key set",
			ErrKeySetRefused, ks.IssuedAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), ecash.MaxClockSkew)
	}
	b := w.db.NewBatch()
	defer b.Close()
	stored, err := get(w.db, keyKeySet)
	if err != nil {
		return nil, err
	}
	// A stored set issued in the future (accepted before the check above)
	// orders nothing: the fetched one replaces it. One that cannot be read
	// is not replaced unchecked: the new set must follow it, or a bank
	// could list a revoked key as valid again (ecash.KeySet.Follows).
	// DropKeySet, the user's choice, is the way out of a damaged one.
	old, err := w.KeySet()
	if err != nil && !errors.Is(err, ErrNoKeys) {
		return nil, fmt.Errorf("wallet: the stored key set cannot be read, so the bank's cannot be checked against it (not taken): %w", err)
	}
	if err == nil && ks.IssuedAt.Before(old.IssuedAt) && !old.IssuedAt.After(now.Add(ecash.MaxClockSkew)) {
		ks = old // keep the newer; but the bank was reached: fresh
	} else if !bytes.Equal(stored, signed) {
		if err == nil {
			if err := ks.Follows(old); err != nil {
				return nil, fmt.Errorf("%w: %w; keeping the stored key set", ErrKeySetRefused, err)
			}
		}
		// A key set new to the wallet: VerifyLog checks the bank's audit
		// log holds it.
		check := (&logCheck{Kind: logKeySet}).encode()
		if err := errors.Join(b.Set(keyKeySet, signed, nil), b.Set(logCheckKey(sha256.Sum256(signed)), check, nil)); err != nil {
			return nil, err
		}
	}
	if stored, err := get(w.db, keyMasterPin); err != nil {
		return nil, err
	} else if stored == nil { // the first fetch, or a wallet from before the pin was kept apart
		if err := b.Set(keyMasterPin, ks.MasterPub, nil); err != nil {
			return nil, err
		}
	}
	if err := b.Set(keyKeySetFetched, u64(uint64(now.UnixNano())), nil); err != nil {
		return nil, err
	}
	return ks, b.Commit(pebble.Sync)
}

// KeySetFetched is when the stored key set was last fetched or confirmed
// (zero if never, or before the wallet recorded it).
func (w *Wallet) KeySetFetched() (time.Time, error) {
	b, err := get(w.db, keyKeySetFetched)
	if err != nil || len(b) != 8 {
		return time.Time{}, err
	}
	return time.Unix(0, int64(beU64(b))), nil
}

// keySetStale reports whether the wallet should fetch the key set again
// before using ks at now.
func (w *Wallet) keySetStale(ks *ecash.KeySet, now time.Time) bool {
	fetched, err := w.KeySetFetched()
	if err != nil || fetched.IsZero() {
		return true
	}
	if age := now.Sub(fetched); age >= KeySetMaxAge || age < -KeySetMaxAge {
		return true // old, or the clock went back
	}
	// A value the bank still honours (a key of it accepts deposits) with no
	// key withdrawable now: the bank has made its next key since.
	withdrawable := map[ecash.Amount]bool{}
	for _, d := range ks.Withdrawable(now) {
		withdrawable[d.Value] = true
	}
	for _, d := range ks.Denominations {
		if !withdrawable[d.Value] && now.Before(d.DepositEnd) {
			return true
		}
	}
	return false
}

// fetchKeys asks the bank for its key set. A refusal of what it sent
// (signature, pinned master key) is an error; failing to reach the bank is
// reported by reached false.
func (w *Wallet) fetchKeys(ctx context.Context, bank pb.BankClient) (ks *ecash.KeySet, reached bool, err error) {
	resp, err := bank.GetKeys(ctx, &pb.GetKeysRequest{})
	if err != nil {
		return nil, false, err
	}
	ks, err = w.acceptKeySet(resp.SignedKeyset)
	return ks, true, err
}

// keyRefreshInterval bounds how often something signed by a key the
// wallet's key set does not list makes it fetch the key set (verifyBank):
// a merchant relaying receipts of made-up signers must not turn each of
// them into a fetch.
const keyRefreshInterval = 5 * time.Second

// KeySetUnfetchedError is the error of a check of something the bank
// signed by a key the wallet's key set does not list, when the bank's key
// set, fetched to look for the key again, could not be had: the fetch did
// not reach the bank, or (Local) the bank answered but the wallet failed
// taking its key set in, for a fault of its own (its store: Err). The
// thing is then neither verified nor refuted, and is to be checked again:
// wallet recoup says "failed", not "bad_answer", and Pay and Return leave
// the payment pending (ErrPending). A key set the wallet refuses
// (keySetRefused) is not this: the bank answered, with a key set no honest
// bank serves. Its message says that, not that a signature is bad. It
// unwraps to Check, the check's error against the key set held
// (ecash.ErrUnknownSigner), and not to Err, so that it does not read as
// the bank's gRPC status.
type KeySetUnfetchedError struct {
	Err   error // why the key set could not be fetched, or taken in
	Check error // the check's error against the key set held
	Local bool  // the bank answered; the wallet failed taking its key set in
}

func (e *KeySetUnfetchedError) Error() string {
	if e.Local {
		return "not checked: signed by a key the wallet's key set does not list, and the bank's key set, fetched to look for it in, could not be taken in, for a fault of this wallet's: " + e.Err.Error()
	}
	return "not checked: signed by a key the wallet's key set does not list, and the bank's key set, to look for it in, could not be fetched: " + e.Err.Error()
}

// Unwrap returns the check's error against the key set held.
func (e *KeySetUnfetchedError) Unwrap() error { return e.Check }

// of is e for the check whose error against the key set held is check.
func (e KeySetUnfetchedError) of(check error) *KeySetUnfetchedError {
	e.Check = check
	return &e
}

// verifyBank runs verify, a check of something the bank signed, against
// ks. If the signer is not in it (ecash.ErrUnknownSigner), the bank may
// have rotated its signing key since the wallet fetched ks, which it does
// only every KeySetMaxAge: the wallet fetches the key set, or takes the
// one stored if it fetched within keyRefreshInterval, and runs verify once
// more against it. A receipt of a payment the bank made is then accepted
// at once, not held as a failure for up to an hour. The receipts,
// statements, double-spend proofs and checkpoints of the bank go through
// here.
func (w *Wallet) verifyBank(ctx context.Context, bank pb.BankClient, ks *ecash.KeySet, verify func(*ecash.KeySet) error) error {
	err := verify(ks)
	if !errors.Is(err, ecash.ErrUnknownSigner) {
		return err
	}
	fresh, ferr := w.KeySet()
	now := w.now()
	fetched, _ := w.KeySetFetched()
	tried := time.Unix(0, w.keysTried.Load())
	var unfetched *KeySetUnfetchedError
	if ferr != nil || !fetchedWithin(fetched, now, keyRefreshInterval) && !fetchedWithin(tried, now, keyRefreshInterval) {
		// A failed fetch is not stored: the attempt's time bounds the
		// next as a fetch's does.
		w.keysTried.Store(now.UnixNano())
		var reached bool
		fresh, reached, ferr = w.fetchKeys(ctx, bank)
		switch {
		case !reached:
			unfetched = &KeySetUnfetchedError{Err: ferr}
		case ferr != nil && !keySetRefused(ferr):
			// The wallet's own failure says nothing of the bank's
			// signature: not checked, as if the bank were out of reach.
			unfetched = &KeySetUnfetchedError{Err: ferr, Local: true}
		}
		w.keysUnfetched.Store(unfetched)
		if unfetched != nil {
			return unfetched.of(err)
		}
		if ferr != nil {
			// The key set held stands; the signer's refusal is the answer.
			return fmt.Errorf("%w (fetching the bank's key set again: %v)", err, ferr)
		}
	} else if !fetchedWithin(fetched, now, keyRefreshInterval) {
		// Not fetched again because a fetch was tried just now: if it did
		// not get the bank's key set, this check is as unsettled as that
		// one's.
		unfetched = w.keysUnfetched.Load()
	}
	if !bytes.Equal(fresh.Encode(), ks.Encode()) {
		err = verify(fresh)
	}
	if unfetched != nil && errors.Is(err, ecash.ErrUnknownSigner) {
		return unfetched.of(err)
	}
	return err
}

// fetchedWithin reports whether the key set was fetched at most d before
// now (and not after it: a clock that went back fetches again).
func fetchedWithin(fetched, now time.Time, d time.Duration) bool {
	age := now.Sub(fetched)
	return !fetched.IsZero() && age >= 0 && age < d
}
