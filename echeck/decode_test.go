package echeck_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// codec is one encoding: a valid instance, its decoder and its encoder.
type codec struct {
	name    string
	purpose string // the outer tag
	enc     []byte
	decode  func([]byte) (any, []byte, error) // value, its re-encoding, error
}

func mk[T any](name, purpose string, enc []byte, dec func([]byte) (T, error), encode func(T) []byte) codec {
	return codec{name: name, purpose: purpose, enc: enc, decode: func(b []byte) (any, []byte, error) {
		v, err := dec(b)
		if err != nil {
			return v, nil, err
		}
		return v, encode(v), nil
	}}
}

func statementFixture(k keys) *echeck.Statement {
	s := &echeck.Statement{
		Account:  customerAccount,
		Currency: "EUR",
		From:     t0.Add(-time.Hour),
		To:       t0.Add(24 * time.Hour),
		Opening:  10000,
		Lines: []echeck.StatementLine{
			{PostedAt: t0.Add(-time.Minute), ProductID: "", Amount: 5000, Counterparty: 1, Memo: "funding", Balance: 15000},
			{PostedAt: t0.Add(2 * time.Minute), EPOID: testEPOID(), ProductID: "song-0001", Amount: -150, Counterparty: merchantAccount, Memo: "music", Balance: 14850},
			{PostedAt: t0.Add(3 * time.Minute), EPOID: checkEPOID(), ProductID: "invoice 2025-17", Amount: -2500, Counterparty: merchantAccount, Memo: "rent", Balance: 12350},
		},
	}
	s.Sign(k.signing)
	return s
}

func customerBlockFixture() *echeck.CustomerBlock {
	return &echeck.CustomerBlock{EPOID: testEPOID(), Account: customerAccount, NewBalance: ecash.MustParseAmount("EUR:148.50"), LowBalance: true}
}

// allCodecs lists every encoding of the package with a valid instance.
func allCodecs(tb testing.TB) []codec {
	g, c := newGoodsFlow(tb), newCheckFlow(tb)
	declined, err := echeck.NewReceipt(g.epo, echeck.Declined, echeck.ReasonInsufficientFunds, [32]byte{}, t0.Add(time.Minute), g.signing)
	if err != nil {
		tb.Fatal(err)
	}
	priv, err := g.epo.OpenPrivate(g.bankHPKE)
	if err != nil {
		tb.Fatal(err)
	}
	sq := echeck.NewStatusQuery(testEPOID(), t0.Add(time.Hour), g.customer)
	return []codec{
		mk("epoid", "epoid", testEPOID().Encode(), echeck.DecodeEPOID, echeck.EPOID.Encode),
		mk("price request", "price-request", g.req.Encode(), echeck.DecodePriceRequest, (*echeck.PriceRequest).Encode),
		mk("quote", "signed-quote", g.quote.Encode(), echeck.DecodeQuote, (*echeck.Quote).Encode),
		mk("delivery", "delivery", g.delivery.Encode(), echeck.DecodeDelivery, (*echeck.Delivery).Encode),
		mk("epo goods", "epo", g.epo.Body(), echeck.DecodeEPO, (*echeck.EPO).Body),
		mk("epo check", "epo", c.epo.Body(), echeck.DecodeEPO, (*echeck.EPO).Body),
		mk("epo private", "epo-private", priv.Encode(), echeck.DecodeEPOPrivate, (*echeck.EPOPrivate).Encode),
		mk("signed epo goods", "signed-epo", g.epo.Encode(), echeck.DecodeSignedEPO, (*echeck.SignedEPO).Encode),
		mk("signed epo check", "signed-epo", c.epo.Encode(), echeck.DecodeSignedEPO, (*echeck.SignedEPO).Encode),
		mk("endorsement goods", "signed-endorsement", g.end.Encode(), echeck.DecodeEndorsement, (*echeck.Endorsement).Encode),
		mk("endorsement check", "signed-endorsement", c.end.Encode(), echeck.DecodeEndorsement, (*echeck.Endorsement).Encode),
		mk("receipt approved goods", "signed-epo-receipt", g.receipt.Encode(), echeck.DecodeReceipt, (*echeck.Receipt).Encode),
		mk("receipt approved check", "signed-epo-receipt", c.receipt.Encode(), echeck.DecodeReceipt, (*echeck.Receipt).Encode),
		mk("receipt declined", "signed-epo-receipt", declined.Encode(), echeck.DecodeReceipt, (*echeck.Receipt).Encode),
		mk("customer block", "customer-block", customerBlockFixture().Encode(), echeck.DecodeCustomerBlock, (*echeck.CustomerBlock).Encode),
		mk("status query", "signed-status-query", sq.Encode(), echeck.DecodeStatusQuery, (*echeck.StatusQuery).Encode),
		mk("statement", "signed-statement", statementFixture(g.keys).Encode(), echeck.DecodeStatement, (*echeck.Statement).Encode),
		mk("statement request", "signed-statement-request",
			echeck.NewStatementRequest(customerAccount, t0.Add(-time.Hour), t0, t0, g.customer).Encode(),
			echeck.DecodeStatementRequest, (*echeck.StatementRequest).Encode),
	}
}

