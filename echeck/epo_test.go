package echeck_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

func TestSignedEPOHappyPath(t *testing.T) {
	t.Parallel()
	for _, f := range []*flow{newGoodsFlow(t), newCheckFlow(t)} {
		s := f.epo
		if err := s.VerifyCustomer(); err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(t0.Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		priv, err := s.OpenPrivate(f.bankHPKE)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(priv.Encode(), f.priv.Encode()) {
			t.Fatalf("private part %+v, want %+v", priv, f.priv)
		}
		if s.Hash() != ecash.HashOf(s.Encode()) || s.BodyHash() != ecash.HashOf(s.Body()) {
			t.Fatal("hashes")
		}
	}
}

func TestNewGoodsEPOFromOffer(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	if err := g.epo.CheckOffer(g.quote, g.delivery); err != nil {
		t.Fatal(err)
	}
	// The merchant's own records disagree with what the customer signed.
	q := *g.quote
	q.Price = ecash.MustParseAmount("EUR:2.00")
	wantErr(t, g.epo.CheckOffer(&q, g.delivery), echeck.ErrMismatch)
	d := *g.delivery
	d.EPOID = echeck.NewEPOID(merchantAccount, t0, 2)
	wantErr(t, g.epo.CheckOffer(g.quote, &d), echeck.ErrMismatch)
	d = *g.delivery
	d.Ciphertext = bytes.Clone(d.Ciphertext)
	d.Ciphertext[0] ^= 1
	wantErr(t, g.epo.CheckOffer(g.quote, &d), echeck.ErrMismatch)
	c := newCheckFlow(t)
	wantErr(t, c.epo.CheckOffer(g.quote, g.delivery), echeck.ErrMismatch)
}

// TestMerchantTampersEPO: the merchant alters a clear field after the
// customer signed. The customer's signature no longer verifies, for the
// merchant's own check, for the bank's endorsement check, and for Judge.
func TestMerchantTampersEPO(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	tamper := map[string]func(e *echeck.EPO){
		"price":          func(e *echeck.EPO) { e.Price = ecash.MustParseAmount("EUR:15.00") },
		"currency":       func(e *echeck.EPO) { e.Price.Currency = "USD" },
		"goods hash":     func(e *echeck.EPO) { e.GoodsHash[0] ^= 1 },
		"key commitment": func(e *echeck.EPO) { e.KeyCommit[0] ^= 1 },
		"EPOID serial":   func(e *echeck.EPO) { e.EPOID.Serial++ },
		"EPOID time":     func(e *echeck.EPO) { e.EPOID.Timestamp = e.EPOID.Timestamp.Add(time.Millisecond) },
		"EPOID merchant": func(e *echeck.EPO) { e.EPOID.Merchant++ },
		"account":        func(e *echeck.EPO) { e.MerchantAccount++ },
		"product":        func(e *echeck.EPO) { e.ProductID = "song-0002" },
		"expiry":         func(e *echeck.EPO) { e.ExpiresAt = e.ExpiresAt.Add(time.Hour) },
		"PRD hash":       func(e *echeck.EPO) { e.PRDHash[0] ^= 1 },
		"kind":           func(e *echeck.EPO) { e.Kind = echeck.KindCheck },
	}
	for name, change := range tamper {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := cloneSigned(t, g.epo)
			change(&s.EPO)
			if err := s.VerifyCustomer(); err == nil {
				t.Fatal("tampered EPO verifies")
			}
			// The merchant endorses the tampered EPO with its own valid
			// signature; the bank refuses it.
			e := endorseRaw(t, s.Encode(), s.MerchantAccount, &g.key, g.bankHPKEPub(), g.merchant)
			if _, err := e.Verify(edPub(g.merchant)); err == nil {
				t.Fatal("endorsement of a tampered EPO verifies")
			}
			if _, err := echeck.NewEndorsement(s, s.MerchantAccount, "", &g.key, g.bankHPKEPub(), g.merchant); err == nil {
				t.Fatal("NewEndorsement endorsed a tampered EPO")
			}
		})
	}
}

