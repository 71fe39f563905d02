package ecash

import (
	"bytes"
	"cmp"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"time"
)

var (
	ErrUnknownDenomination = errors.New("ecash: unknown denomination")
	ErrDenominationExpired = errors.New("ecash: denomination outside its validity window")
	// ErrDenominationRevoked: the bank revoked the denomination (its key may
	// have leaked); its coins are neither issued nor accepted, only
	// recouped (RecoupRequest).
	ErrDenominationRevoked = errors.New("ecash: denomination revoked; recoup its coins")
	// ErrKeySetSuccession: a key set that cannot follow the one before it
	// (KeySet.Follows).
	ErrKeySetSuccession = errors.New("ecash: the key set cannot follow the one before it")
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
	Revoked       bool      // listed in the key set's revocation section
	Fees          Fees      // per coin; listed in the key set's fee section when not zero
}

// Fees are what the bank charges per coin of a denomination, in the key
// set's currency: on withdrawing it (the account pays value + fee), on
// depositing it (it pays value − fee), on swapping it (it buys value − fee
// of new coins) and on refunding to it (the merchant pays the fee on top of
// the refund). Each is below the coin's value; a deposit or swap fee equal
// to it would make the coin worthless.
type Fees struct {
	Withdraw, Deposit, Swap, Refund Amount
}

// IsZero reports whether the denomination is free of charge.
func (f Fees) IsZero() bool {
	return f.Withdraw.Value == 0 && f.Deposit.Value == 0 && f.Swap.Value == 0 && f.Refund.Value == 0
}

// Check reports whether the fees suit a coin of value: in its currency and
// each below it. (A zero fee may have no currency: the zero Fees is free.)
func (f Fees) Check(value Amount) error {
	for _, fee := range []Amount{f.Withdraw, f.Deposit, f.Swap, f.Refund} {
		if (fee.Value != 0 && fee.Currency != value.Currency) || fee.Value >= value.Value {
			return fmt.Errorf("%w: a fee of %s on a coin of %s", ErrBadAmount, fee, value)
		}
	}
	return nil
}

// WithdrawDebit is what withdrawing a coin of d debits: its value plus the
// withdraw fee.
func (d Denomination) WithdrawDebit() (Amount, error) {
	return d.Value.Add(Amount{Currency: d.Value.Currency, Value: d.Fees.Withdraw.Value})
}

// Net is what a coin of d pays into a deposit: its value less the deposit fee.
func (d Denomination) Net() Amount {
	return Amount{Currency: d.Value.Currency, Value: d.Value.Value - d.Fees.Deposit.Value}
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
	if d.Revoked {
		return fmt.Errorf("%w: %s", ErrDenominationRevoked, d.Value)
	}
	if now.Before(d.WithdrawStart) || !now.Before(d.WithdrawEnd) {
		return fmt.Errorf("%w: %s withdrawable %s to %s", ErrDenominationExpired, d.Value,
			d.WithdrawStart.UTC().Format(time.RFC3339), d.WithdrawEnd.UTC().Format(time.RFC3339))
	}
	return nil
}

// CanDeposit reports whether coins of d are accepted at now.
func (d Denomination) CanDeposit(now time.Time) error {
	if d.Revoked {
		return fmt.Errorf("%w: %s", ErrDenominationRevoked, d.Value)
	}
	if now.Before(d.WithdrawStart) || !now.Before(d.DepositEnd) {
		return fmt.Errorf("%w: %s depositable until %s", ErrDenominationExpired, d.Value,
			d.DepositEnd.UTC().Format(time.RFC3339))
	}
	return nil
}

// KeySet is the bank's public key material, signed by its master key. Wallets
// and merchants verify it and pin the master key.
//
// A key set lists every denomination key the bank still honours: past keys
// whose coins are still accepted (withdraw window over, deposit window
// open), the current ones, and future ones generated ahead of time, each
// with its windows. Rotation therefore happens by the clock alone: a key
// set fetched today says which key is issued next month. Keys of one value
// may overlap; wallets withdraw under the newest (CurrentDenomination).
type KeySet struct {
	Currency      string
	MasterPub     ed25519.PublicKey // signs the key set
	SigningPub    ed25519.PublicKey // online key: receipts and proofs
	HPKEPub       []byte            // X25519 key that payments are sealed to
	IssuedAt      time.Time
	Denominations []Denomination
	// PastSigning lists the bank's retired online signing keys, newest
	// first, each with the window in which it signed: what they signed in
	// that window (by the time the signed object states) still verifies
	// (CheckSigner). Encoded only when not empty (see Body).
	PastSigning []SigningKey
	MasterSig   []byte
}

