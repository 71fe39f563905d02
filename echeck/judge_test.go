package echeck_test

import (
	"bytes"
	"testing"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// TestJudge runs every rule of Judge on records built as each party could
// really produce them.
func TestJudge(t *testing.T) {
	t.Parallel()
	g, c := newGoodsFlow(t), newCheckFlow(t)
	bank := edPub(g.signing)
	ct := g.delivery.Ciphertext

	// A dishonest merchant: commits to K1 (so the bank approves and releases
	// K1) but delivers goods encrypted under another key. The customer
	// checks the hash of what it received and signs; it is charged.
	k1 := [32]byte{1}
	var k2 [32]byte
	copy(k2[:], bytes.Repeat([]byte{2}, 32))
	_, ctK2, err := echeck.EncryptGoods(bytes.NewReader(k2[:]), testEPOID(), testGoods)
	if err != nil {
		t.Fatal(err)
	}
	badDelivery := &echeck.Delivery{EPOID: testEPOID(), TID: g.req.TID, Ciphertext: ctK2, GoodsHash: echeck.GoodsHash(ctK2), KeyCommit: echeck.KeyCommit(k1)}
	garbled, err := echeck.NewSignedEPO(echeck.NewGoodsEPO(edPub(g.customer), g.quote, badDelivery, g.epo.ExpiresAt), g.priv, g.bankHPKEPub(), g.customer)
	if err != nil {
		t.Fatal(err)
	}
	garbledReceipt, err := echeck.NewReceipt(garbled, echeck.Approved, "", k1, t0, g.signing)
	if err != nil {
		t.Fatal(err)
	}

	// A bank that approved a key not matching the commitment (ours never
	// does; the receipt is built by hand and signed with the bank key).
	wrongKey := cloneReceipt(t, g.receipt)
	wrongKey.Key[0] ^= 1
	wrongKey.Sign(g.signing)

	declined, err := echeck.NewReceipt(g.epo, echeck.Declined, echeck.ReasonInsufficientFunds, [32]byte{}, t0, g.signing)
	if err != nil {
		t.Fatal(err)
	}
	forgedEPO := cloneSigned(t, g.epo)
	forgedEPO.Price = ecash.MustParseAmount("EUR:0.01")
	forgedReceipt := cloneReceipt(t, g.receipt)
	forgedReceipt.Sign(g.merchant)
	otherEPO := newGoodsFlow(t).epo
	otherCT := bytes.Clone(ct)
	otherCT[0] ^= 1

	cases := []struct {
		name    string
		r       *echeck.Receipt
		epo     *echeck.SignedEPO
		ct      []byte
		bankKey []byte
		want    echeck.Outcome
	}{
		{"goods delivered as agreed", g.receipt, g.epo, ct, bank, echeck.NoFault},
		{"customer presents other bytes", g.receipt, g.epo, otherCT, bank, echeck.CustomerFault},
		{"customer presents nothing", g.receipt, g.epo, nil, bank, echeck.CustomerFault},
		{"K does not open the ciphertext signed for", garbledReceipt, garbled, ctK2, bank, echeck.MerchantFault},
		{"K does not match the commitment", wrongKey, g.epo, ct, bank, echeck.MerchantFault},
		{"receipt declines", declined, g.epo, ct, bank, echeck.InvalidClaim},
		{"EPO is a check", c.receipt, c.epo, ct, bank, echeck.InvalidClaim},
		{"customer signature forged", g.receipt, forgedEPO, ct, bank, echeck.InvalidClaim},
		{"receipt not signed by the bank", forgedReceipt, g.epo, ct, bank, echeck.InvalidClaim},
		{"wrong bank key", g.receipt, g.epo, ct, edPub(g.merchant), echeck.InvalidClaim},
		{"receipt for another EPO", g.receipt, otherEPO, ct, bank, echeck.InvalidClaim},
		{"no receipt", nil, g.epo, ct, bank, echeck.InvalidClaim},
		{"no EPO", g.receipt, nil, ct, bank, echeck.InvalidClaim},
	}
	for _, tc := range cases {
		v := echeck.Judge(tc.r, tc.epo, tc.ct, tc.bankKey)
		if v.Outcome != tc.want || v.Reason == "" {
			t.Errorf("%s: %v, want %v", tc.name, v, tc.want)
		}
	}
	// The customer's own check agrees with Judge: it cannot open garbled
	// goods, and the receipt still proves it was charged.
	if _, err := garbledReceipt.OpenGoods(bank, garbled, ctK2); err == nil {
		t.Fatal("garbled goods opened")
	}
	for o := echeck.InvalidClaim; o <= echeck.CustomerFault+1; o++ {
		if o.String() == "" {
			t.Fatal("Outcome.String")
		}
	}
}

func TestEnumStrings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{echeck.KindGoods.String(), "goods"}, {echeck.KindCheck.String(), "check"}, {echeck.Kind(9).String(), "kind(9)"},
		{echeck.Approved.String(), "approved"}, {echeck.Declined.String(), "declined"}, {echeck.Decision(0).String(), "decision(0)"},
		{echeck.NoFault.String(), "no fault"}, {echeck.Outcome(0).String(), "outcome(0)"},
		{echeck.Verdict{Outcome: echeck.MerchantFault, Reason: "r"}.String(), "merchant fault: r"},
	} {
		if tc.got != tc.want {
			t.Errorf("%q, want %q", tc.got, tc.want)
		}
	}
}