// TestDecoders holds every decoder to the rules of docs/PROTOCOL.md §1:
// canonical round trip; truncation anywhere, a trailing byte and a wrong tag
// are refused with ErrMalformed and no partial value.
func TestDecoders(t *testing.T) {
	t.Parallel()
	for _, c := range allCodecs(t) {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			v, re, err := c.decode(c.enc)
			if err != nil {
				t.Fatal(err)
			}
			if isZero(v) || !bytes.Equal(re, c.enc) {
				t.Fatalf("round trip changed the encoding\n in %x\nout %x", c.enc, re)
			}
			refuse := func(what string, b []byte) {
				t.Helper()
				v, re, err := c.decode(b)
				if !errors.Is(err, ecash.ErrMalformed) {
					t.Fatalf("%s: error %v, want ErrMalformed", what, err)
				}
				if !isZero(v) || re != nil {
					t.Fatalf("%s: partial value %+v", what, v)
				}
			}
			for n := range len(c.enc) {
				refuse("truncated", c.enc[:n])
			}
			refuse("trailing byte", append(bytes.Clone(c.enc), 0))
			refuse("wrong tag", retag(c.enc, c.purpose, c.purpose+"x"))
			refuse("ecash tag", retag(c.enc, c.purpose, "payment-request"))
		})
	}
}

