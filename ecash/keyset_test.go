package ecash_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"slices"
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

// withHistory is the shared key set with two retired signing keys.
func withHistory(t testing.TB, w *world) *ecash.KeySet {
	t.Helper()
	return addHistory(w.ks, w.master)
}

func addHistory(from *ecash.KeySet, master ed25519.PrivateKey) *ecash.KeySet {
	ks := *from
	ks.PastSigning = []ecash.SigningKey{
		{Pub: edPub(edKey(21)), ValidFrom: t0.Add(-48 * time.Hour), ValidUntil: t0.Add(time.Hour)},
		{Pub: edPub(edKey(20)), ValidFrom: t0.Add(-96 * time.Hour), ValidUntil: t0.Add(-47 * time.Hour)},
	}
	ks.Sign(master)
	return &ks
}

// A key set without retired signing keys encodes as it did before the
// section existed (the vectors in testdata hold); one with them round-trips,
// and the section is bound by the master signature.
func TestKeySetPastSigningKeys(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ks := withHistory(t, w)
	if !bytes.HasPrefix(ks.Body(), w.ks.Body()) || len(ks.Body()) != len(w.ks.Body())+1+4+2*(32+16) {
		t.Fatal("the section is not appended after the old body")
	}
	got, err := ecash.DecodeKeySet(ks.Encode(), edPub(w.master))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Encode(), ks.Encode()) || len(got.PastSigning) != 2 ||
		!got.PastSigning[1].Pub.Equal(edPub(edKey(20))) || !got.PastSigning[0].ValidUntil.Equal(t0.Add(time.Hour)) {
		t.Fatalf("round trip: %+v", got.PastSigning)
	}
	// Tampering with the section breaks the signature.
	body, sig := unwrap(t, "signed-keyset", ks.Encode())
	if _, err := ecash.DecodeKeySet(rewrap("signed-keyset", flip(body, len(body)-3), sig), nil); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("tampered section: %v", err)
	}
	// Dropping it (a key set rolled back to hide a retired key) too.
	if _, err := ecash.DecodeKeySet(rewrap("signed-keyset", w.ks.Body(), sig), nil); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("section dropped: %v", err)
	}
}

func TestKeySetSectionRefusals(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	good := withHistory(t, w)
	signed := func(body []byte) []byte { return rewrap("signed-keyset", body, ed25519.Sign(w.master, body)) }
	base := w.ks.Body()
	sec := func(n uint32, keys ...ecash.SigningKey) []byte {
		e := ecash.Encoder{}
		e.U8(1)
		e.U32(n)
		for _, k := range keys {
			e.Fixed(k.Pub)
			e.I64(k.ValidFrom.Unix())
			e.I64(k.ValidUntil.Unix())
		}
		return append(slices.Clone(base), e.Bytes()...)
	}
	a, b := good.PastSigning[0], good.PastSigning[1]
	cur := ecash.SigningKey{Pub: edPub(w.signing), ValidFrom: b.ValidFrom, ValidUntil: b.ValidUntil}
	backwards := ecash.SigningKey{Pub: a.Pub, ValidFrom: a.ValidUntil, ValidUntil: a.ValidFrom}
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"empty section", sec(0)},
		{"count larger than the keys", sec(2, a)},
		{"too many keys", sec(ecash.MaxPastSigningKeys + 1)},
		{"oldest first", sec(2, b, a)},
		{"a key twice", sec(2, a, ecash.SigningKey{Pub: a.Pub, ValidFrom: b.ValidFrom, ValidUntil: b.ValidUntil})},
		{"the current key as past", sec(1, cur)},
		{"window backwards", sec(1, backwards)},
		{"empty window", sec(1, ecash.SigningKey{Pub: a.Pub, ValidFrom: a.ValidFrom, ValidUntil: a.ValidFrom})},
		{"unknown section", append(slices.Clone(base), 2, 0, 0, 0, 1)},
		{"section zero", append(slices.Clone(base), 0)},
		{"section repeated", append(slices.Clone(good.Body()), good.Body()[len(base):]...)},
		{"truncated key", sec(1, a)[:len(base)+1+4+20]},
	} {
		ks, err := ecash.DecodeKeySet(signed(tc.body), nil)
		if !errors.Is(err, ecash.ErrMalformed) || ks != nil {
			t.Errorf("%s: %v, %v; want ErrMalformed", tc.name, ks, err)
		}
	}
	if _, err := ecash.DecodeKeySet(signed(sec(2, a, b)), nil); err != nil {
		t.Errorf("well-formed section refused: %v", err)
	}
}