// TestSealedPartIsBound: the private part cannot be swapped for another
// (the signature covers its hash) nor moved under another clear part (the
// AAD is the clear body's hash).
func TestSealedPartIsBound(t *testing.T) {
	t.Parallel()
	g, c := newGoodsFlow(t), newCheckFlow(t)

	swapped := cloneSigned(t, g.epo)
	swapped.SealedPrivate = c.epo.SealedPrivate
	wantErr(t, swapped.VerifyCustomer(), ecash.ErrBadSignature)

	// Even re-signed by the customer, a private part moved under another
	// clear part does not open.
	resignEPO(swapped, g.customer)
	if err := swapped.VerifyCustomer(); err != nil {
		t.Fatal(err)
	}
	_, err := swapped.OpenPrivate(g.bankHPKE)
	wantErr(t, err, echeck.ErrPrivateSealed)
	wantErr(t, err, ecash.ErrMalformed)

	flipped := cloneSigned(t, g.epo)
	flipped.SealedPrivate[40] ^= 1
	wantErr(t, flipped.VerifyCustomer(), ecash.ErrBadSignature)
}

// TestMerchantCannotOpenPrivatePart: only the bank's HPKE key opens it.
func TestMerchantCannotOpenPrivatePart(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	for _, k := range []byte{0x03, 0x04, 0x06, 0x08} { // merchant and customer seeds, a stranger, the reply key
		p, err := g.epo.OpenPrivate(x25519Key(t, k))
		wantErr(t, err, echeck.ErrPrivateSealed)
		if p != nil {
			t.Fatal("partial private part")
		}
	}
	// Nor does the merchant learn the account from the clear part.
	if bytes.Contains(g.epo.Body(), []byte("music")) {
		t.Fatal("memo leaked into the clear part")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	base := g.epo.EPO
	if err := base.Validate(t0); err != nil {
		t.Fatal(err)
	}
	// Expiry: valid until the millisecond before ExpiresAt.
	if err := base.Validate(base.ExpiresAt.Add(-time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, base.Validate(base.ExpiresAt), echeck.ErrExpired)
	wantErr(t, g.epo.Validate(base.ExpiresAt.Add(time.Hour)), echeck.ErrExpired)
	// An EPOID from the future (beyond the clock skew).
	wantErr(t, base.Validate(t0.Add(-ecash.MaxClockSkew-time.Millisecond)), echeck.ErrStale)
	if err := base.Validate(t0.Add(-ecash.MaxClockSkew)); err != nil {
		t.Fatal(err)
	}

	cases := map[string]struct {
		change func(e *echeck.EPO)
		want   error
	}{
		"zero price":            {func(e *echeck.EPO) { e.Price.Value = 0 }, ecash.ErrBadAmount},
		"bad currency":          {func(e *echeck.EPO) { e.Price.Currency = "eur" }, ecash.ErrBadAmount},
		"price over MaxValue":   {func(e *echeck.EPO) { e.Price.Value = ecash.MaxValue + 1 }, ecash.ErrOverflow},
		"unknown kind":          {func(e *echeck.EPO) { e.Kind = 3 }, ecash.ErrMalformed},
		"goods without product": {func(e *echeck.EPO) { e.ProductID = "" }, ecash.ErrMalformed},
		"goods without hash":    {func(e *echeck.EPO) { e.GoodsHash = ecash.Hash{} }, ecash.ErrMalformed},
		"goods without commit":  {func(e *echeck.EPO) { e.KeyCommit = ecash.Hash{} }, ecash.ErrMalformed},
		"goods without PRD":     {func(e *echeck.EPO) { e.PRDHash = ecash.Hash{} }, ecash.ErrMalformed},
		"check with goods hash": {func(e *echeck.EPO) { e.Kind = echeck.KindCheck; e.KeyCommit, e.PRDHash = ecash.Hash{}, ecash.Hash{} }, ecash.ErrMalformed},
		"expiry before EPOID":   {func(e *echeck.EPO) { e.ExpiresAt = e.EPOID.Timestamp }, ecash.ErrMalformed},
		"lifetime too long": {func(e *echeck.EPO) {
			e.ExpiresAt = e.EPOID.Timestamp.Add(echeck.MaxEPOLifetime + time.Millisecond)
		}, ecash.ErrMalformed},
		"small-order customer key":   {func(e *echeck.EPO) { e.Customer = make(ed25519.PublicKey, 32) }, ecash.ErrBadKey},
		"non-canonical merchant key": {func(e *echeck.EPO) { e.MerchantPub = bytes.Repeat([]byte{0xff}, 32) }, ecash.ErrBadKey},
		"short customer key":         {func(e *echeck.EPO) { e.Customer = e.Customer[:31] }, ecash.ErrBadKey},
		"product id not UTF-8":       {func(e *echeck.EPO) { e.ProductID = "\xc3" }, ecash.ErrMalformed},
	}
	for name, tc := range cases {
		e := base
		e.Customer, e.MerchantPub = bytes.Clone(base.Customer), bytes.Clone(base.MerchantPub)
		tc.change(&e)
		wantErr(t, e.Validate(t0), tc.want)
		if name == "short customer key" {
			continue // the body would not even have the right length
		}
		if _, err := echeck.NewSignedEPO(e, g.priv, g.bankHPKEPub(), g.customer); err == nil {
			t.Errorf("%s: NewSignedEPO accepted it", name)
		}
	}
	// The longest lifetime is allowed.
	e := base
	e.ExpiresAt = e.EPOID.Timestamp.Add(echeck.MaxEPOLifetime)
	if err := e.Validate(t0); err != nil {
		t.Fatal(err)
	}
	// A check may have an empty reference.
	c := checkEPO(g.keys)
	c.ProductID = ""
	if err := c.Validate(t0); err != nil {
		t.Fatal(err)
	}
}

func TestNewSignedEPORefuses(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	epo := g.epo.EPO
	if _, err := echeck.NewSignedEPO(epo, g.priv, g.bankHPKEPub(), g.merchant); err == nil {
		t.Fatal("signed with a key that is not the EPO's customer")
	}
	p := g.priv
	p.ReplyKey = [32]byte{} // low order: the bank could not seal to it
	_, err := echeck.NewSignedEPO(epo, p, g.bankHPKEPub(), g.customer)
	wantErr(t, err, ecash.ErrBadKey)
	p = g.priv
	p.ReplyKey[0] = 1 // another low-order point (u = 1)
	for i := 1; i < 32; i++ {
		p.ReplyKey[i] = 0
	}
	_, err = echeck.NewSignedEPO(epo, p, g.bankHPKEPub(), g.customer)
	wantErr(t, err, ecash.ErrBadKey)
	p = g.priv
	p.Authorization = make([]byte, echeck.MaxAuthorizationLen+1)
	_, err = echeck.NewSignedEPO(epo, p, g.bankHPKEPub(), g.customer)
	wantErr(t, err, ecash.ErrMalformed)
	_, err = echeck.NewSignedEPO(epo, g.priv, []byte{1, 2, 3}, g.customer)
	wantErr(t, err, ecash.ErrBadKey)
}

// TestSignedEPOValidateSizes covers the sealed-part and signature sizes.
func TestSignedEPOValidateSizes(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	s := cloneSigned(t, g.epo)
	s.CustomerSig = s.CustomerSig[:63]
	wantErr(t, s.Validate(t0), ecash.ErrBadSignature)
	wantErr(t, s.VerifyCustomer(), ecash.ErrBadSignature)
	s = cloneSigned(t, g.epo)
	s.SealedPrivate = s.SealedPrivate[:10]
	wantErr(t, s.Validate(t0), ecash.ErrMalformed)
}