// SigningKey is a retired online signing key of the bank and the window in
// which it was the bank's signing key: [ValidFrom, ValidUntil).
type SigningKey struct {
	Pub        ed25519.PublicKey
	ValidFrom  time.Time
	ValidUntil time.Time
}

// Bounds on the key set a peer may send.
const (
	MaxDenominations   = 256
	MaxPastSigningKeys = 16
)

// Sections of the key set after the denominations (see Body).
const (
	sectionPastSigning = 1
	sectionRevoked     = 2
	sectionFees        = 3
)

// ErrUnknownSigner means an object is signed by a key the key set does not
// list, or by a retired key outside its window.
var ErrUnknownSigner = errors.New("ecash: signed by a key the bank's key set does not list for that time")

// CheckSigner reports whether pub is a bank signing key for an object the
// bank dated at: the current SigningPub (at any time), or a retired key of
// PastSigning whose window holds at. The caller then checks the signature
// under pub. An error wraps ErrUnknownSigner and ErrBadSignature.
func (k *KeySet) CheckSigner(pub ed25519.PublicKey, at time.Time) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w (%w: %d-byte key)", ErrUnknownSigner, ErrBadSignature, len(pub))
	}
	if pub.Equal(k.SigningPub) {
		return nil
	}
	for _, s := range k.PastSigning {
		if !pub.Equal(s.Pub) {
			continue
		}
		if at.Before(s.ValidFrom) || !at.Before(s.ValidUntil) {
			return fmt.Errorf("%w (%w: retired key %x signed from %s until %s, not at %s)", ErrUnknownSigner, ErrBadSignature, pub[:8],
				s.ValidFrom.UTC().Format(time.RFC3339), s.ValidUntil.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
		}
		return nil
	}
	return fmt.Errorf("%w (%w: key %x)", ErrUnknownSigner, ErrBadSignature, pub[:8])
}

// SigningKeys lists every signing key the key set vouches for: SigningPub,
// then the retired keys of PastSigning, newest first.
func (k *KeySet) SigningKeys() []ed25519.PublicKey {
	keys := make([]ed25519.PublicKey, 0, 1+len(k.PastSigning))
	keys = append(keys, k.SigningPub)
	for _, s := range k.PastSigning {
		keys = append(keys, s.Pub)
	}
	return keys
}

// CurrentDenomination is the key wallets withdraw coins of value under at
// now: of the denominations of that value withdrawable at now, the one
// whose window started last (windows of successive keys overlap).
func (k *KeySet) CurrentDenomination(value Amount, now time.Time) (Denomination, error) {
	var best Denomination
	found := false
	for _, d := range k.Denominations {
		if d.Value != value || d.CanWithdraw(now) != nil {
			continue
		}
		if !found || d.WithdrawStart.After(best.WithdrawStart) ||
			(d.WithdrawStart.Equal(best.WithdrawStart) && bytes.Compare(d.ID[:], best.ID[:]) > 0) {
			best, found = d, true
		}
	}
	if !found {
		return Denomination{}, fmt.Errorf("%w: no %s key is withdrawable at %s", ErrDenominationExpired, value, now.UTC().Format(time.RFC3339))
	}
	return best, nil
}

// Withdrawable is the current denomination of every value withdrawable at
// now (CurrentDenomination), one per value, smallest value first.
func (k *KeySet) Withdrawable(now time.Time) []Denomination {
	var out []Denomination
	seen := map[Amount]bool{}
	for _, d := range k.Denominations {
		if seen[d.Value] {
			continue
		}
		seen[d.Value] = true
		if cur, err := k.CurrentDenomination(d.Value, now); err == nil {
			out = append(out, cur)
		}
	}
	slices.SortFunc(out, func(a, b Denomination) int { return cmp.Compare(a.Value.Value, b.Value.Value) })
	return out
}

// BankID identifies a bank by its master key: SHA-256 of the master public key.
func (k *KeySet) BankID() Hash { return HashOf(k.MasterPub) }

