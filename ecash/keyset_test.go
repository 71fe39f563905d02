package ecash_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

func TestKeySetRoundTrip(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	enc := w.ks.Encode()

	for _, pinned := range [][]byte{nil, edPub(w.master)} {
		ks, err := ecash.DecodeKeySet(enc, pinned)
		if err != nil {
			t.Fatalf("pinned=%x: %v", pinned, err)
		}
		if !bytes.Equal(ks.Encode(), enc) || !bytes.Equal(ks.Body(), w.ks.Body()) {
			t.Fatal("re-encoding differs")
		}
		if ks.Currency != "EUR" || !ks.MasterPub.Equal(edPub(w.master)) || !ks.SigningPub.Equal(edPub(w.signing)) ||
			!bytes.Equal(ks.HPKEPub, w.hpke.PublicKey().Bytes()) || !ks.IssuedAt.Equal(t0) || ks.BankID() != w.ks.BankID() {
			t.Fatalf("decoded key set header %+v", ks)
		}
		if len(ks.Denominations) != 2 {
			t.Fatalf("%d denominations", len(ks.Denominations))
		}
		for i, d := range ks.Denominations {
			want := w.ks.Denominations[i]
			if d.ID != want.ID || d.Value != want.Value || !bytes.Equal(d.Key.Bytes(), want.Key.Bytes()) ||
				!d.WithdrawStart.Equal(want.WithdrawStart) || !d.WithdrawEnd.Equal(want.WithdrawEnd) || !d.DepositEnd.Equal(want.DepositEnd) {
				t.Fatalf("denomination %d: %+v", i, d)
			}
		}
		// Coins verify under the decoded keys.
		d, err := ks.Denomination(w.coins[0].Denom)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.coins[0].Verify(d.Key); err != nil {
			t.Fatal(err)
		}
	}
	if w.ks.BankID() != ecash.HashOf(edPub(w.master)) {
		t.Error("BankID is not SHA-256 of the master key")
	}
}

func TestKeySetRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	enc := w.ks.Encode()
	body, sig := unwrap(t, "signed-keyset", enc)

	check := func(name string, b []byte, pinned []byte, want error) {
		t.Helper()
		ks, err := ecash.DecodeKeySet(b, pinned)
		if !errors.Is(err, want) || ks != nil {
			t.Errorf("%s: %v, %v; want %v", name, ks, err, want)
		}
	}
	check("wrong pinned master", enc, edPub(edKey(99)), ecash.ErrBadKey)
	check("short pinned master", enc, edPub(w.master)[:31], ecash.ErrBadKey)
	check("tampered signature", rewrap("signed-keyset", body, flip(sig, 5)), nil, ecash.ErrBadSignature)
	// Tampering the body anywhere after the tag breaks the signature (or the
	// structure); it never yields a key set.
	for _, i := range []int{tagLen("keyset") + 5, tagLen("keyset") + 40, tagLen("keyset") + 100, len(body) - 1, len(body) - 20} {
		ks, err := ecash.DecodeKeySet(rewrap("signed-keyset", flip(body, i), sig), nil)
		if err == nil || ks != nil {
			t.Errorf("tampered body byte %d accepted", i)
		}
	}
	// The signing key of the body is the one that must sign: a set
	// re-signed by another key with the original master key in it fails.
	other := *w.ks
	other.Sign(edKey(98))
	check("signed by a key other than MasterPub", other.Encode(), nil, ecash.ErrBadSignature)
	// A self-consistent key set under another master passes without a pin and
	// fails with one.
	forged := *w.ks
	forged.MasterPub = edPub(edKey(98))
	forged.Sign(edKey(98))
	if _, err := ecash.DecodeKeySet(forged.Encode(), nil); err != nil {
		t.Errorf("self-signed set without pin: %v", err)
	}
	check("self-signed set, pinned", forged.Encode(), edPub(w.master), ecash.ErrBadKey)

	// Denominations must be in the set's currency.
	usd := *w.ks
	usd.Currency = "USD"
	usd.Sign(w.master)
	check("currency mismatch", usd.Encode(), nil, ecash.ErrCurrencyMismatch)
	// ... and the set's currency must be valid.
	bad := *w.ks
	bad.Currency = "eur"
	bad.Denominations = nil
	bad.Sign(w.master)
	check("bad currency", bad.Encode(), nil, ecash.ErrMalformed)
	// Unknown ciphers are refused.
	unk := *w.ks
	unk.Denominations = []ecash.Denomination{w.ks.Denominations[0]}
	unk.Denominations[0].Key = otherCipher{unk.Denominations[0].Key}
	unk.Sign(w.master)
	check("unknown cipher", unk.Encode(), nil, ecash.ErrUnknownCipher)
	// Keys that do not parse are refused.
	junk := *w.ks
	junk.Denominations = []ecash.Denomination{w.ks.Denominations[0]}
	junk.Denominations[0].Key = junkKey{}
	junk.Sign(w.master)
	check("junk key", junk.Encode(), nil, ecash.ErrBadKey)
	// An HPKE key of the wrong size is refused.
	short := *w.ks
	short.HPKEPub = w.ks.HPKEPub[:31]
	short.Sign(w.master)
	check("short HPKE key", short.Encode(), nil, ecash.ErrMalformed)
	// An empty key set is fine.
	empty := *w.ks
	empty.Denominations = nil
	empty.Sign(w.master)
	if ks, err := ecash.DecodeKeySet(empty.Encode(), edPub(w.master)); err != nil || len(ks.Denominations) != 0 {
		t.Errorf("empty key set: %v", err)
	}
}

