package ecash

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"
)

var (
	ErrUnknownDenomination = errors.New("ecash: unknown denomination")
	ErrDenominationExpired = errors.New("ecash: denomination outside its validity window")
)

// Denomination is one coin value and its blind-signing key, with the windows in
// which the bank issues and accepts its coins.
type Denomination struct {
	ID            Hash // DenominationID(Value, Key)
	Value         Amount
	Key           DenomPublicKey
	WithdrawStart time.Time // coins are issued from here ...
	WithdrawEnd   time.Time // ... until here
	DepositEnd    time.Time // and accepted until here
}

// DenominationID = SHA-256("denom-key" tag || u8 cipher || amount || varbytes key).
func DenominationID(value Amount, key DenomPublicKey) Hash {
	e := NewEncoder("denom-key")
	e.U8(uint8(key.Cipher()))
	e.Amount(value)
	e.VarBytes(key.Bytes())
	return HashOf(e.Bytes())
}

// CanWithdraw reports whether coins of d may be issued at now.
func (d Denomination) CanWithdraw(now time.Time) error {
	if now.Before(d.WithdrawStart) || !now.Before(d.WithdrawEnd) {
		return fmt.Errorf("%w: %s withdrawable %s to %s", ErrDenominationExpired, d.Value,
			d.WithdrawStart.UTC().Format(time.RFC3339), d.WithdrawEnd.UTC().Format(time.RFC3339))
	}
	return nil
}

// CanDeposit reports whether coins of d are accepted at now.
func (d Denomination) CanDeposit(now time.Time) error {
	if now.Before(d.WithdrawStart) || !now.Before(d.DepositEnd) {
		return fmt.Errorf("%w: %s depositable until %s", ErrDenominationExpired, d.Value,
			d.DepositEnd.UTC().Format(time.RFC3339))
	}
	return nil
}

// KeySet is the bank's public key material, signed by its master key. Wallets
// and merchants verify it and pin the master key.
type KeySet struct {
	Currency      string
	MasterPub     ed25519.PublicKey // signs the key set
	SigningPub    ed25519.PublicKey // online key: receipts and proofs
	HPKEPub       []byte            // X25519 key that payments are sealed to
	IssuedAt      time.Time
	Denominations []Denomination
	MasterSig     []byte
}

// MaxDenominations bounds the key set a peer may send.
const MaxDenominations = 256

// BankID identifies a bank by its master key: SHA-256 of the master public key.
func (k *KeySet) BankID() Hash { return HashOf(k.MasterPub) }

// Body is the canonical encoding the master key signs (tag "keyset").
func (k *KeySet) Body() []byte {
	e := NewEncoder("keyset")
	e.String(k.Currency)
	e.Fixed(k.MasterPub)
	e.Fixed(k.SigningPub)
	e.Fixed(k.HPKEPub)
	e.I64(k.IssuedAt.Unix())
	e.U32(uint32(len(k.Denominations)))
	for _, d := range k.Denominations {
		e.U8(uint8(d.Key.Cipher()))
		e.Amount(d.Value)
		e.VarBytes(d.Key.Bytes())
		e.I64(d.WithdrawStart.Unix())
		e.I64(d.WithdrawEnd.Unix())
		e.I64(d.DepositEnd.Unix())
	}
	return e.Bytes()
}

// Sign sets MasterSig.
func (k *KeySet) Sign(master ed25519.PrivateKey) {
	k.MasterSig = ed25519.Sign(master, k.Body())
}

// Encode is the signed key set: varbytes body then the 64-byte signature.
func (k *KeySet) Encode() []byte {
	e := NewEncoder("signed-keyset")
	e.VarBytes(k.Body())
	e.Fixed(k.MasterSig)
	return e.Bytes()
}

// DecodeKeySet parses and verifies a signed key set. If pinnedMaster is not
// nil the set must be signed by that key.
func DecodeKeySet(b []byte, pinnedMaster ed25519.PublicKey) (*KeySet, error) {
	outer := NewDecoder("signed-keyset", b)
	body := outer.VarBytes(MaxFieldLen)
	sig := outer.Fixed(ed25519.SignatureSize)
	if err := outer.Finish(); err != nil {
		return nil, err
	}
	d := NewDecoder("keyset", body)
	k := &KeySet{
		Currency:   d.String(),
		MasterPub:  d.Fixed(ed25519.PublicKeySize),
		SigningPub: d.Fixed(ed25519.PublicKeySize),
		HPKEPub:    d.Fixed(32),
		IssuedAt:   time.Unix(d.I64(), 0),
		MasterSig:  sig,
	}
	n := d.Count(MaxDenominations)
	for i := 0; i < n && d.Err() == nil; i++ {
		cipher := Cipher(d.U8())
		value := d.Amount()
		keyBytes := d.VarBytes(MaxFieldLen)
		ws, we, de := d.I64(), d.I64(), d.I64()
		if d.Err() != nil {
			break
		}
		scheme, err := SchemeFor(cipher)
		if err != nil {
			return nil, err
		}
		pk, err := scheme.ParsePublicKey(keyBytes)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pk.Bytes(), keyBytes) {
			return nil, fmt.Errorf("%w: non-canonical denomination key", ErrMalformed)
		}
		if !(ws < we && we <= de) {
			return nil, fmt.Errorf("%w: denomination %s has windows out of order", ErrMalformed, value)
		}
		if value.Currency != k.Currency {
			return nil, fmt.Errorf("%w: denomination %s in a %s key set", ErrCurrencyMismatch, value, k.Currency)
		}
		k.Denominations = append(k.Denominations, Denomination{
			ID: DenominationID(value, pk), Value: value, Key: pk,
			WithdrawStart: time.Unix(ws, 0), WithdrawEnd: time.Unix(we, 0), DepositEnd: time.Unix(de, 0),
		})
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	// A coin signature covers only the coin key, so a key shared by two
	// denominations would let a cheap coin pass as a dear one.
	keys := make(map[string]bool, len(k.Denominations))
	for _, den := range k.Denominations {
		if keys[string(den.Key.Bytes())] {
			return nil, fmt.Errorf("%w: two denominations share one key", ErrMalformed)
		}
		keys[string(den.Key.Bytes())] = true
	}
	if !ValidCurrency(k.Currency) {
		return nil, fmt.Errorf("%w: currency %q", ErrMalformed, k.Currency)
	}
	if _, err := ecdh.X25519().NewPublicKey(k.HPKEPub); err != nil {
		return nil, fmt.Errorf("%w: HPKE key: %v", ErrBadKey, err)
	}
	if pinnedMaster != nil && !bytes.Equal(pinnedMaster, k.MasterPub) {
		return nil, fmt.Errorf("%w: key set signed by an unexpected master key", ErrBadKey)
	}
	if !ed25519.Verify(k.MasterPub, body, sig) {
		return nil, fmt.Errorf("%w: key set master signature", ErrBadSignature)
	}
	return k, nil
}

// Denomination looks up a denomination by id.
func (k *KeySet) Denomination(id Hash) (Denomination, error) {
	for _, d := range k.Denominations {
		if d.ID == id {
			return d, nil
		}
	}
	return Denomination{}, fmt.Errorf("%w: %x", ErrUnknownDenomination, id[:8])
}