// TestDecodeOversize builds encodings whose fields exceed their bounds by
// one; each decoder must refuse them.
func TestDecodeOversize(t *testing.T) {
	t.Parallel()
	g, c := newGoodsFlow(t), newCheckFlow(t)
	long := func(n int) string { return strings.Repeat("x", n) }
	type tc struct {
		name string
		dec  func() error
	}
	var cases []tc
	add := func(name string, dec func() error) { cases = append(cases, tc{name, dec}) }

	req := *g.req
	req.ProductID = long(echeck.MaxProductIDLen + 1)
	add("price request product id", func() error { _, err := echeck.DecodePriceRequest(req.Encode()); return err })
	req2 := *g.req
	req2.PRD = make([]byte, echeck.MaxPRDLen+1)
	add("price request PRD", func() error { _, err := echeck.DecodePriceRequest(req2.Encode()); return err })
	req3 := *g.req
	req3.ProductID = "\xff"
	add("price request product id not UTF-8", func() error { _, err := echeck.DecodePriceRequest(req3.Encode()); return err })
	req4 := *g.req
	req4.ProductID = "song\x1b[2K"
	add("price request product id with an escape", func() error { _, err := echeck.DecodePriceRequest(req4.Encode()); return err })

	q := *g.quote
	q.ProductID = long(echeck.MaxProductIDLen + 1)
	q.Sign(g.merchant)
	add("quote product id", func() error { _, err := echeck.DecodeQuote(q.Encode()); return err })

	// A delivery claiming one byte more ciphertext than allowed (the
	// decoder must refuse before reading, so no ciphertext is needed).
	off := tagLen("delivery") + 24 + 16
	hdr := put32(g.delivery.Encode()[:off+4], off, echeck.MaxCiphertextLen+1)
	add("delivery ciphertext", func() error { _, err := echeck.DecodeDelivery(hdr); return err })
	d := *g.delivery
	d.Ciphertext = d.Ciphertext[:15]
	add("delivery ciphertext shorter than the tag", func() error { _, err := echeck.DecodeDelivery(d.Encode()); return err })

	epo := g.epo.EPO
	epo.ProductID = long(echeck.MaxProductIDLen + 1)
	add("epo product id", func() error { _, err := echeck.DecodeEPO(epo.Body()); return err })

	priv := g.priv
	priv.Memo = long(echeck.MaxMemoLen + 1)
	add("epo private memo", func() error { _, err := echeck.DecodeEPOPrivate(priv.Encode()); return err })
	privCtl := g.priv
	privCtl.Memo = "rent\rEUR:0.01"
	add("epo private memo with a carriage return", func() error { _, err := echeck.DecodeEPOPrivate(privCtl.Encode()); return err })
	privBidi := g.priv
	privBidi.Memo = "gift \u202e10.0"
	add("epo private memo with a bidi override", func() error { _, err := echeck.DecodeEPOPrivate(privBidi.Encode()); return err })
	priv2 := g.priv
	priv2.Authorization = make([]byte, echeck.MaxAuthorizationLen+1)
	add("epo private authorization", func() error { _, err := echeck.DecodeEPOPrivate(priv2.Encode()); return err })

	s := cloneSigned(t, g.epo)
	s.SealedPrivate = make([]byte, echeck.MaxSealedPrivateLen+1)
	add("signed epo sealed part", func() error { _, err := echeck.DecodeSignedEPO(s.Encode()); return err })
	s2 := cloneSigned(t, g.epo)
	s2.SealedPrivate = s2.SealedPrivate[:47]
	add("signed epo sealed part too short", func() error { _, err := echeck.DecodeSignedEPO(s2.Encode()); return err })

	e := cloneEndorsement(t, g.end)
	e.Memo = long(echeck.MaxMemoLen + 1)
	e.MerchantSig = ecash.SignBody(g.merchant, e.Body())
	add("endorsement memo", func() error { _, err := echeck.DecodeEndorsement(e.Encode()); return err })
	eCtl := cloneEndorsement(t, g.end)
	eCtl.Memo = "till 3\u009b2K"
	eCtl.MerchantSig = ecash.SignBody(g.merchant, eCtl.Body())
	add("endorsement memo with a C1 control", func() error { _, err := echeck.DecodeEndorsement(eCtl.Encode()); return err })
	e2 := cloneEndorsement(t, g.end)
	e2.SealedKey = append(e2.SealedKey, 0)
	add("endorsement sealed key", func() error { _, err := echeck.DecodeEndorsement(e2.Encode()); return err })
	e3 := cloneEndorsement(t, c.end)
	e3.SealedKey = g.end.SealedKey
	add("check endorsement with a sealed key", func() error { _, err := echeck.DecodeEndorsement(e3.Encode()); return err })
	e4 := cloneEndorsement(t, g.end)
	e4.SealedKey = nil
	add("goods endorsement without a sealed key", func() error { _, err := echeck.DecodeEndorsement(e4.Encode()); return err })
	e5 := cloneEndorsement(t, g.end)
	e5.EPO = make([]byte, echeck.MaxSignedEPOLen+1)
	add("endorsement EPO", func() error { _, err := echeck.DecodeEndorsement(e5.Encode()); return err })

	r := cloneReceipt(t, g.receipt)
	r.Decision = echeck.Declined
	r.Reason = long(echeck.MaxReasonLen + 1)
	r.Key = [32]byte{}
	r.Sign(g.signing)
	add("receipt reason", func() error { _, err := echeck.DecodeReceipt(r.Encode()); return err })
	rCtl := cloneReceipt(t, g.receipt)
	rCtl.Decision = echeck.Declined
	rCtl.Reason = "insufficient funds\u2028approved"
	rCtl.Key = [32]byte{}
	rCtl.Sign(g.signing)
	add("receipt reason with a line separator", func() error { _, err := echeck.DecodeReceipt(rCtl.Encode()); return err })

	st := statementFixture(g.keys)
	st.Lines[0].Memo = long(echeck.MaxMemoLen + 1)
	add("statement memo", func() error { _, err := echeck.DecodeStatement(st.Encode()); return err })
	st2 := statementFixture(g.keys)
	body := st2.Body()
	cnt := tagLen("statement") + 8 + 4 + 3 + 8 + 8 + 8
	body = put32(body, cnt, echeck.MaxStatementLines+1)
	add("statement line count", func() error {
		_, err := echeck.DecodeStatement(rewrap("signed-statement", body, st2.Sig))
		return err
	})

	for _, c := range cases {
		if err := c.dec(); !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("%s: error %v, want ErrMalformed", c.name, err)
		}
	}
}

