package wallet_test

// Regression tests for the findings of the merchant security review: each
// failed before its fix.

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/wallet"
)

// A summary with a carriage return and escape sequences (which rewrite the
// amount line of the wallet's confirmation on a terminal) or a bidi
// override is refused by the wallet, even from a merchant whose own
// software would let it through: the wallet never asks to confirm it.
func TestVerifyOfferRefusesControlSummary(t *testing.T) {
	f := newFixture(t)
	ks, _ := f.bank.KeySet()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	offer := func(summary string) *ecash.PaymentOffer {
		now := time.Now()
		pr := &ecash.PaymentRequest{BankID: ks.BankID(), MerchantAccount: f.shopAcct, MerchantPub: pub, OrderID: "ord-1",
			Amount: ecash.MustParseAmount("EUR:500.00"), SummaryHash: sha256.Sum256([]byte(summary)), CreatedAt: now, ExpiresAt: now.Add(time.Minute)}
		body := pr.Body()
		return &ecash.PaymentOffer{Merchant: "shop:1", Request: body, MerchantSig: ecash.SignBody(priv, body), Summary: summary}
	}
	if _, err := wallet.VerifyOffer(ks, offer("2 x coffee"), time.Now()); err != nil {
		t.Fatalf("a plain summary: %v", err)
	}
	for _, evil := range []string{"coffee\r\x1b[1A\x1b[2K  amount:\tEUR:0.01\n", "coffee EUR:\u202e00.005"} {
		if _, err := wallet.VerifyOffer(ks, offer(evil), time.Now()); !errors.Is(err, wallet.ErrBadRequest) || !errors.Is(err, ecash.ErrMalformed) {
			t.Errorf("summary %q: %v, want ErrBadRequest and ErrMalformed", evil, err)
		}
	}
}
