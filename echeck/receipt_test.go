package echeck_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

func TestReceiptApprovedGoods(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	r := g.receipt
	if err := r.Verify(edPub(g.signing)); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckEPO(g.epo); err != nil {
		t.Fatal(err)
	}
	if err := r.CheckKey(g.epo.KeyCommit); err != nil {
		t.Fatal(err)
	}
	goods, err := r.OpenGoods(edPub(g.signing), g.epo, g.delivery.Ciphertext)
	if err != nil || !bytes.Equal(goods, testGoods) {
		t.Fatalf("OpenGoods = %q, %v", goods, err)
	}
	if r.Key != g.key || r.EPOHash != g.epo.Hash() || !r.EPOID.Equal(g.epo.EPOID) || r.Kind != echeck.KindGoods {
		t.Fatal("receipt fields")
	}
	// Another ciphertext, or one for another EPO, is refused.
	_, err = r.OpenGoods(edPub(g.signing), g.epo, g.delivery.Ciphertext[1:])
	wantErr(t, err, echeck.ErrMismatch)
	g2 := newGoodsFlow(t)
	_, err = r.OpenGoods(edPub(g.signing), g2.epo, g.delivery.Ciphertext)
	wantErr(t, err, echeck.ErrMismatch)
}

func TestReceiptRules(t *testing.T) {
	t.Parallel()
	g, c := newGoodsFlow(t), newCheckFlow(t)

	// Declines carry a reason and never a key.
	d, err := echeck.NewReceipt(g.epo, echeck.Declined, echeck.ReasonInsufficientFunds, [32]byte{}, t0, g.signing)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Verify(edPub(g.signing)); err != nil {
		t.Fatal(err)
	}
	wantErr(t, d.CheckKey(g.epo.KeyCommit), echeck.ErrNoKey)
	_, err = d.OpenGoods(edPub(g.signing), g.epo, g.delivery.Ciphertext)
	wantErr(t, err, echeck.ErrNoKey)
	_, err = echeck.NewReceipt(g.epo, echeck.Declined, echeck.ReasonExpired, g.key, t0, g.signing)
	wantErr(t, err, ecash.ErrMalformed)
	_, err = echeck.NewReceipt(g.epo, echeck.Declined, "", [32]byte{}, t0, g.signing)
	wantErr(t, err, ecash.ErrMalformed)
	// Approvals: no reason; a key exactly for goods.
	_, err = echeck.NewReceipt(g.epo, echeck.Approved, "ok", g.key, t0, g.signing)
	wantErr(t, err, ecash.ErrMalformed)
	_, err = echeck.NewReceipt(g.epo, echeck.Approved, "", [32]byte{}, t0, g.signing)
	wantErr(t, err, ecash.ErrMalformed)
	_, err = echeck.NewReceipt(c.epo, echeck.Approved, "", g.key, t0, g.signing)
	wantErr(t, err, ecash.ErrMalformed)
	_, err = echeck.NewReceipt(g.epo, 3, "", g.key, t0, g.signing)
	wantErr(t, err, ecash.ErrMalformed)
	wantErr(t, c.receipt.CheckKey(ecash.Hash{}), echeck.ErrNoKey)

	// A decline re-signed with a key in it does not decode.
	bad := cloneReceipt(t, d)
	bad.Key = g.key
	bad.Sign(g.signing)
	_, err = echeck.DecodeReceipt(bad.Encode())
	wantErr(t, err, ecash.ErrMalformed)
	wantErr(t, bad.Verify(edPub(g.signing)), ecash.ErrMalformed)

	// Signatures.
	r := cloneReceipt(t, g.receipt)
	r.Key[0] ^= 1
	wantErr(t, r.Verify(edPub(g.signing)), ecash.ErrBadSignature)
	r = cloneReceipt(t, g.receipt)
	r.Decision, r.Reason, r.Key = echeck.Declined, "x", [32]byte{}
	wantErr(t, r.Verify(edPub(g.signing)), ecash.ErrBadSignature)
	wantErr(t, g.receipt.Verify(edPub(g.merchant)), ecash.ErrBadSignature)
	r = cloneReceipt(t, g.receipt)
	r.Sign(g.merchant) // signed by someone, but not the bank
	wantErr(t, r.Verify(edPub(g.signing)), ecash.ErrBadSignature)

	// CheckEPO: a receipt for another EPO under the same EPOID.
	g2 := newGoodsFlow(t)
	wantErr(t, g.receipt.CheckEPO(g2.epo), echeck.ErrMismatch)
	wantErr(t, g.receipt.CheckEPO(c.epo), echeck.ErrMismatch)
}

func TestCustomerBlock(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	block := customerBlockFixture()
	h := g.receipt.Hash()
	if h != ecash.HashOf(g.receipt.Encode()) {
		t.Fatal("Receipt.Hash")
	}
	priv, err := g.epo.OpenPrivate(g.bankHPKE)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := echeck.SealCustomerBlock(priv.ReplyKey, h, block)
	if err != nil {
		t.Fatal(err)
	}
	got, err := echeck.OpenCustomerBlock(g.reply, h, sealed)
	if err != nil || !bytes.Equal(got.Encode(), block.Encode()) {
		t.Fatalf("OpenCustomerBlock = %+v, %v", got, err)
	}
	// Bound to the receipt; readable only with the reply key (not by the
	// merchant, not by the bank after the fact).
	other := cloneReceipt(t, g.receipt)
	other.DecidedAt = other.DecidedAt.Add(time.Millisecond)
	other.Sign(g.signing)
	for _, tc := range []struct {
		name string
		h    ecash.Hash
		k    byte
	}{{"other receipt", other.Hash(), 0x08}, {"merchant", h, 0x03}, {"bank", h, 0x05}} {
		b, err := echeck.OpenCustomerBlock(x25519Key(t, tc.k), tc.h, sealed)
		if err == nil || b != nil {
			t.Errorf("%s opened the customer block", tc.name)
		}
	}
	// The low-balance flag is one byte, 0 or 1.
	enc := block.Encode()
	enc[len(enc)-1] = 2
	_, err = echeck.DecodeCustomerBlock(enc)
	wantErr(t, err, ecash.ErrMalformed)
}