// Receipts and proofs stay verifiable after the signing key rotates: a
// retired key is accepted for what it dated inside its window only.
func TestCheckSigner(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ks := withHistory(t, w)
	a := ks.PastSigning[0]
	for _, tc := range []struct {
		name string
		pub  ed25519.PublicKey
		at   time.Time
		ok   bool
	}{
		{"current key, any time", edPub(w.signing), t0.Add(-1000 * time.Hour), true},
		{"current key, later", edPub(w.signing), t0.Add(1000 * time.Hour), true},
		{"retired key at its start", a.Pub, a.ValidFrom, true},
		{"retired key inside", a.Pub, a.ValidUntil.Add(-time.Millisecond), true},
		{"retired key at its end", a.Pub, a.ValidUntil, false},
		{"retired key before", a.Pub, a.ValidFrom.Add(-time.Millisecond), false},
		{"unknown key", edPub(edKey(77)), t0, false},
		{"short key", edPub(w.signing)[:31], t0, false},
	} {
		err := ks.CheckSigner(tc.pub, tc.at)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && (!errors.Is(err, ecash.ErrUnknownSigner) || !errors.Is(err, ecash.ErrBadSignature)) {
			t.Errorf("%s: %v is not ErrUnknownSigner and ErrBadSignature", tc.name, err)
		}
	}
}

// With overlapping windows, the current key of a value is the withdrawable
// one that started last; Withdrawable lists one key per value.
func TestCurrentDenomination(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	day := 24 * time.Hour
	old, next := w.ks.Denominations[0], w.ks.Denominations[1]
	old.WithdrawStart, old.WithdrawEnd, old.DepositEnd = t0, t0.Add(10*day), t0.Add(30*day)
	next.Value = old.Value
	next.ID = ecash.DenominationID(next.Value, next.Key)
	next.WithdrawStart, next.WithdrawEnd, next.DepositEnd = t0.Add(8*day), t0.Add(18*day), t0.Add(38*day)
	ks := &ecash.KeySet{Currency: "EUR", Denominations: []ecash.Denomination{next, old}}
	for _, tc := range []struct {
		at   time.Time
		want *ecash.Denomination
	}{
		{t0.Add(-time.Second), nil},
		{t0, &old},
		{t0.Add(8*day - time.Second), &old},
		{t0.Add(8 * day), &next}, // both withdrawable: the newer
		{t0.Add(10 * day), &next},
		{t0.Add(18 * day), nil},
	} {
		d, err := ks.CurrentDenomination(old.Value, tc.at)
		if tc.want == nil {
			if !errors.Is(err, ecash.ErrDenominationExpired) {
				t.Errorf("at %v: %v, want ErrDenominationExpired", tc.at, err)
			}
			continue
		}
		if err != nil || d.ID != tc.want.ID {
			t.Errorf("at %v: %x, %v; want %x", tc.at, d.ID[:4], err, tc.want.ID[:4])
		}
		if ws := ks.Withdrawable(tc.at); len(ws) != 1 || ws[0].ID != tc.want.ID {
			t.Errorf("at %v: Withdrawable %d keys", tc.at, len(ws))
		}
	}
	if _, err := ks.CurrentDenomination(eur10, t0.Add(day)); !errors.Is(err, ecash.ErrDenominationExpired) {
		t.Errorf("a value with no key: %v", err)
	}
}

