package ecash_test

import (
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
)

// refundOf returns the world's merchant's signed refund of EUR:2 of its
// payment, and the bank's receipt restoring it to the first coin.
func (w *world) refundOf() (*ecash.RefundRequest, *ecash.RefundReceipt) {
	req := &ecash.RefundRequest{PaymentHash: w.req.Hash(), MerchantAccount: w.req.MerchantAccount, RefundID: 1,
		Amount: ecash.MustParseAmount("EUR:2"), CreatedAt: t0Millis.Add(time.Hour)}
	req.Sign(w.merchant)
	rc := &ecash.RefundReceipt{RefundHash: req.Hash(), PaymentHash: req.PaymentHash, MerchantAccount: req.MerchantAccount,
		Total: req.Amount, Fee: ecash.Amount{Currency: "EUR"}, Coins: []ecash.RefundedCoin{{Coin: w.coins[0].ID(), Value: req.Amount}},
		RefundedAt: t0Millis.Add(2 * time.Hour), SignerPub: edPub(w.signing)}
	rc.Sig = ecash.SignBody(w.signing, rc.Body())
	return req, rc
}

// TestRefund: a refund request is the merchant's signed word for one
// refund of one payment, and the receipt the bank's for what it restored.
func TestRefund(t *testing.T) {
	w := newWorld(t)
	req, rc := w.refundOf()
	back, err := ecash.DecodeRefundRequest(req.Encode())
	if err != nil || back.Hash() != req.Hash() || back.Verify(edPub(w.merchant)) != nil {
		t.Fatalf("request round trip: %+v, %v", back, err)
	}
	if err := req.Verify(edPub(w.account)); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("request under another key: %v", err)
	}
	other := *req
	other.RefundID = 2
	if other.Hash() == req.Hash() || other.Verify(edPub(w.merchant)) == nil {
		t.Error("two refunds of one payment are not told apart by their id")
	}
	got, err := ecash.DecodeRefundReceipt(rc.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(w.ks, req); err != nil {
		t.Errorf("receipt: %v", err)
	}
	if err := got.Verify(w.ks, &other); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("receipt for another refund: %v", err)
	}
	forged := *rc
	forged.Coins = []ecash.RefundedCoin{{Coin: w.coins[1].ID(), Value: rc.Total}}
	if err := forged.Verify(w.ks, req); !errors.Is(err, ecash.ErrBadSignature) {
		t.Errorf("receipt naming another coin: %v", err)
	}
	short := *rc
	short.Coins = []ecash.RefundedCoin{{Coin: w.coins[0].ID(), Value: ecash.MustParseAmount("EUR:1")}}
	if _, err := ecash.DecodeRefundReceipt(short.Encode()); !errors.Is(err, ecash.ErrMalformed) {
		t.Errorf("receipt whose coins do not add up: %v", err)
	}
	zero := *req
	zero.Amount = ecash.Amount{Currency: "EUR"}
	zero.Sign(w.merchant)
	if _, err := ecash.DecodeRefundRequest(zero.Encode()); !errors.Is(err, ecash.ErrBadAmount) {
		t.Errorf("refund of nothing: %v", err)
	}
}

// TestCreditPermission: spending a coin's refund credit signs a permission
// to CreditAccount, which never verifies as a plain swap input, even when
// the credit equals the coin's value.
func TestCreditPermission(t *testing.T) {
	fx := newVectorFixture(t)
	r := fx.swap
	value := fx.denom.Value
	credit := *r
	credit.Inputs = append([]ecash.SwapInput(nil), r.Inputs...)
	credit.SignCredit(0, fx.secrets[1].CoinKey, value)
	if dp := credit.CreditPermission(0, value); dp.Verify() != nil {
		t.Fatal("credit permission does not verify")
	}
	if dp := credit.Permission(0, value); dp.Verify() == nil {
		t.Error("a credit spend verifies as a spend of the coin")
	}
	if dp := r.CreditPermission(0, value); dp.Verify() == nil {
		t.Error("a spend of the coin verifies as a credit spend")
	}
}

func FuzzDecodeRefundRequest(f *testing.F) {
	req, _ := newWorld(f).refundOf()
	f.Add(req.Encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ecash.DecodeRefundRequest(b)
		checkDecode(t, b, r, err, (*ecash.RefundRequest).Encode)
	})
}

func FuzzDecodeRefundReceipt(f *testing.F) {
	w := newWorld(f)
	_, rc := w.refundOf()
	f.Add(rc.Encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ecash.DecodeRefundReceipt(b)
		checkDecode(t, b, r, err, (*ecash.RefundReceipt).Encode)
		if err == nil {
			_ = r.Verify(w.ks, nil)
		}
	})
}

// TestRefundVector pins the refund encodings of docs/PROTOCOL.md §4c: the
// world's merchant (key from seed 03…03) refunding EUR:2 of its payment.
func TestRefundVector(t *testing.T) {
	w := newWorld(t)
	req, rc := w.refundOf()
	want := map[string]string{
		"refund request body": "0000001b626c696e6462616e6b2f76312f726566756e642d72657175657374",
		"refund request hash": "c8e1278297ce28d1f413b36b231e4084e2f291677825c9edc3fb9abf618dd765",
		"merchant signature":  "13e81f839c64701e0b4f256805f7bc83224f875a5b8b432c896164efbf93f6fa8a5b1c2d4056f39358e2d6258b4404e0a7edc40a75819c326e275171dd593808",
		"receipt body hash":   "309358ac88bef14b863967ff010aa5f3266131d5507ee00046274e88d91ecd1e",
	}
	got := map[string]string{
		"refund request body": hex.EncodeToString(req.Body()[:31]),
		"refund request hash": req.Hash().String(),
		"merchant signature":  hex.EncodeToString(req.MerchantSig),
		"receipt body hash":   ecash.HashOf(rc.Body()).String(),
	}
	for k, v := range got {
		t.Logf("%s %s", k, v)
		if want[k] != "" && want[k] != v {
			t.Errorf("%s = %s, want %s", k, v, want[k])
		}
	}
}