// TestSignatureLengths: signed forms refuse signatures that are not 64
// bytes (the decoder reads exactly 64, so a short one is truncation and a
// long one trailing bytes).
func TestSignatureLengths(t *testing.T) {
	t.Parallel()
	g := newGoodsFlow(t)
	body := g.receipt.Body()
	for _, n := range []int{0, 63, 65} {
		_, err := echeck.DecodeReceipt(rewrap("signed-epo-receipt", body, make([]byte, n)))
		wantErr(t, err, ecash.ErrMalformed)
	}
	_, err := echeck.DecodeReceipt(rewrap("signed-epo-receipt", body, make([]byte, ed25519.SignatureSize)))
	if err != nil {
		t.Fatal(err) // parses; Verify refuses
	}
}

// TestDecodeRecordedMemos: the bank's own record of an order accepted
// before memos followed ecash.CheckText decodes with control characters in
// its memos (DecodeRecordedEndorsement, OpenRecordedPrivate), which the
// strict decoders refuse, and its endorsement verifies by the same rule
// (VerifyRecorded, for an audit of a till's transcript); the earlier rule
// still holds (UTF-8, the length).
func TestDecodeRecordedMemos(t *testing.T) {
	for _, tc := range []struct {
		name, memo string
		recorded   bool // the recorded decoders accept it
	}{
		{"control characters", "rent\x07 \x1b[2J", true},
		{"not UTF-8", "rent\xff", false},
		{"too long", strings.Repeat("m", echeck.MaxMemoLen+1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newGoodsFlow(t)
			// As an older build's wallet and till wrote them.
			f.priv.Memo = tc.memo
			h := f.epo.EPO.BodyHash()
			sealed, err := ecash.Seal(f.bankHPKEPub(), echeck.InfoEPOPrivate, h[:], f.priv.Encode())
			if err != nil {
				t.Fatal(err)
			}
			f.epo.SealedPrivate = sealed
			f.epo.CustomerSig = ecash.SignBody(f.customer, f.epo.SignatureInput())
			end := &echeck.Endorsement{EPO: f.epo.Encode(), MerchantAccount: merchantAccount, Memo: tc.memo, SealedKey: f.end.SealedKey}
			end.MerchantSig = ecash.SignBody(f.merchant, end.Body())
			raw := end.Encode()

			if _, err := echeck.DecodeEndorsement(raw); !errors.Is(err, ecash.ErrMalformed) {
				t.Errorf("DecodeEndorsement: %v, want malformed", err)
			}
			if _, err := f.epo.OpenPrivate(f.bankHPKE); !errors.Is(err, ecash.ErrMalformed) {
				t.Errorf("OpenPrivate: %v, want malformed", err)
			}
			got, err := echeck.DecodeRecordedEndorsement(raw)
			if !tc.recorded {
				if !errors.Is(err, ecash.ErrMalformed) {
					t.Errorf("DecodeRecordedEndorsement: %v, want malformed", err)
				}
				if _, err := f.epo.OpenRecordedPrivate(f.bankHPKE); !errors.Is(err, ecash.ErrMalformed) {
					t.Errorf("OpenRecordedPrivate: %v, want malformed", err)
				}
				return
			}
			if err != nil || got.Memo != tc.memo || !bytes.Equal(got.Encode(), raw) {
				t.Fatalf("DecodeRecordedEndorsement: %+v, %v", got, err)
			}
			// Verified by the same earlier rule, over the same bytes.
			if _, err := got.Verify(edPub(f.merchant)); !errors.Is(err, ecash.ErrMalformed) {
				t.Errorf("Verify: %v, want malformed", err)
			}
			if _, err := got.VerifyRecorded(edPub(f.merchant)); err != nil {
				t.Errorf("VerifyRecorded: %v", err)
			}
			forged := *got
			forged.Memo += "!"
			if _, err := forged.VerifyRecorded(edPub(f.merchant)); !errors.Is(err, ecash.ErrBadSignature) {
				t.Errorf("VerifyRecorded of a memo changed after signing: %v, want a bad signature", err)
			}
			epo, err := echeck.DecodeSignedEPO(got.EPO)
			if err != nil {
				t.Fatal(err)
			}
			p, err := epo.OpenRecordedPrivate(f.bankHPKE)
			if err != nil || p.Memo != tc.memo {
				t.Fatalf("OpenRecordedPrivate: %+v, %v", p, err)
			}
		})
	}
}