// FuzzDecodeKeySetSections starts from a key set with a past signing key
// section (FuzzDecodeKeySet's corpus comes from the vectors, which have
// none).
func FuzzDecodeKeySetSections(f *testing.F) {
	fx := fuzzFixture(f)
	f.Add(addHistory(fx.ks, fx.master).Body())
	f.Add(fx.ks.Body())
	// Without denominations (no RSA key to parse) the fuzzer runs fast.
	bare := *fx.ks
	bare.Denominations = nil
	f.Add(addHistory(&bare, fx.master).Body())
	f.Fuzz(func(t *testing.T, body []byte) {
		signed := rewrap("signed-keyset", body, ed25519.Sign(fx.master, body))
		ks, err := ecash.DecodeKeySet(signed, edPub(fx.master))
		checkDecode(t, signed, ks, err, (*ecash.KeySet).Encode)
		if err != nil {
			return
		}
		for _, s := range ks.PastSigning {
			if err := ks.CheckSigner(s.Pub, s.ValidFrom); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestKeySetFees: fees travel in their own section, present only when some
// denomination charges one, so a free key set encodes as before; the
// decoder refuses fees that would make a coin worthless or that name a
// denomination the key set does not list.
func TestKeySetFees(t *testing.T) {
	w := newWorld(t)
	free := w.ks.Body()
	ks := *w.ks
	ks.Denominations = append([]ecash.Denomination(nil), w.ks.Denominations...)
	cent := ecash.MustParseAmount("EUR:0.01")
	zero := ecash.Amount{Currency: "EUR"}
	ks.Denominations[1].Fees = ecash.Fees{Withdraw: cent, Deposit: cent, Swap: zero, Refund: cent}
	ks.Sign(w.master)
	got, err := ecash.DecodeKeySet(ks.Encode(), edPub(w.master))
	if err != nil {
		t.Fatal(err)
	}
	if got.Denominations[1].Fees != ks.Denominations[1].Fees || !got.Denominations[0].Fees.IsZero() {
		t.Errorf("fees after a round trip: %+v, %+v", got.Denominations[0].Fees, got.Denominations[1].Fees)
	}
	if net := got.Denominations[1].Net(); net.Value != got.Denominations[1].Value.Value-1 {
		t.Errorf("net value %s", net)
	}
	if bytes.Equal(ks.Body(), free) || !bytes.HasPrefix(ks.Body(), free) {
		t.Error("the fee section is not a suffix of the free key set's encoding")
	}
	for name, f := range map[string]ecash.Fees{
		"deposit fee of the whole value": {Deposit: ks.Denominations[1].Value},
		"refund fee above the value":     {Refund: ecash.MustParseAmount("EUR:1000")},
	} {
		bad := ks
		bad.Denominations = append([]ecash.Denomination(nil), ks.Denominations...)
		bad.Denominations[1].Fees = f
		bad.Sign(w.master)
		if _, err := ecash.DecodeKeySet(bad.Encode(), nil); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// TestKeySetFollows: the succession rule of key sets (PROTOCOL §2.2). A
// later set may add keys, revoke them, and drop those no longer accepted;
// it may not move a known key's windows or fees, list a revoked key as
// valid, or drop a key whose coins are still accepted.
func TestKeySetFollows(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	prev := w.ks
	next := func(change func(*ecash.KeySet)) *ecash.KeySet {
		ks := *prev
		ks.Denominations = slices.Clone(prev.Denominations)
		ks.IssuedAt = prev.IssuedAt.Add(time.Hour)
		change(&ks)
		return &ks
	}
	revoked := next(func(ks *ecash.KeySet) { ks.Denominations[0].Revoked = true })
	for _, tc := range []struct {
		name string
		prev *ecash.KeySet
		ks   *ecash.KeySet
		ok   bool
	}{
		{"the same keys, issued later", prev, next(func(*ecash.KeySet) {}), true},
		{"a key revoked", prev, revoked, true},
		{"a key dropped after its deposit end", prev, next(func(ks *ecash.KeySet) {
			ks.IssuedAt = ks.Denominations[0].DepositEnd
			ks.Denominations = ks.Denominations[1:]
		}), true},
		{"a key dropped while its coins are accepted", prev, next(func(ks *ecash.KeySet) { ks.Denominations = ks.Denominations[1:] }), false},
		{"a key's withdraw window moved", prev, next(func(ks *ecash.KeySet) {
			ks.Denominations[0].WithdrawStart = ks.Denominations[0].WithdrawStart.Add(-time.Hour)
		}), false},
		{"a key's deposit end moved", prev, next(func(ks *ecash.KeySet) { ks.Denominations[0].DepositEnd = ks.Denominations[0].DepositEnd.Add(time.Hour) }), false},
		{"a key's fee changed", prev, next(func(ks *ecash.KeySet) { ks.Denominations[0].Fees.Deposit.Value++ }), false},
		{"a revoked key valid again", revoked, next(func(*ecash.KeySet) {}), false},
	} {
		err := tc.ks.Follows(tc.prev)
		if tc.ok && err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ecash.ErrKeySetSuccession) {
			t.Errorf("%s: %v, want ErrKeySetSuccession", tc.name, err)
		}
	}
}