// Body is the canonical encoding the master key signs (tag "keyset"): the
// header, the denominations, then optional sections, each present only
// when not empty, in increasing order of a one-byte section number:
//
//	1  past signing keys: u32 count (1..MaxPastSigningKeys), then per key,
//	   newest first (ValidFrom strictly decreasing): 32-byte Ed25519 key,
//	   i64 valid_from, i64 valid_until (Unix seconds, from < until)
//
//	2  revoked denominations: u32 count (1..MaxDenominations), then their
//	   32-byte ids, strictly increasing
//	3  fees: u32 count (1..MaxDenominations), then per denomination with a
//	   fee, ids strictly increasing: 32-byte id, then the withdraw, deposit,
//	   swap and refund fees as u64 minor units (each below the value, not
//	   all zero)
//
// A key set without sections encodes exactly as before sections existed;
// a denomination not in the fee section charges nothing.
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
	if len(k.PastSigning) > 0 {
		e.U8(sectionPastSigning)
		e.U32(uint32(len(k.PastSigning)))
		for _, s := range k.PastSigning {
			e.Fixed(s.Pub)
			e.I64(s.ValidFrom.Unix())
			e.I64(s.ValidUntil.Unix())
		}
	}
	if revoked := k.Revoked(); len(revoked) > 0 {
		e.U8(sectionRevoked)
		e.U32(uint32(len(revoked)))
		for _, id := range revoked {
			e.Fixed(id[:])
		}
	}
	if charged := k.charged(); len(charged) > 0 {
		e.U8(sectionFees)
		e.U32(uint32(len(charged)))
		for _, d := range charged {
			e.Fixed(d.ID[:])
			for _, f := range []Amount{d.Fees.Withdraw, d.Fees.Deposit, d.Fees.Swap, d.Fees.Refund} {
				e.U64(f.Value)
			}
		}
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
	if err := k.decodeSections(d); err != nil {
		return nil, err
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
		// Name both keys: which one the key set carries is what tells a
		// mistyped pin from a bank that changed its master key.
		return nil, fmt.Errorf("%w: key set signed by an unexpected master key %x (expected %x)", ErrBadKey, k.MasterPub, pinnedMaster)
	}
	if !verifyEd25519(k.MasterPub, body, sig) {
		return nil, fmt.Errorf("%w: key set master signature", ErrBadSignature)
	}
	return k, nil
}

// decodeSections reads the optional sections after the denominations.
func (k *KeySet) decodeSections(d *Decoder) error {
	last := uint8(0)
	for d.Err() == nil && len(d.buf) > 0 {
		sec := d.U8()
		if sec <= last {
			return fmt.Errorf("%w: key set section %d after section %d", ErrMalformed, sec, last)
		}
		last = sec
		switch sec {
		case sectionPastSigning:
			n := d.Count(MaxPastSigningKeys)
			if d.Err() == nil && n == 0 {
				return fmt.Errorf("%w: empty past signing key section (leave it out)", ErrMalformed)
			}
			for i := 0; i < n && d.Err() == nil; i++ {
				s := SigningKey{Pub: d.Fixed(ed25519.PublicKeySize), ValidFrom: time.Unix(d.I64(), 0), ValidUntil: time.Unix(d.I64(), 0)}
				if d.Err() != nil {
					break
				}
				if !s.ValidFrom.Before(s.ValidUntil) {
					return fmt.Errorf("%w: past signing key %x has its window out of order", ErrMalformed, s.Pub[:8])
				}
				if s.Pub.Equal(k.SigningPub) {
					return fmt.Errorf("%w: the current signing key is listed as past", ErrMalformed)
				}
				if i > 0 {
					prev := k.PastSigning[i-1]
					if !s.ValidFrom.Before(prev.ValidFrom) {
						return fmt.Errorf("%w: past signing keys not newest first", ErrMalformed)
					}
				}
				for _, o := range k.PastSigning {
					if o.Pub.Equal(s.Pub) {
						return fmt.Errorf("%w: a past signing key listed twice", ErrMalformed)
					}
				}
				k.PastSigning = append(k.PastSigning, s)
			}
		case sectionRevoked:
			n := d.Count(MaxDenominations)
			if d.Err() == nil && n == 0 {
				return fmt.Errorf("%w: empty revocation section (leave it out)", ErrMalformed)
			}
			var prev Hash
			for i := 0; i < n && d.Err() == nil; i++ {
				var id Hash
				copy(id[:], d.Fixed(32))
				if d.Err() != nil {
					break
				}
				if i > 0 && bytes.Compare(id[:], prev[:]) <= 0 {
					return fmt.Errorf("%w: revoked denominations not sorted", ErrMalformed)
				}
				prev = id
				found := false
				for j := range k.Denominations {
					if k.Denominations[j].ID == id {
						k.Denominations[j].Revoked, found = true, true
					}
				}
				if !found {
					return fmt.Errorf("%w: revoked denomination %x is not in the key set", ErrMalformed, id[:8])
				}
			}
		case sectionFees:
			if err := k.decodeFees(d); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: unknown key set section %d", ErrMalformed, sec)
		}
	}
	return d.Err()
}