// otherCipher wraps a key and claims another cipher.
type otherCipher struct{ ecash.DenomPublicKey }

func (otherCipher) Cipher() ecash.Cipher { return 99 }

// junkKey is an RSA "key" whose bytes do not parse.
type junkKey struct{ ecash.DenomPublicKey }

func (junkKey) Cipher() ecash.Cipher { return ecash.CipherRSA }
func (junkKey) Bytes() []byte        { return []byte("junk") }

func TestKeySetTimesAreSeconds(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ks := *w.ks
	ks.IssuedAt = t0.Add(999 * time.Millisecond)
	ks.Sign(w.master)
	got, err := ecash.DecodeKeySet(ks.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !got.IssuedAt.Equal(t0) {
		t.Errorf("IssuedAt %v, want truncation to %v", got.IssuedAt, t0)
	}
}

func TestDenominationLookupAndWindows(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	d, err := w.ks.Denomination(w.ks.Denominations[1].ID)
	if err != nil || d.Value != ecash.MustParseAmount("EUR:2") {
		t.Fatalf("lookup: %v, %v", d.Value, err)
	}
	if _, err := w.ks.Denomination(ecash.Hash{1}); !errors.Is(err, ecash.ErrUnknownDenomination) {
		t.Errorf("unknown id: %v", err)
	}

	// DenominationID binds the value and the key.
	k := w.denomKeys[0].Public()
	if ecash.DenominationID(eur5, k) == ecash.DenominationID(eur10, k) ||
		ecash.DenominationID(eur5, k) == ecash.DenominationID(eur5, w.denomKeys[1].Public()) {
		t.Error("DenominationID collides")
	}

	d = w.ks.Denominations[0]
	for _, tc := range []struct {
		at                time.Time
		withdraw, deposit bool
	}{
		{d.WithdrawStart.Add(-time.Millisecond), false, false},
		{d.WithdrawStart, true, true},
		{d.WithdrawEnd.Add(-time.Millisecond), true, true},
		{d.WithdrawEnd, false, true},
		{d.DepositEnd.Add(-time.Millisecond), false, true},
		{d.DepositEnd, false, false},
	} {
		errW, errD := d.CanWithdraw(tc.at), d.CanDeposit(tc.at)
		if (errW == nil) != tc.withdraw || (errD == nil) != tc.deposit {
			t.Errorf("at %v: withdraw %v, deposit %v", tc.at, errW, errD)
		}
		for _, err := range []error{errW, errD} {
			if err != nil && !errors.Is(err, ecash.ErrDenominationExpired) {
				t.Errorf("error %v is not ErrDenominationExpired", err)
			}
		}
	}
}
