package echeck_test

import (
	"bytes"
	"testing"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

func TestEndorsementHappyPath(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	epo, err := g.end.Verify(edPub(g.merchant))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(epo.Encode(), g.epo.Encode()) || g.end.EPOHash() != g.epo.Hash() {
		t.Fatal("the endorsement does not carry the customer's EPO byte for byte")
	}
	key, err := g.end.OpenKey(g.bankHPKE)
	if err != nil || key != g.key {
		t.Fatalf("OpenKey = %x, %v", key, err)
	}

	c := newCheckFlow(t)
	if _, err := c.end.Verify(edPub(c.merchant)); err != nil {
		t.Fatal(err)
	}
	if len(c.end.SealedKey) != 0 {
		t.Fatal("check endorsement carries a key")
	}
	_, err = c.end.OpenKey(c.bankHPKE)
	wantErr(t, err, echeck.ErrNoKey)
}

// TestMerchantEndorsesWrongKey: K does not match the commitment the customer
// signed. NewEndorsement refuses to build it; a hand-built one verifies (the
// merchant's signature is good) but OpenKey refuses the key, so the bank
// declines.
func TestMerchantEndorsesWrongKey(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	wrong := g.key
	wrong[0] ^= 1
	_, err := echeck.NewEndorsement(g.epo, merchantAccount, "", &wrong, g.bankHPKEPub(), g.merchant)
	wantErr(t, err, echeck.ErrKeyMismatch)

	e := endorseRaw(t, g.epo.Encode(), merchantAccount, &wrong, g.bankHPKEPub(), g.merchant)
	if _, err := e.Verify(edPub(g.merchant)); err != nil {
		t.Fatal(err)
	}
	key, err := e.OpenKey(g.bankHPKE)
	wantErr(t, err, echeck.ErrKeyMismatch)
	if key != ([32]byte{}) {
		t.Fatal("OpenKey returned the wrong key")
	}
	// The bank cannot be made to issue an approval with it either.
	_, err = echeck.NewReceipt(g.epo, echeck.Approved, "", wrong, t0, g.signing)
	wantErr(t, err, echeck.ErrKeyMismatch)
}

func TestEndorsementRefusals(t *testing.T) {
	t.Parallel()
	g, c := newGoodsFlow(t), newCheckFlow(t)
	other := edKey(0x0c)

	// Signed by another merchant key, or verified against one.
	e := endorseRaw(t, g.epo.Encode(), merchantAccount, &g.key, g.bankHPKEPub(), other)
	_, err := e.Verify(edPub(g.merchant))
	wantErr(t, err, ecash.ErrBadSignature)
	_, err = e.Verify(edPub(other))
	wantErr(t, err, echeck.ErrMismatch)
	_, err = g.end.Verify(make([]byte, 32))
	wantErr(t, err, ecash.ErrBadKey)
	_, err = echeck.NewEndorsement(g.epo, merchantAccount, "", &g.key, g.bankHPKEPub(), other)
	wantErr(t, err, echeck.ErrMismatch)

	// Crediting another account than the customer named.
	e = endorseRaw(t, g.epo.Encode(), merchantAccount+1, &g.key, g.bankHPKEPub(), g.merchant)
	_, err = e.Verify(edPub(g.merchant))
	wantErr(t, err, echeck.ErrMismatch)
	_, err = echeck.NewEndorsement(g.epo, merchantAccount+1, "", &g.key, g.bankHPKEPub(), g.merchant)
	wantErr(t, err, echeck.ErrMismatch)

	// Any change after signing breaks the merchant's signature.
	e = cloneEndorsement(t, g.end)
	e.Memo = "other memo"
	_, err = e.Verify(edPub(g.merchant))
	wantErr(t, err, ecash.ErrBadSignature)

	// A sealed key moved from one EPO to another does not open (AAD).
	g2 := newGoodsFlow(t) // same keys and fields, fresh HPKE randomness: another EPO hash
	if g2.epo.Hash() == g.epo.Hash() {
		t.Fatal("two signed EPOs with equal hashes")
	}
	e = cloneEndorsement(t, g.end)
	e.EPO = g2.epo.Encode()
	e.MerchantSig = ecash.SignBody(g.merchant, e.Body())
	if _, err := e.Verify(edPub(g.merchant)); err != nil {
		t.Fatal(err)
	}
	_, err = e.OpenKey(g.bankHPKE)
	wantErr(t, err, ecash.ErrMalformed)
	// Only the bank opens the key.
	_, err = g.end.OpenKey(g.reply)
	wantErr(t, err, ecash.ErrMalformed)

	// Kind rules.
	_, err = echeck.NewEndorsement(g.epo, merchantAccount, "", nil, g.bankHPKEPub(), g.merchant)
	wantErr(t, err, echeck.ErrNoKey)
	_, err = echeck.NewEndorsement(c.epo, merchantAccount, "", &g.key, c.bankHPKEPub(), c.merchant)
	wantErr(t, err, ecash.ErrMalformed)
	_, err = echeck.NewEndorsement(g.epo, merchantAccount, string(make([]byte, echeck.MaxMemoLen+1)), &g.key, g.bankHPKEPub(), g.merchant)
	wantErr(t, err, ecash.ErrMalformed)

	// A replayed (bit-identical) endorsement verifies again: catching the
	// replay is the bank's job, by EPOID and EPO hash.
	if _, err := echeck.DecodeEndorsement(g.end.Encode()); err != nil {
		t.Fatal(err)
	}
}