// decodeFees reads the fee section.
func (k *KeySet) decodeFees(d *Decoder) error {
	n := d.Count(MaxDenominations)
	if d.Err() == nil && n == 0 {
		return fmt.Errorf("%w: empty fee section (leave it out)", ErrMalformed)
	}
	var prev Hash
	for i := 0; i < n && d.Err() == nil; i++ {
		var id Hash
		copy(id[:], d.Fixed(32))
		var v [4]uint64
		for j := range v {
			v[j] = d.U64()
		}
		if d.Err() != nil {
			break
		}
		if i > 0 && bytes.Compare(id[:], prev[:]) <= 0 {
			return fmt.Errorf("%w: fees not sorted by denomination", ErrMalformed)
		}
		prev = id
		j := slices.IndexFunc(k.Denominations, func(den Denomination) bool { return den.ID == id })
		if j < 0 {
			return fmt.Errorf("%w: fees of denomination %x, which is not in the key set", ErrMalformed, id[:8])
		}
		cur := k.Currency
		f := Fees{Withdraw: Amount{cur, v[0]}, Deposit: Amount{cur, v[1]}, Swap: Amount{cur, v[2]}, Refund: Amount{cur, v[3]}}
		if f.IsZero() {
			return fmt.Errorf("%w: zero fees listed (leave them out)", ErrMalformed)
		}
		if err := f.Check(k.Denominations[j].Value); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		k.Denominations[j].Fees = f
	}
	return nil
}

// charged returns the denominations that charge a fee, sorted by id.
func (k *KeySet) charged() []Denomination {
	var out []Denomination
	for _, d := range k.Denominations {
		if !d.Fees.IsZero() {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b Denomination) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// Revoked returns the ids of the revoked denominations, sorted.
func (k *KeySet) Revoked() []Hash {
	var out []Hash
	for _, d := range k.Denominations {
		if d.Revoked {
			out = append(out, d.ID)
		}
	}
	slices.SortFunc(out, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	return out
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

// Follows reports whether ks may replace prev, the later-issued set of one
// bank (PROTOCOL §2.2); ErrKeySetSuccession if not. An honest bank never
// changes a denomination key's windows or fees once it listed them, never
// lists a revoked key as valid again, and drops a key only once its coins
// are no longer accepted (at or after its DepositEnd, so by the time ks is
// issued). A denomination's id covers its value and key, not its windows:
// a bank could otherwise give one wallet a key withdrawable months before
// everyone else, or serve two groups of wallets key sets that differ, and
// recognise each group's coins.
func (ks *KeySet) Follows(prev *KeySet) error {
	ts := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	for _, d := range prev.Denominations {
		n, err := ks.Denomination(d.ID)
		if err != nil {
			if ks.IssuedAt.Before(d.DepositEnd) {
				return fmt.Errorf("%w: it drops denomination %s… of %s, whose coins the key set before it accepts until %s (it is issued %s)",
					ErrKeySetSuccession, d.ID.String()[:16], d.Value, ts(d.DepositEnd), ts(ks.IssuedAt))
			}
			continue
		}
		switch {
		case !n.WithdrawStart.Equal(d.WithdrawStart) || !n.WithdrawEnd.Equal(d.WithdrawEnd) || !n.DepositEnd.Equal(d.DepositEnd):
			return fmt.Errorf("%w: it lists denomination %s… of %s withdrawable %s to %s and accepted until %s, the key set before it %s to %s and until %s",
				ErrKeySetSuccession, d.ID.String()[:16], d.Value, ts(n.WithdrawStart), ts(n.WithdrawEnd), ts(n.DepositEnd), ts(d.WithdrawStart), ts(d.WithdrawEnd), ts(d.DepositEnd))
		case n.Fees.Withdraw.Value != d.Fees.Withdraw.Value || n.Fees.Deposit.Value != d.Fees.Deposit.Value ||
			n.Fees.Swap.Value != d.Fees.Swap.Value || n.Fees.Refund.Value != d.Fees.Refund.Value:
			return fmt.Errorf("%w: it lists denomination %s… of %s with other fees than the key set before it", ErrKeySetSuccession, d.ID.String()[:16], d.Value)
		case d.Revoked && !n.Revoked:
			return fmt.Errorf("%w: it lists denomination %s… of %s as valid, which the key set before it revokes", ErrKeySetSuccession, d.ID.String()[:16], d.Value)
		}
	}
	return nil
}
